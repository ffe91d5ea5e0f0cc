#!/usr/bin/env bash
# Side by side on one machine: masklab with configs/cpu-quick.toml vs the PyTorch reference
# pipeline (../shared/bench/reference_train.py) at the same backbone, size, epochs, batch and lr,
# on a stand-in dataset made by ../shared/data/make_maskset.py. Prints wall times and eval F1.
# Usage: scripts/compare_reference.sh DATA [OUT] [SHARED]
set -euo pipefail
data=$1
out=${2:-bench-runs}
shared=${3:-../shared}
bin=target/release/masklab
py=.venv/bin/python
mkdir -p "$out"
size=96 epochs=3 batch=64 lr=0.001
echo "== pytorch reference (efficientnet_b0, ${size}px, $epochs epochs, batch $batch)"
t0=$(date +%s.%N)
$py "$shared/bench/reference_train.py" "$data" "$out/reference.csv" --model efficientnet_b0 --size $size \
    --epochs $epochs --batch $batch --lr $lr --mode single --workers 2 | tee "$out/reference.json"
t1=$(date +%s.%N)
echo "reference wall_s $(echo "$t1 - $t0" | bc)"
$py "$shared/bench/score.py" "$out/reference.csv" "$data/eval/answers.csv" | tee "$out/reference.score.json"

echo "== masklab (configs/cpu-quick.toml with the reference's efficientnet_b0 from scratch)"
rm -rf "$out/masklab-run"
t0=$(date +%s.%N)
$bin train "$data" --config configs/cpu-quick.toml --out "$out/masklab-run" --quiet \
    model.backbone=efficientnet_b0 model.pretrained= data.size=$size train.epochs=$epochs train.batch_size=$batch optim.lr=$lr
t1=$(date +%s.%N)
echo "masklab train wall_s $(echo "$t1 - $t0" | bc)"
t0=$(date +%s.%N)
$bin eval "$out/masklab-run" "$data" --split eval --json | tee "$out/masklab.eval.json" | head -c 300; echo
t1=$(date +%s.%N)
echo "masklab eval (eval split) wall_s $(echo "$t1 - $t0" | bc)"
