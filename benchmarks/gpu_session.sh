#!/bin/bash
# Everything this project needs a CUDA GPU for, in one call of about 5 minutes, for a session
# that is lent a GPU machine (see README "Benchmarks"). Runs from the repository root with the
# machine's own python3 (torch, h5py, scipy, safetensors, pytest are there; nothing is
# installed) and writes each result to $OUT (default: runs/gpu):
#   cuda_tests.txt          AMP inference/training, OOM halving, CPU fallback (tests/training/test_cuda.py)
#   predict_volume.jsonl    512x512x200 CT volume, paper configs, l2gnet and transunet side by side
#   bottleneck.jsonl        L2GMapper vs transformer layer, time and memory against tokens n
#   env.txt                 GPU, driver, torch
# With ACDC_EPOCHS=N (and .devdata/acdc.npz from benchmarks/pack_acdc.py, named in the device
# tool's carry) it then trains L2GNet in the paper's setting (R50, 224, SGD 0.01, batch 24) for
# N epochs and scores best and last checkpoints on the 20 held-out volumes:
#   acdc_train.log, acdc_eval_best.txt, acdc_eval_last.txt   (checkpoints stay in runs/ there)
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
if [ "${ACDC_EPOCHS:-0}" -gt 0 ] && [ -f .devdata/acdc.npz ]; then
  "$PY" benchmarks/pack_acdc.py unpack .devdata/acdc.npz /tmp/acdc
  "$PY" -m training.cli train --model l2gnet --data /tmp/acdc/train_slices \
    --val /tmp/acdc/val_volumes --class-names background,RV,Myo,LV --input-size 224 224 \
    --epochs "$ACDC_EPOCHS" --batch-size 24 --num-workers 8 --out-dir runs/acdc_gpu_l2gnet \
    > "$OUT/acdc_train.log" 2>&1
  for ck in best last; do
    "$PY" -m training.cli evaluate --checkpoint "runs/acdc_gpu_l2gnet/$ck.safetensors" \
      --data /tmp/acdc/val_volumes --out "runs/acdc_gpu_l2gnet/eval_$ck.json" \
      > "$OUT/acdc_eval_$ck.txt" 2>&1
    grep -A4 '^class' "$OUT/acdc_eval_$ck.txt"
  done
fi
