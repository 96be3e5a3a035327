#!/usr/bin/env bash
# The body of every run_scripts/<benchmark>/train.sh and evaluate.sh (they call it with their own folder):
#
#   run.sh train    BENCHMARK_DIR DATA_DIR SAVE_DIR [ARCH] [extra ofasys-train flags or key=value ...]
#   run.sh evaluate BENCHMARK_DIR CHECKPOINT DATA_DIR [SUBSET] [extra ofasys-generate flags ...]
#
# The settings come from BENCHMARK_DIR/benchmark.yaml (see common/benchmark.py); extra flags come last and win.
# Environment:
#   PYTHON     interpreter with ofasys_fs (default: python3); the repository is put on PYTHONPATH
#   LAUNCHER   training command (default: "$PYTHON -m ofasys_fs.cli.train"); several GPUs or nodes:
#              LAUNCHER="torchrun --nproc_per_node 8 -m ofasys_fs.cli.train" (plus torchrun's --nnodes ...)
#   GPUS       total ranks of the run (default 1): OFA's max_epoch becomes max_update with it
#   GENERATE   generation command (default: "$PYTHON -m ofasys_fs.cli.generate")
#   RESULTS_DIR  where evaluate writes generate-<subset>.jsonl (default: <checkpoint folder>/results)
set -euo pipefail

COMMAND=${1:?usage: run.sh train|evaluate BENCHMARK_DIR ...}
BENCHMARK_DIR=${2:?usage: run.sh train|evaluate BENCHMARK_DIR ...}
shift 2
NAME=$(basename "$BENCHMARK_DIR")
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}"
PYTHON=${PYTHON:-python3}

usage() { echo "usage: $NAME/$1" >&2; exit 2; }

# Whether the next argument is positional: not a flag and not a key=value override.
is_positional() { [ $# -gt 0 ] && [[ $1 != -* && $1 != *=* ]]; }

recipe() {  # recipe ARGS... -> the arguments common/benchmark.py prints, one per line, into RECIPE_ARGS
    local printed
    printed=$("$PYTHON" -m run_scripts.common.benchmark "$@")
    readarray -t RECIPE_ARGS <<< "$printed"
}

case "$COMMAND" in
    train)
        [ $# -ge 2 ] || usage "train.sh DATA_DIR SAVE_DIR [ARCH] [ofasys-train flags ...]"
        DATA_DIR=$1 SAVE_DIR=$2 ARCH=ofa_base
        shift 2
        if is_positional "$@"; then ARCH=$1; shift; fi
        recipe train "$BENCHMARK_DIR" "$DATA_DIR" "$ARCH" --gpus "${GPUS:-1}"
        mkdir -p "$SAVE_DIR"
        ${LAUNCHER:-$PYTHON -m ofasys_fs.cli.train} "${RECIPE_ARGS[@]}" --save-dir "$SAVE_DIR" "$@"
        ;;
    evaluate)
        [ $# -ge 2 ] || usage "evaluate.sh CHECKPOINT DATA_DIR [SUBSET] [ofasys-generate flags ...]"
        CHECKPOINT=$1 DATA_DIR=$2 SUBSET=()
        shift 2
        if is_positional "$@"; then SUBSET=("$1"); shift; fi
        recipe evaluate "$BENCHMARK_DIR" "$CHECKPOINT" "$DATA_DIR" "${SUBSET[@]}"
        # ofasys-generate writes the outputs under the results folder and prints the metric line on stdout.
        ${GENERATE:-$PYTHON -m ofasys_fs.cli.generate} "${RECIPE_ARGS[@]}" \
            --results-path "${RESULTS_DIR:-$(dirname "$CHECKPOINT")/results}/" "$@"
        ;;
    *)
        echo "run.sh: unknown command '$COMMAND' (expected train or evaluate)" >&2
        exit 2
        ;;
esac
