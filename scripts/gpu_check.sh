#!/usr/bin/env bash
# The GPU check, as one prepared call on a machine with CuPy and a CUDA GPU.
#
# Made for the device tool's H200 image (Python 3.12, CuPy, PyTorch with CUDA, pytest, numba;
# no wandb, no optuna), run from the repository root with the checkout on PYTHONPATH:
#
#   mkdir -p .data/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz .data/fashion-mnist/
#   # device run, carry [".data"], command: bash scripts/gpu_check.sh
#
# Fashion-MNIST is read from $FASTMLP_DATA_DIR (default .data/fashion-mnist, git-ignored).
# Everything it measures goes to $OUT (default gpu-check/), a few files 2 folders deep:
#   environment.txt  the GPU, driver, CUDA, CuPy, NumPy and Python that ran it
#   gpu_tests.log    pytest -m gpu (CuPy against NumPy, kernels, training), its summary
#   gpu_tests.xml    the same as JUnit XML
#   train.log        fastmlp train --device cuda for 3 epochs, with its epoch times
#   runs/            that run's directory (summary.json holds the training time)
#   bench.log        fastmlp bench --device cuda (fastmlp vs PyTorch eager on the GPU)
#   bench/           its JSON and markdown tables
#   stacks.log, stacks/  stacks of 8 and 64 models of R (MLP(n_models=K)) against one model
#                    at batch 64, in samples per second per model
#   probes.log, probes.json  the fused Adam step's memory bandwidth against the peak, and
#                    whether a training step can be captured as a CUDA graph
# Each step has its own time limit (535 s in all, within 9 minutes); a failed step
# is reported and the next one still runs. The exit status is the number of failed steps;
# on a machine without CuPy or a CUDA GPU it says so and exits 0 without running anything.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
export PYTHONPATH=. PYTHONUNBUFFERED=1
export FASTMLP_DATA_DIR=${FASTMLP_DATA_DIR:-.data/fashion-mnist}
export WANDB_MODE=disabled
failed=0

if ! python -c "import cupy; assert cupy.cuda.runtime.getDeviceCount() > 0" >/dev/null 2>&1; then
    echo "no CUDA GPU usable with CuPy on this machine: nothing to check" | tee "$OUT/environment.txt"
    echo "gpu check: skipped (no GPU)"
    exit 0
fi

step() {  # step NAME SECONDS LOG COMMAND...: run COMMAND under a time limit, output to LOG
    local name=$1 seconds=$2 log=$3
    shift 3
    local started=$SECONDS
    timeout --signal=INT --kill-after=15 "$seconds" "$@" >"$log" 2>&1
    local status=$?
    echo "$name: exit $status after $((SECONDS - started)) s (log: $log)"
    if [ "$status" -ne 0 ]; then
        failed=$((failed + 1))
        tail -5 "$log"
    fi
}

step environment 20 "$OUT/environment.txt" bash -c '
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    python -c "
import platform, numpy, cupy
print(\"python\", platform.python_version(), \"numpy\", numpy.__version__, \"cupy\", cupy.__version__)
print(\"cuda runtime\", cupy.cuda.runtime.runtimeGetVersion(), \"driver\", cupy.cuda.runtime.driverGetVersion())
print(\"device 0:\", cupy.cuda.runtime.getDeviceProperties(0)[\"name\"].decode())
"'
# Collection errors (a test module importing wandb or optuna, absent on the image) do not
# stop the GPU tests of the other modules.
step gpu_tests 200 "$OUT/gpu_tests.log" python -m pytest -m gpu -q -p no:cacheprovider \
    --continue-on-collection-errors --junitxml="$OUT/gpu_tests.xml"
step train 45 "$OUT/train.log" python -m fastmlp train --device cuda -e 3 \
    --wandb_mode disabled --out "$OUT/runs"
step bench 130 "$OUT/bench.log" python -m fastmlp bench --device cuda --rounds 3 \
    --competitors torch torch-fused --out "$OUT/bench"
step stacks 80 "$OUT/stacks.log" python -m fastmlp bench --device cuda --stack 8 64 \
    --batch_sizes 64 --rounds 3 --out "$OUT/stacks"
step probes 60 "$OUT/probes.log" python scripts/gpu_probes.py "$OUT"
echo "gpu check: $failed failed step(s); results in $OUT"
exit "$failed"
