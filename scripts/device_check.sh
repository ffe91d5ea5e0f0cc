#!/usr/bin/env bash
# One prepared run on a CUDA machine (its python3 holding torch 2.11 + torchvision): checks that
# a release binary built elsewhere trains on CUDA (fp16 + channels-last) and benchmarks it
# against PyTorch. Usage: scripts/device_check.sh [BINARY] [OUTDIR]
set -uo pipefail
bin=${1:-target/release/masklab}
out=${2:-/tmp/masklab-device}
mkdir -p "$out"
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# Libraries the binary needs that the CUDA image may lack (plotters draws text through fontconfig).
[ -d .device/libs ] && export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$(pwd)/.device/libs
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
"$bin" --version
"$bin" demo-data "$out/demo" --people 60 --size 64x80 --seed 3 >/dev/null
time "$bin" train "$out/demo" --out "$out/run" --quiet model.backbone=efficientnet_b0 data.size=64 \
    train.epochs=3 train.batch_size=32 train.amp=fp16 train.channels_last=true train.device=cuda
"$bin" eval "$out/run" "$out/demo" --split eval --json --device cuda | head -c 200; echo
bash "$(dirname "$0")/bench_gpu.sh" "$bin" python3
