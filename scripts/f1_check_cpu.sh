#!/usr/bin/env bash
# Does bf16 + channels-last on the CPU keep the F1? The same short recipe trained in float32 and
# in bf16 + channels-last (train.amp=bf16 train.channels_last=true), for each seed, alternating,
# each run scored on DATA's eval set with answers (`masklab eval RUN DATA --split eval --json`,
# with its bootstrap intervals where that version of masklab draws them). One JSON line per run
# goes to OUT; `python3 scripts/f1_check_summary.py OUT` gives the mean and spread over seeds,
# the paired differences, and each run's interval.
# Usage: scripts/f1_check_cpu.sh DATA [MASKLAB_BINARY]
#   DATA: a stand-in of ../shared/data/make_maskset.py (it writes eval/answers.csv)
#   env: SEEDS ("1 2 3 4 5"), CONFIG (configs/cpu-quick.toml: MobileNetV2 from ImageNet
#        at 96 px, 3 epochs; its first run fetches the weights), OUT (f1-check.jsonl),
#        WORK (the run folders; default: a temporary folder), and any further key=value
#        overrides for both precisions as arguments after the binary.
set -euo pipefail
data=${1:?usage: f1_check_cpu.sh DATA [MASKLAB_BINARY] [key=value ...]}
bin=${2:-target/release/masklab}
shift $(( $# >= 2 ? 2 : 1 ))
here=$(cd "$(dirname "$0")" && pwd)
seeds=${SEEDS:-1 2 3 4 5}
config=${CONFIG:-$here/../configs/cpu-quick.toml}
out=${OUT:-f1-check.jsonl}
for f in "$data/train/train.csv" "$data/eval/info.csv" "$data/eval/answers.csv" "$config"; do
  [ -e "$f" ] || { echo "f1_check_cpu.sh: $f is missing" >&2; exit 2; }
done
[ -x "$bin" ] || { echo "f1_check_cpu.sh: $bin is not an executable masklab" >&2; exit 2; }
if [ -n "${WORK:-}" ]; then work=$WORK; mkdir -p "$work"; else work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi
bf16_cpu=$(grep -qE 'avx512_bf16|amx_bf16' /proc/cpuinfo && echo true || echo false)
: > "$out"
for seed in $seeds; do
  for variant in fp32 bf16-channels-last; do
    case $variant in
      fp32) precision=(train.amp=none train.channels_last=false) ;;
      *) precision=(train.amp=bf16 train.channels_last=true) ;;
    esac
    run=$work/$variant-$seed
    rm -rf "$run"
    echo "f1_check_cpu.sh: seed $seed, $variant" >&2
    t0=$(date +%s.%N)
    "$bin" train "$data" --config "$config" --out "$run" --quiet train.seed="$seed" train.device=cpu \
      report.enabled=false "${precision[@]}" "$@" > "$work/train.log" 2>&1 || { cat "$work/train.log" >&2; exit 1; }
    train_seconds=$(echo "$(date +%s.%N) - $t0" | bc)
    "$bin" eval "$run" "$data" --split eval --json --device cpu > "$work/eval.json" 2> "$work/eval.log" \
      || { cat "$work/eval.log" >&2; exit 1; }
    python3 - "$work/eval.json" "$seed" "$variant" "$train_seconds" "$bf16_cpu" >> "$out" <<'PY'
import json, sys
path, seed, variant, seconds, bf16_cpu = sys.argv[1:]
e = json.load(open(path))
line = dict(seed=int(seed), variant=variant, train_seconds=round(float(seconds), 1), cpu_bf16=bf16_cpu == "true",
            images=e["images"], f1=e["f1"], f1_mask=e["f1_mask"], f1_gender=e["f1_gender"], f1_age=e["f1_age"])
interval = (e.get("intervals") or {}).get("f1")
if interval:
    line["f1_low"], line["f1_high"] = interval["low"], interval["high"]
print(json.dumps(line))
PY
  done
done
cat "$out"
