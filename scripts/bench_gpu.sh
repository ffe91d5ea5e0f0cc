#!/usr/bin/env bash
# masklab bench against PyTorch (scripts/bench_torch.py) on one CUDA card, fairly: PyTorch at
# its fast path (AdamW(fused=True) + GradScaler, channels-last model and input, cudnn.benchmark)
# and at its default path (foreach AdamW), optionally torch.compile (COMPILE=1); fp16 autocast
# and channels-last on both sides. The sides alternate in separate processes, REPS times (3),
# and every JSON line goes to OUT (bench-gpu.jsonl) with the GPU's clocks and the other
# processes on it before and after; scripts/bench_summary.py then prints the table (median,
# spread, runs, ratio to fused PyTorch).
# Usage: scripts/bench_gpu.sh [MASKLAB_BINARY] [PYTHON]    (env: REPS, OUT, COMPILE)
set -uo pipefail
bin=${1:-target/release/masklab}
py=${2:-python3}
here=$(dirname "$0")
reps=${REPS:-3}
out=${OUT:-bench-gpu.jsonl}
: > "$out"
gpu_state() {
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,clocks.max.sm,temperature.gpu,power.draw,utilization.gpu --format=csv,noheader \
    | sed "s/^/{\"gpu_state\": \"$1\", \"gpu\": \"/; s/\$/\"}/" >> "$out"
  nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader \
    | sed "s/^/{\"other_process\": \"/; s/\$/\"}/" >> "$out"
}
cases=(
  "train efficientnet_b3 380 96"
  "train efficientnet_b0 224 256"
  "train resnet34 224 256"
  "infer efficientnet_b3 380 256"
)
gpu_state before
for rep in $(seq "$reps"); do
  for c in "${cases[@]}"; do
    set -- $c
    "$bin" bench "$1" --backbone "$2" --size "$3" --batch "$4" --device cuda --amp --channels-last | tee -a "$out"
    if [ "$1" = train ]; then
      "$py" "$here/bench_torch.py" "$1" --backbone "$2" --size "$3" --batch "$4" --device cuda --amp --channels-last --optimizer fused | tee -a "$out"
      "$py" "$here/bench_torch.py" "$1" --backbone "$2" --size "$3" --batch "$4" --device cuda --amp --channels-last --optimizer foreach | tee -a "$out"
    else
      "$py" "$here/bench_torch.py" "$1" --backbone "$2" --size "$3" --batch "$4" --device cuda --amp --channels-last | tee -a "$out"
    fi
    if [ "${COMPILE:-0}" = 1 ]; then
      "$py" "$here/bench_torch.py" "$1" --backbone "$2" --size "$3" --batch "$4" --device cuda --amp --channels-last --compile | tee -a "$out"
    fi
  done
done
gpu_state after
"$py" "$here/bench_summary.py" "$out"
