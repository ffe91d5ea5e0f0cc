#!/usr/bin/env bash
# The whole epoch from JPEG on one CUDA card: masklab train against the PyTorch pipeline of the
# task (../shared/bench/reference_train.py with --amp --channels-last and a DataLoader of
# WORKERS processes, default every core), on the stand-in's real 384x512 JPEGs, same model,
# size, batch and epochs; the two alternate in separate processes, REPS times (2). masklab's
# epochs 1 and 2 are reported separately (its decoded-image cache makes epoch 2 cheaper); the
# reference prints its mean over both. One JSON line per run goes to OUT (bench-epoch.jsonl),
# with the GPU's state before and after.
# Usage: scripts/bench_epoch_gpu.sh DATA [MASKLAB_BINARY] [PYTHON]
#   DATA: a stand-in made by ../shared/data/make_maskset.py (e.g. --train-people 1000)
#   env: REPS, OUT, WORKERS, CASES ("efficientnet_b0 224 256;efficientnet_b3 380 96")
set -euo pipefail
data=${1:?usage: bench_epoch_gpu.sh DATA [MASKLAB_BINARY] [PYTHON]}
bin=${2:-target/release/masklab}
py=${3:-python3}
here=$(cd "$(dirname "$0")" && pwd)
reference=${REFERENCE:-$here/../../shared/bench/reference_train.py}
reps=${REPS:-2}
out=${OUT:-bench-epoch.jsonl}
workers=${WORKERS:-$(nproc)}
IFS=';' read -r -a cases <<< "${CASES:-efficientnet_b0 224 256;efficientnet_b3 380 96}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
: > "$out"
gpu_state() {
  nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw,utilization.gpu --format=csv,noheader \
    | sed "s/^/{\"gpu_state\": \"$1\", \"gpu\": \"/; s/\$/\"}/" >> "$out"
  nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader \
    | sed "s/^/{\"other_process\": \"/; s/\$/\"}/" >> "$out"
}
gpu_state before
for rep in $(seq "$reps"); do
  for c in "${cases[@]}"; do
    set -- $c
    run="$work/masklab-$2-$rep"
    "$bin" train "$data" --out "$run" --quiet model.backbone="$1" data.size="$2" train.batch_size="$3" \
      train.epochs=2 train.device=cuda train.amp=fp16 train.channels_last=true report.enabled=false
    "$py" - "$run/metrics.jsonl" "$1" "$2" "$3" "$rep" >> "$out" <<'PY'
import json, sys
path, backbone, size, batch, rep = sys.argv[1:]
for line in open(path):
    r = json.loads(line)
    if r.get("kind") == "epoch" or ("train_images_per_s" in r and "epoch" in r):
        print(json.dumps(dict(impl="masklab", model=backbone, size=int(size), batch=int(batch), rep=int(rep),
                              epoch=r["epoch"], seconds=r["seconds"], train_img_s=r["train_images_per_s"])))
PY
    "$py" "$reference" "$data" "$work/reference-$2-$rep" --model "$1" --size "$2" --batch "$3" --epochs 2 \
      --device cuda --amp --channels-last --workers "$workers" | tail -n 1 | tee -a "$out"
  done
done
gpu_state after
cat "$out"
