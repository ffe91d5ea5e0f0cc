#!/usr/bin/env bash
# Issue 4's figures on a stand-in dataset (../shared/data/make_maskset.py): eval F1 by
# ../shared/bench/score.py of one model, of a k-fold ensemble, and of tuned decisions, and
# predict throughput (JPEG to CSV) of masklab against the PyTorch reference at the same model
# and size on this machine.
# Usage: scripts/compare_kfold.sh DATA [OUT] [SHARED]   (env: BACKBONE SIZE EPOCHS FOLDS)
set -euo pipefail
data=$1
out=${2:-bench-runs/kfold}
shared=${3:-../shared}
bin=target/release/masklab
py=.venv/bin/python
backbone=${BACKBONE:-resnet18} size=${SIZE:-64} epochs=${EPOCHS:-6} folds=${FOLDS:-5}
mkdir -p "$out"
common=(--config configs/cpu-quick.toml --quiet model.backbone=$backbone data.size=$size train.epochs=$epochs)
score() { $py "$shared/bench/score.py" "$1" "$data/eval/answers.csv"; }
timed() { local t0=$(date +%s.%N); "$@"; echo "wall_s $(echo "$(date +%s.%N) - $t0" | bc)"; }

echo "== one model ($backbone, ${size}px, $epochs epochs, 20% of people held out)"
rm -rf "$out/single"
timed $bin train "$data" "${common[@]}" --out "$out/single"
timed $bin predict "$out/single" "$data/eval" --out "$out/single.csv" --device cpu
echo "single: $(score "$out/single.csv")"

echo "== $folds-fold ensemble"
rm -rf "$out/kfold"
timed $bin train "$data" "${common[@]}" data.folds=$folds --out "$out/kfold"
timed $bin predict "$out/kfold" "$data/eval" --out "$out/kfold.csv" --device cpu
echo "kfold: $(score "$out/kfold.csv")"

echo "== tuned decisions"
$bin tune "$out/kfold" --by class | tee "$out/kfold.tune.txt"
$bin predict "$out/kfold" "$data/eval" --out "$out/kfold-tuned.csv" --device cpu
echo "kfold+tune(class): $(score "$out/kfold-tuned.csv")"
$bin tune "$out/kfold" --by task | tee "$out/kfold.tune-task.txt"
$bin predict "$out/kfold" "$data/eval" --out "$out/kfold-tuned-task.csv" --device cpu
echo "kfold+tune(task): $(score "$out/kfold-tuned-task.csv")"
$bin tune "$out/single" --by class | tee "$out/single.tune.txt"
$bin predict "$out/single" "$data/eval" --out "$out/single-tuned.csv" --device cpu
echo "single+tune(class): $(score "$out/single-tuned.csv")"

echo "== predict throughput: the PyTorch reference at the same model and size (1 epoch, then its predict)"
$py "$shared/bench/reference_train.py" "$data" "$out/reference.csv" --model $backbone --size $size \
    --epochs 1 --batch 64 --lr 0.001 --mode single --workers 2 | tee "$out/reference.json"
