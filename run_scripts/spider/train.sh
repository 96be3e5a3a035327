#!/usr/bin/env bash
# Spider text-to-SQL: train.sh DATA_DIR SAVE_DIR [ARCH] [ofasys-train flags]; settings in benchmark.yaml
exec bash "$(dirname "$0")/../common/run.sh" train "$(dirname "$0")" "$@"
