#!/usr/bin/env bash
# The GPU checks, in one run on a CUDA machine whose python3 already has torch, timm, h5py, scipy,
# scikit-image, click, pyyaml, safetensors and pyEdgeEval (the package itself need not be installed):
#   the CUDA tests (AMP pretraining and resume, GPU cache against CPU cache, heads trained on the GPU
#   evaluating without drift), then bench/train_step.py at the real resolutions, then the cache and
#   add-task benches at their CPU settings, and the edge evaluation over that machine's CPUs.
#   Logs and JSON go to ${OUT:-gpu-check}/.
#
#   bash bench/gpu_check.sh
set -u
out=${OUT:-gpu-check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/machine.txt"
python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, 'cpus', __import__('os').cpu_count())" \
    | tee -a "$out/machine.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/test_cuda.log"
python3 bench/train_step.py --json | tee "$out/train_step.json"
python3 bench/cache_features.py --json --device cuda --batch-size 64 | tee "$out/cache_features.json"
python3 bench/add_task.py --json --device cuda | tee "$out/add_task.json"
python3 bench/edge_metric.py --json --images 8 | tee "$out/edge_metric.json"
