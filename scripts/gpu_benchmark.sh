#!/usr/bin/env bash
# The GPU check of issue 10 (Speed, item 2) as one prepared, unattended run on a lent GPU
# machine (the `device` tool's nvidia-h200: Python 3.12 with CUDA PyTorch, numpy, scipy,
# PyYAML and tqdm installed, nothing reachable; see /work/.library/device/KINDS.md).
#
#   here, once:  bash scripts/gpu_benchmark.sh prepare
#                (fetches the wheels that image lacks into .whl/, which git ignores)
#   device:      run(command="bash scripts/gpu_benchmark.sh run", carry=[".whl"], timeout_s=540)
#
# `run` installs the carried wheels into /tmp/site, prints nvidia-smi and runs
# benchmarks/benchmark_model.py on the GPU: fp32, fp16 and bf16 autocast, channels_last and
# CUDA graphs at batch 1 and 8, each with its drift against fp32 in mm, plus the projection's
# memory. It writes $OUT/benchmark_model_cuda.json and $OUT/log.txt; copy the JSON to
# docs/figures/ and add the README row. DEVICE=cpu PYTHON=.venv/bin/python OUT=/tmp/x runs
# the same steps here as a dry run.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=.whl
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
# What dir_ros's model path imports that the GPU image lacks: smplx, at the version pinned
# for this project (pure Python, one wheel for every Python 3).
MISSING=$(grep -h '^smplx==' requirements/core.txt)

case "${1:-}" in
prepare)
    mkdir -p "$WHEELS"
    python3 -m pip download --no-deps --only-binary=:all: -d "$WHEELS" "$MISSING"
    ;;
run)
    : "${OUT:?OUT (the folder whose files come back) is set by the device tool}"
    ls "$WHEELS"/*.whl >/dev/null || { echo "no wheels in $WHEELS: run '$0 prepare' here and carry $WHEELS" >&2; exit 2; }
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/site "$WHEELS"/*.whl
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    { nvidia-smi || echo "nvidia-smi: not available"; } 2>&1 | tee "$OUT/log.txt"
    "$PYTHON" benchmarks/benchmark_model.py --device "$DEVICE" \
        --json "$OUT/benchmark_model_$DEVICE.json" 2>&1 | tee -a "$OUT/log.txt"
    ;;
*)
    echo "usage: $0 prepare | run" >&2
    exit 2
    ;;
esac
