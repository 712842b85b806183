#!/bin/bash
# Everything this project needs a CUDA GPU for, in one call of about 5 minutes, for a session
# that is lent a GPU machine (see README "Benchmarks"). Runs from the repository root with the
# machine's own python3 (torch, h5py, scipy, safetensors, pytest are there; nothing is
# installed) and writes each result to $OUT (default: runs/gpu):
#   cuda_tests.txt          AMP inference/training, OOM halving, CPU fallback (tests/training/test_cuda.py)
#   predict_volume.jsonl    512x512x200 CT volume, paper configs, l2gnet and transunet side by side
#   bottleneck.jsonl        L2GMapper vs transformer layer, time and memory against tokens n
#   env.txt                 GPU, driver, torch
set -u
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PY:-python3}
{ nvidia-smi -L; "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'; } \
  > "$OUT/env.txt" 2>&1
timeout 240 "$PY" -m pytest -q -p no:cacheprovider -o addopts="" tests/training/test_cuda.py \
  > "$OUT/cuda_tests.txt" 2>&1
echo "cuda tests: exit $?" >> "$OUT/env.txt"
timeout 180 "$PY" benchmarks/predict_volume.py --devices cuda > "$OUT/predict_volume.jsonl" 2>&1
timeout 180 "$PY" benchmarks/bottleneck_scaling.py --devices cuda --repeats 5 \
  > "$OUT/bottleneck.jsonl" 2>&1
tail -n 3 "$OUT/cuda_tests.txt"; cat "$OUT/predict_volume.jsonl" "$OUT/bottleneck.jsonl"
