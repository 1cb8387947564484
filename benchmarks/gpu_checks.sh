#!/usr/bin/env bash
# Every check that needs a GPU, in one short run (device time is scarce): the CUDA tests, then the GPU
# benchmarks. Each CSV and log lands in $OUT; commit the CSVs under benchmarks/results/ afterwards.
#
#   OUT=/tmp/gpu bash benchmarks/gpu_checks.sh        # from the repository root, on a machine with CUDA
#
# Each step has its own time limit so that one slow step cannot eat the others' time (together under the
# 600 s a device command may run); a failing step is reported and the next one runs.
set -u
OUT=${OUT:-/tmp/gpu_checks}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)  # absolute: the benchmark steps run from benchmarks/
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name"
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    echo "   exit $? ($name.log)"
    tail -3 "$OUT/$name.log"
}
python -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" | tee "$OUT/device.txt"
python -c "import cupy; print('cupy', cupy.__version__)" | tee -a "$OUT/device.txt"
step cuda_tests 150 python -m pytest -q tests/test_ilif_cuda.py tests/test_models_cuda.py
cd benchmarks
step neuron_kernels 90 python neuron_kernels.py --device cuda --out "$OUT/neuron_kernels.csv"
step model_speed 90 python model_speed.py spikeyolo_s --batch 16 --precision fp32 fp16 --out "$OUT/model_speed.csv"
step train_speed 90 python train_speed.py spikeyolo_s --device cuda --size 640 --neuron-backend torch cupy \
    --min-run-time 2 --out "$OUT/train_speed.csv"
step eval_pipeline 120 python eval_pipeline.py spikeyolo_s --device cuda --images 500 --batch 16 --workers 0 4 8 \
    --out "$OUT/eval_pipeline.csv"
