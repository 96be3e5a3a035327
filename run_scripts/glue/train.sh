#!/usr/bin/env bash
# GLUE (one task per run: cola, sst2, mrpc, qqp, mnli, qnli, rte): train.sh DATA_DIR SAVE_DIR [ARCH] [ofasys-train flags]; settings in benchmark.yaml
exec bash "$(dirname "$0")/../common/run.sh" train "$(dirname "$0")" "$@"
