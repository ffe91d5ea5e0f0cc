#!/usr/bin/env bash
# masklab against the PyTorch reference on the CPU, as issue 25 measures it: one training epoch
# from JPEG (the first: decoding included) and prediction of the eval set, each by
#   masklab fp32                         (train.amp=none, plain layout)
#   masklab bf16 + channels-last         (train.amp=bf16 train.channels_last=true; float32 where
#                                         the CPU has no native bf16, as masklab warns)
#   reference fp32                       (../shared/bench/reference_train.py as users run it)
#   reference at its CPU best            (scripts/reference_cpu_best.py: bf16 autocast,
#                                         channels-last, PIL draft(), a DataLoader worker per core)
# in separate processes, alternating, REPS times. One JSON line per run goes to OUT; summarise
# with `python3 scripts/bench_cpu_summary.py OUT`. Run it on a quiet machine: nothing else busy.
#
# Training: EfficientNet-B0 from scratch at SIZE px, batch BATCH, AdamW at 1e-3, on PEOPLE
# evenly spaced people of DATA's train.csv (a linked subset, made once; 80% of them train, as both
# pipelines split 20% of the people off for validation). Each side's own epoch timing is used
# (masklab: metrics.jsonl's train_images_per_s of epoch 1; the references: their epoch loop).
# Prediction: every image of DATA/eval, B0 at SIZE px. masklab's time is its whole process
# (start, model load, decode, inference, CSV); the references' is their prediction loop alone
# (after Python, torch and the model are loaded), which favours them. masklab predicts with the
# run its training repetition just wrote (fp32 or bf16 + channels-last, as that run trained).
#
# Usage: scripts/bench_cpu.sh DATA [MASKLAB_BINARY] [PYTHON]
#   DATA: the default stand-in of ../shared/data/make_maskset.py (2000 + 600 people, 384x512:
#         4,137 eval JPEGs)
#   env: REPS (3), OUT (bench-cpu.jsonl), PEOPLE (300), SIZE (96), BATCH (64),
#        REFERENCE (../shared/bench/reference_train.py), REFERENCE_WORKERS (2: its default),
#        WORK (a folder for the runs, the subset and the submissions; default: a temporary one)
set -euo pipefail
data=${1:?usage: bench_cpu.sh DATA [MASKLAB_BINARY] [PYTHON]}
bin=${2:-target/release/masklab}
py=${3:-.venv/bin/python}
here=$(cd "$(dirname "$0")" && pwd)
reference=${REFERENCE:-$here/../../shared/bench/reference_train.py}
best=$here/reference_cpu_best.py
reps=${REPS:-3}
out=${OUT:-bench-cpu.jsonl}
people=${PEOPLE:-300}
size=${SIZE:-96}
batch=${BATCH:-64}
ref_workers=${REFERENCE_WORKERS:-2}
for f in "$data/train/train.csv" "$data/eval/info.csv" "$reference" "$best"; do
  [ -e "$f" ] || { echo "bench_cpu.sh: $f is missing" >&2; exit 2; }
done
[ -x "$bin" ] || { echo "bench_cpu.sh: $bin is not an executable masklab" >&2; exit 2; }
if [ -n "${WORK:-}" ]; then work=$WORK; mkdir -p "$work"; else work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi
eval_images=$(($(wc -l < "$data/eval/info.csv") - 1))

# PEOPLE evenly spaced people of train.csv, their folders linked (no relabel list: labels do not
# change the speed, and both sides then read the same labels).
subset=$work/subset-$people
if [ ! -f "$subset/train/train.csv" ]; then
  "$py" - "$data" "$subset" "$people" <<'PY'
import csv, os, sys
data, subset, people = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(os.path.join(subset, "train", "images"), exist_ok=True)
with open(os.path.join(data, "train", "train.csv"), newline="") as f:
    reader = csv.DictReader(f)
    rows = list(reader)
    fields = reader.fieldnames
if len(rows) < people:
    sys.exit(f"{data}/train/train.csv has {len(rows)} people, fewer than PEOPLE={people}")
# Evenly spaced rows, not the first ones: a train.csv may be ordered by age or gender, and a
# subset of one age band cannot be trained on.
rows = [rows[i * len(rows) // people] for i in range(people)]
for r in rows:
    link = os.path.join(subset, "train", "images", r["path"])
    if not os.path.lexists(link):
        os.symlink(os.path.abspath(os.path.join(data, "train", "images", r["path"])), link)
with open(os.path.join(subset, "train", "train.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
PY
fi

machine=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
bf16_cpu=$(grep -qE 'avx512_bf16|amx_bf16' /proc/cpuinfo && echo true || echo false)
now() { date +%s.%N; }
# Adds the run's context to a JSON object on stdin.
record() {
  "$py" -c '
import json, sys
r = json.loads(sys.stdin.read())
r.update(json.loads(sys.argv[1]))
print(json.dumps(r))' "$1" >> "$out"
}
context() { # task impl variant rep process_seconds
  printf '{"task":"%s","impl":"%s","variant":"%s","rep":%s,"process_seconds":%.2f,"machine":"%s","cores":%s,"cpu_bf16":%s,"date":"%s","load_after":"%s"}' \
    "$1" "$2" "$3" "$4" "$5" "$machine" "$(nproc)" "$bf16_cpu" "$(date -u +%FT%TZ)" "$(cut -d' ' -f1-3 /proc/loadavg)"
}

masklab_train() { # variant rep overrides...
  local variant=$1 rep=$2; shift 2
  local run=$work/masklab-$variant-$rep
  rm -rf "$run"
  local t0; t0=$(now)
  "$bin" train "$subset" --out "$run" --quiet model.backbone=efficientnet_b0 model.pretrained= data.size="$size" \
    train.batch_size="$batch" train.epochs=1 optim.lr=0.001 train.device=cpu report.enabled=false \
    tracking.tensorboard=false "$@" > "$work/train.log" 2>&1 || { cat "$work/train.log" >&2; exit 1; }
  local seconds; seconds=$(echo "$(now) - $t0" | bc)
  "$py" - "$run/metrics.jsonl" <<'PY' | record "$(context train masklab "$variant" "$rep" "$seconds")"
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("kind") == "epoch" and r.get("epoch") == 1:
        print(json.dumps(dict(images_per_s=round(r["train_images_per_s"], 1), epoch_seconds=round(r["seconds"], 2))))
        break
else:
    sys.exit(f"{sys.argv[1]}: no epoch line")
PY
}

masklab_predict() { # variant rep
  local run=$work/masklab-$1-$2
  local t0; t0=$(now)
  "$bin" predict "$run" "$data/eval" --out "$work/masklab-$1.csv" --device cpu > "$work/predict.log" 2>&1 || { cat "$work/predict.log" >&2; exit 1; }
  local seconds; seconds=$(echo "$(now) - $t0" | bc)
  echo "{\"images\": $eval_images, \"images_per_s\": $(echo "scale=1; $eval_images / $seconds" | bc)}" \
    | record "$(context predict masklab "$1" "$2" "$seconds")"
}

# The reference trains one epoch, validates, then predicts DATA/eval (linked into the subset):
# one process gives both of its measurements.
reference_fp32() { # rep
  local t0; t0=$(now)
  local line
  line=$("$py" "$reference" "$subset" "$work/reference.csv" --model efficientnet_b0 --size "$size" --batch "$batch" \
    --epochs 1 --lr 0.001 --workers "$ref_workers" --device cpu | tail -n 1)
  local seconds; seconds=$(echo "$(now) - $t0" | bc)
  echo "$line" | "$py" -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps(dict(images_per_s=r["train_img_s"], epoch_seconds=r["train_s"])))' \
    | record "$(context train reference fp32 "$1" "$seconds")"
  echo "$line" | "$py" -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps(dict(images_per_s=r["predict_img_s"], loop_seconds=r["predict_s"])))' \
    | record "$(context predict reference fp32 "$1" "$seconds")"
}

reference_best() { # task rep
  local mode=() t0; t0=$(now)
  [ "$1" = predict ] && mode=(--predict)
  local line
  line=$("$py" "$best" "$subset" "${mode[@]}" --model efficientnet_b0 --size "$size" --batch "$batch" --epochs 1 | tail -n 1)
  local seconds; seconds=$(echo "$(now) - $t0" | bc)
  echo "$line" | "$py" -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps(dict(images_per_s=r["images_per_s"], loop_seconds=r["seconds"], workers=r["workers"], bf16=r["bf16"])))' \
    | record "$(context "$1" reference best "$2" "$seconds")"
}

mkdir -p "$subset"
ln -sfn "$(cd "$data/eval" && pwd)" "$subset/eval"
: > "$out"
for rep in $(seq "$reps"); do
  echo "bench_cpu.sh: repetition $rep of $reps" >&2
  masklab_train fp32 "$rep" train.amp=none train.channels_last=false
  masklab_predict fp32 "$rep"
  reference_fp32 "$rep"
  masklab_train bf16-channels-last "$rep" train.amp=bf16 train.channels_last=true
  masklab_predict bf16-channels-last "$rep"
  reference_best train "$rep"
  reference_best predict "$rep"
done
cat "$out"
