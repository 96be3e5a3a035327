#!/usr/bin/env bash
# COCO caption (Karpathy split), cross-entropy stage: evaluate.sh CHECKPOINT DATA_DIR [SUBSET] [ofasys-generate flags]; prints the metric
exec bash "$(dirname "$0")/../common/run.sh" evaluate "$(dirname "$0")" "$@"
