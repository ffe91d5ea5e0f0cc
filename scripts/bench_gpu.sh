#!/usr/bin/env bash
# masklab bench vs PyTorch (scripts/bench_torch.py) on one CUDA card, side by side:
# the reference points (fp16 autocast + channels-last), one JSON line per run.
# Usage: scripts/bench_gpu.sh [MASKLAB_BINARY] [PYTHON]
set -uo pipefail
bin=${1:-target/release/masklab}
py=${2:-python3}
here=$(dirname "$0")
cases=(
  "train efficientnet_b3 380 96"
  "train efficientnet_b0 224 256"
  "train resnet34 224 256"
  "infer efficientnet_b3 380 256"
)
for c in "${cases[@]}"; do
  set -- $c
  "$bin" bench "$1" --backbone "$2" --size "$3" --batch "$4" --device cuda --amp --channels-last
  "$py" "$here/bench_torch.py" "$1" --backbone "$2" --size "$3" --batch "$4" --device cuda --amp --channels-last
done
