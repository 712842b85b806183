#!/bin/bash
# Everything this project needs a CUDA GPU for, in one call of at most GPU_SESSION_SECONDS
# (default 540), for a session that is lent a GPU machine (see benchmarks/README.md). Runs
# from the repository root with the machine's own python3 (torch, h5py, scipy, safetensors,
# pytest are there; nibabel is taken from .whl/site when that folder exists, nothing is
# installed) and writes each result to $OUT (default: runs/gpu):
#   env.txt                 GPU, driver, torch
#   cuda_tests.txt          AMP inference/training, OOM halving, CPU fallback (tests/training/test_cuda.py)
#   predict_volume.jsonl    512x512x200 CT volume, paper configs, l2gnet and transunet side by side
#   bottleneck.jsonl        L2GMapper vs transformer layer, time and memory against tokens n
# With ACDC_EPOCHS=N and the packed data (.devdata/acdc.npz.xz from benchmarks/pack_acdc.py,
# named in the device tool's carry) it then trains, all at once on the one GPU:
#   paper_*    the paper's setting (R50, 224, SGD 0.01, batch 24), N epochs, the last
#              checkpoint scored on the 20 held-out volumes: L2GNet paper-literal plans, L2GNet with the
#              "sharp" plan preset, today's default L2GNet (sharp + bucket term; not yet run on a
#              GPU), and the UNet (identity bottleneck);
#   abl_*      with ABLATION_EPOCHS=M > 0: the CPU plan-ablation config of docs/results.md (ResNet-18
#              body, 128 x 128, AdamW) for M epochs, the rows and seeds of ABLATION_SPEC
#              (default: paper-literal and sharp with seeds 0 and 1, pos_mode=none and unet
#              with seed 0), last checkpoint scored;
# and runs benchmarks/plan_diagnostics.py on every L2GNet checkpoint. Logs, evaluations and
# diagnostics go to $OUT/acdc_results.tgz (rewritten as jobs finish, so a cut-off run still
# returns what ended). Checkpoints stay in runs/gpu_acdc there.
# BENCH=0 skips the tests and benchmarks, PAPER_ROWS=0 the paper-setting runs.
set -u
START=$SECONDS
BUDGET=${GPU_SESSION_SECONDS:-540}
left() { echo $((BUDGET - (SECONDS - START))); }
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
[ -d .whl/site ] && export PYTHONPATH=$PWD/.whl/site:$PYTHONPATH
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}  # cpu: a dry run of the script on a tiny pack (ACDC_PACK)
PACK=${ACDC_PACK:-.devdata/acdc.npz.xz}
ACDC=${ACDC_DIR:-/tmp/acdc}
RUNS=runs/gpu_acdc
WITH_ACDC=0
if [ "${ACDC_EPOCHS:-0}" -gt 0 ] && [ -f "$PACK" ]; then
  WITH_ACDC=1
  mkdir -p "$RUNS"
  "$PY" benchmarks/pack_acdc.py unpack "$PACK" "$ACDC" > "$RUNS/unpack.txt" 2>&1 &
  UNPACK=$!  # CPU only: runs beside the GPU benchmarks
fi

if [ "${BENCH:-1}" = 1 ]; then
{ nvidia-smi -L; nproc; "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'; } \
  > "$OUT/env.txt" 2>&1
timeout 90 "$PY" -m pytest -q -p no:cacheprovider -o addopts="" tests/training/test_cuda.py \
  > "$OUT/cuda_tests.txt" 2>&1
echo "cuda tests: exit $?" >> "$OUT/env.txt"
timeout 70 "$PY" benchmarks/predict_volume.py --devices cuda > "$OUT/predict_volume.jsonl" 2>&1
echo "predict_volume: exit $?" >> "$OUT/env.txt"
timeout 60 "$PY" benchmarks/bottleneck_scaling.py --devices cuda --repeats 3 \
  > "$OUT/bottleneck.jsonl" 2>&1
echo "bottleneck_scaling: exit $? at $((SECONDS - START)) s" >> "$OUT/env.txt"
tail -n 3 "$OUT/cuda_tests.txt"; cat "$OUT/predict_volume.jsonl" "$OUT/bottleneck.jsonl"
fi
[ "$WITH_ACDC" = 1 ] || exit 0

wait "$UNPACK" || { cat "$RUNS/unpack.txt"; exit 1; }
save() {  # what has ended so far, atomically, into $OUT
  tar czf "$OUT/.acdc.tgz" --exclude='*.safetensors' -C "$RUNS" . && mv "$OUT/.acdc.tgz" "$OUT/acdc_results.tgz"
}
CLI=("$PY" -m training.cli)
CLASSES=(--class-names background,RV,Myo,LV)
SHARP=(--set cost=cosine --set cost_temperature=0.02 --set sinkhorn_eps=1 --set pos_mode=none
       --set column_marginal=learned --set ref_size=4 --set plan_return=replace)
PAPER=(--data "$ACDC/train_slices" "${CLASSES[@]}" --input-size 224 224
       --epochs "$ACDC_EPOCHS" --batch-size 24 --num-workers 3 --threads 2 --device "$DEVICE")
BODY=(--set encoder=resnet18 --set pre_channels=64 --set "decoder_channels=[64,32,16,16]"
      --set decoder_head_channels=64)
QUANT=(--set codebook_size=64 --set code_dim=64 --set num_refs=4 --set ref_size=16 --set num_anchors=32)
ABL=(--data "$ACDC/train_slices" "${CLASSES[@]}" --input-size 128 128 --epochs "${ABLATION_EPOCHS:-0}"
     --batch-size 8 --optimizer adamw --lr 0.002 --threads 1 --device "$DEVICE")
TRAIN_SECONDS=$(($(left) - 90))  # what is left after the scoring below
PIDS=()
running() { local p; for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
train() {  # NAME ARGS...: one training in the background, cut at TRAIN_SECONDS
  local name=$1; shift
  timeout "$TRAIN_SECONDS" "${CLI[@]}" train "$@" --out-dir "$RUNS/$name" > "$RUNS/$name.log" 2>&1 &
  PIDS+=($!)
}
if [ "${PAPER_ROWS:-1}" = 1 ]; then
  train paper_l2gnet --model l2gnet-paper "${PAPER[@]}"
  train paper_l2gnet_sharp --model l2gnet-paper "${PAPER[@]}" "${SHARP[@]}"
  train paper_l2gnet_default --model l2gnet "${PAPER[@]}"  # today's default: sharp + bucket + vote
  train paper_unet --model unet "${PAPER[@]}"
fi
# ABLATION_SPEC: "ROW:SEEDS ..."; ROW is a key of ROWS (its --set/loss options beyond the
# CPU config) or of UNET_ROWS
VOTE="${SHARP[*]} --set plan_vote=true --bucket-weight 1 --vote-weight 1"  # today's default
OS8="--set encoder_output_stride=8"
declare -A ROWS=(
  [default]="" [sharp]="${SHARP[*]}" [posnone]="--set pos_mode=none"
  [bucket]="--bucket-weight 1" [sharp_bucket]="${SHARP[*]} --bucket-weight 1"
  [posnone_bucket]="--set pos_mode=none --bucket-weight 1"
  [sharp_vote]="$VOTE" [sharp_vote_os8]="$VOTE $OS8"
  [sharp_vote_os8_res]="$VOTE $OS8 --set plan_return=residual"
)
declare -A UNET_ROWS=([unet]="" [unet_os8]="$OS8")
if [ "${ABLATION_EPOCHS:-0}" -gt 0 ]; then
  for spec in ${ABLATION_SPEC:-default:0,1 sharp:0,1 posnone:0 unet:0}; do
    row=${spec%%:*}
    seeds=${spec#*:}
    for s in ${seeds//,/ }; do
        if [ -n "${UNET_ROWS[$row]+set}" ]; then
          # shellcheck disable=SC2086 (the row's options are split on purpose)
          train "abl_${row}_s$s" --model unet "${ABL[@]}" --seed "$s" "${BODY[@]}" ${UNET_ROWS[$row]}
        else  # shellcheck disable=SC2086 (the row's options are split on purpose)
          train "abl_${row}_s$s" --model l2gnet-paper "${ABL[@]}" --seed "$s" "${BODY[@]}" \
            "${QUANT[@]}" ${ROWS[$row]}
        fi
    done
  done
fi
while running; do sleep 15; save; done
echo "trainings ended at $((SECONDS - START)) s" >> "$RUNS/timeline.txt"

score() {  # NAME CHECKPOINT: the last epoch's (no validation during training, as TransUNet)
  local ck="$RUNS/$1/$2.safetensors"
  [ -f "$ck" ] || return 0
  "${CLI[@]}" evaluate --checkpoint "$ck" --data "$ACDC/val_volumes" --device "$DEVICE" \
    --out "$RUNS/$1/eval_$2.json" > "$RUNS/$1/eval_$2.txt" 2>&1
  case "$1" in *unet*) return 0 ;; esac
  "$PY" benchmarks/plan_diagnostics.py "$ck" --data "$ACDC/val_volumes" --device "$DEVICE" --threads 1 \
    > "$RUNS/$1/diagnostics_$2.jsonl" 2> "$RUNS/$1/diagnostics_$2.err"
}
PIDS=()
for run in "$RUNS"/*/; do
  name=$(basename "$run")
  score "$name" last &
  PIDS+=($!)
done
while running && [ "$(left)" -gt 5 ]; do sleep 3; done
echo "scoring ended at $((SECONDS - START)) s" >> "$RUNS/timeline.txt"
save
grep -H 'mean' "$RUNS"/*/eval_*.txt
