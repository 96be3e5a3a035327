#!/usr/bin/env bash
# GLUE (one task per run: cola, sst2, mrpc, qqp, mnli, qnli, rte): evaluate.sh CHECKPOINT DATA_DIR [SUBSET] [ofasys-generate flags]; prints the metric
exec bash "$(dirname "$0")/../common/run.sh" evaluate "$(dirname "$0")" "$@"
