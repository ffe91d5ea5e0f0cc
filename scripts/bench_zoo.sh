#!/usr/bin/env bash
# masklab bench vs PyTorch (scripts/bench_torch.py) on the backbones people pick today, side by
# side: one JSON line per run, RUNS runs of each (the median of STEPS timed steps each).
# Usage: scripts/bench_zoo.sh [MASKLAB_BINARY] [PYTHON]
# Environment: DEVICE (cpu; cuda adds --amp --channels-last), MODES ("train infer"), SIZE (224),
# BATCH (8), RUNS (2), WARMUP (2), STEPS (5), BACKBONES (the list below).
set -uo pipefail
bin=${1:-target/release/masklab}
py=${2:-.venv/bin/python}
here=$(dirname "$0")
device=${DEVICE:-cpu}
extra=()
[ "$device" = cpu ] || extra=(--amp --channels-last)
backbones=${BACKBONES:-"convnext_tiny efficientnet_v2_s mobilenet_v3_large regnet_y_1_6gf swin_t vit_b_16"}
for backbone in $backbones; do
  for mode in ${MODES:-train infer}; do
    for _ in $(seq "${RUNS:-2}"); do
      args=("$mode" --backbone "$backbone" --size "${SIZE:-224}" --batch "${BATCH:-8}" --device "$device"
            --warmup "${WARMUP:-2}" --steps "${STEPS:-5}" "${extra[@]}")
      "$bin" bench "${args[@]}"
      "$py" "$here/bench_torch.py" "${args[@]}"
    done
  done
done
