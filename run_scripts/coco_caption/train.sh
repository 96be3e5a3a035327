#!/usr/bin/env bash
# COCO caption (Karpathy split), cross-entropy stage: train.sh DATA_DIR SAVE_DIR [ARCH] [ofasys-train flags]; settings in benchmark.yaml
exec bash "$(dirname "$0")/../common/run.sh" train "$(dirname "$0")" "$@"
