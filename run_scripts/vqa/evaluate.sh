#!/usr/bin/env bash
# VQA v2: evaluate.sh CHECKPOINT DATA_DIR [SUBSET] [ofasys-generate flags]; prints the metric
exec bash "$(dirname "$0")/../common/run.sh" evaluate "$(dirname "$0")" "$@"
