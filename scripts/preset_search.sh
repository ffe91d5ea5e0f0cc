#!/usr/bin/env bash
# Which recipe should a preset be? Each candidate recipe is run as a user would run it, timed from
# start to submission: `masklab train` on DATA, `masklab tune` when the candidate asks for decision
# biases, `masklab predict` of DATA/eval, then the submission scored against DATA/eval/answers.csv
# by ../shared/bench/score.py (the competition's macro F1 and each task's). When a candidate crops
# faces (data.face_crop=mtcnn) or reads them with face heads (heads=NETWORK: `tune --face-heads`),
# `masklab faces` of DATA (train and eval) runs once first, timed, and its time is added to every
# such candidate's total by the summary. Candidates and seeds
# alternate: seed 1 of every candidate, then seed 2, ... A candidate with biases is also scored
# without them (`predict --no-tune`, not timed). One JSON line per run goes to OUT;
# `python3 scripts/preset_search_summary.py OUT [--budget SECONDS] [--against NAME]` gives the table.
#
# Usage: scripts/preset_search.sh DATA CANDIDATES [MASKLAB_BINARY]
#   DATA: a stand-in of ../shared/data/make_maskset.py (it writes eval/answers.csv)
#   CANDIDATES: a text file, one candidate per line:
#     NAME CONFIG [tune=class|task] [heads=faceres|faceres-deep] [key=value ...]
#     e.g.  mnv2-96-e3   configs/cpu-quick.toml
#           mnv2-96-e8-t configs/cpu-quick.toml tune=class train.epochs=8 loss.label_smoothing=0.1
#           mnv2-heads   configs/cpu-quick.toml heads=faceres-deep
#     (heads= tunes with face heads: `masklab tune RUN --face-heads NETWORK`, by class unless tune= says)
#     (blank lines and lines starting with # are skipped; CONFIG is relative to the current folder)
#   env: SEEDS ("1"), OUT (preset-search.jsonl, appended to), WORK (the run folders and
#        submissions; default: a temporary folder), SCORE (../shared/bench/score.py), PYTHON (python3:
#        runs the scorer and writes the records)
set -euo pipefail
data=${1:?usage: preset_search.sh DATA CANDIDATES [MASKLAB_BINARY]}
candidates=${2:?usage: preset_search.sh DATA CANDIDATES [MASKLAB_BINARY]}
bin=${3:-target/release/masklab}
here=$(cd "$(dirname "$0")" && pwd)
score=${SCORE:-$here/../../shared/bench/score.py}
seeds=${SEEDS:-1}
out=${OUT:-preset-search.jsonl}
py=${PYTHON:-python3}
for f in "$data/train/train.csv" "$data/eval/info.csv" "$data/eval/answers.csv" "$candidates" "$score"; do
  [ -e "$f" ] || { echo "preset_search.sh: $f is missing" >&2; exit 2; }
done
[ -x "$bin" ] || { echo "preset_search.sh: $bin is not an executable masklab" >&2; exit 2; }
if [ -n "${WORK:-}" ]; then work=$WORK; mkdir -p "$work"; else work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi

# The candidates, checked before anything runs: a typo found after an hour of training is an hour lost.
names=()
lines=()
n=0
while IFS= read -r line || [ -n "$line" ]; do
  n=$((n + 1))
  line=${line%%$'\r'}
  [[ -z "${line// /}" || "$line" =~ ^[[:space:]]*# ]] && continue
  read -r -a words <<< "$line"
  [ ${#words[@]} -ge 2 ] || { echo "$candidates:$n: expected NAME CONFIG [tune=class|task] [heads=NETWORK] [key=value ...]" >&2; exit 2; }
  [[ "${words[0]}" =~ ^[A-Za-z0-9._-]+$ ]] || { echo "$candidates:$n: name \`${words[0]}\` may hold only letters, digits, . _ -" >&2; exit 2; }
  [ -f "${words[1]}" ] || { echo "$candidates:$n: config ${words[1]} is missing" >&2; exit 2; }
  for name in "${names[@]}"; do
    [ "$name" != "${words[0]}" ] || { echo "$candidates:$n: candidate ${words[0]} is named twice" >&2; exit 2; }
  done
  for word in "${words[@]:2}"; do
    case $word in
      tune=class|tune=task) ;;
      tune=*) echo "$candidates:$n: $word: tune is class or task" >&2; exit 2 ;;
      heads=faceres|heads=faceres-deep) ;;
      heads=*) echo "$candidates:$n: $word: heads is faceres or faceres-deep" >&2; exit 2 ;;
      *.*=*) ;;
      *) echo "$candidates:$n: $word is not tune=class|task, heads=NETWORK nor a section.key=value override" >&2; exit 2 ;;
    esac
  done
  names+=("${words[0]}")
  lines+=("$line")
done < "$candidates"
[ ${#lines[@]} -gt 0 ] || { echo "$candidates: no candidates" >&2; exit 2; }

machine=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }

# Face boxes once, timed: only when a candidate crops or reads faces and the caches are missing.
if printf '%s\n' "${lines[@]}" | grep -q -e 'data.face_crop=mtcnn' -e 'heads='; then
  if [ ! -f "$data/train/faces.csv" ] || [ ! -f "$data/eval/faces.csv" ]; then
    echo "preset_search.sh: faces of $data" >&2
    t0=$(now)
    # `masklab faces DATA` writes DATA/train/faces.csv and DATA/eval/faces.csv.
    "$bin" faces "$data" --device cpu > "$work/faces.log" 2>&1 || { cat "$work/faces.log" >&2; exit 1; }
    printf '{"faces":"%s","seconds":%.1f,"machine":"%s","cores":%s,"date":"%s"}\n' \
      "$data" "$(since "$t0")" "$machine" "$(nproc)" "$(date -u +%FT%TZ)" >> "$out"
  fi
fi

for seed in $seeds; do
  for line in "${lines[@]}"; do
    read -r -a words <<< "$line"
    name=${words[0]} config=${words[1]} tune=none heads=none overrides=()
    for word in "${words[@]:2}"; do
      case $word in tune=*) tune=${word#tune=} ;; heads=*) heads=${word#heads=} ;; *) overrides+=("$word") ;; esac
    done
    heads_args=()
    if [ "$heads" != none ]; then
      heads_args=(--face-heads "$heads" --device cpu)
      [ "$tune" != none ] || tune=class
    fi
    run=$work/$name-$seed
    rm -rf "$run"
    echo "preset_search.sh: seed $seed, $name" >&2
    t0=$(now)
    "$bin" train "$data" --config "$config" --out "$run" --quiet train.seed="$seed" train.device=cpu \
      report.enabled=false "${overrides[@]}" > "$work/train.log" 2>&1 || { cat "$work/train.log" >&2; exit 1; }
    train_seconds=$(since "$t0")
    tune_seconds=0
    if [ "$tune" != none ]; then
      t0=$(now)
      "$bin" tune "$run" --by "$tune" "${heads_args[@]}" > "$work/tune.log" 2>&1 || { cat "$work/tune.log" >&2; exit 1; }
      tune_seconds=$(since "$t0")
    fi
    t0=$(now)
    "$bin" predict "$run" "$data/eval" --out "$work/$name-$seed.csv" --device cpu > "$work/predict.log" 2>&1 \
      || { cat "$work/predict.log" >&2; exit 1; }
    predict_seconds=$(since "$t0")
    "$py" "$score" "$work/$name-$seed.csv" "$data/eval/answers.csv" > "$work/score.json"
    # With biases (and face heads), the same run without them too (not timed): what they changed.
    echo '{}' > "$work/score-untuned.json"
    if [ "$tune" != none ]; then
      "$bin" predict "$run" "$data/eval" --no-tune --out "$work/$name-$seed-untuned.csv" --device cpu > "$work/predict.log" 2>&1 \
        || { cat "$work/predict.log" >&2; exit 1; }
      "$py" "$score" "$work/$name-$seed-untuned.csv" "$data/eval/answers.csv" > "$work/score-untuned.json"
    fi
    "$py" - "$run" "$work/score.json" "$work/score-untuned.json" "$name" "$seed" "$tune" "$train_seconds" "$tune_seconds" \
      "$predict_seconds" "$machine" "$line" "$data/eval/answers.csv" >> "$out" <<'PY'
import json, os, sys, time
run, score, untuned, name, seed, tune, train_s, tune_s, predict_s, machine, line, key = sys.argv[1:]
s = json.load(open(score))
u = json.load(open(untuned))
best_val = None
for l in open(os.path.join(run, "metrics.jsonl")):
    r = json.loads(l)
    val = r.get("val") if r.get("kind") == "epoch" else None
    if isinstance(val, dict) and "f1" in val:
        best_val = max(best_val or 0.0, val["f1"])
train_s, tune_s, predict_s = float(train_s), float(tune_s), float(predict_s)
print(json.dumps(dict(
    candidate=name, seed=int(seed), recipe=line, tune=tune,
    f1=s["f1"], f1_mask=s["f1_mask"], f1_gender=s["f1_gender"], f1_age=s["f1_age"], accuracy=s["accuracy"],
    f1_without_biases=u.get("f1"), f1_age_without_biases=u.get("f1_age"),
    submission=os.path.abspath(os.path.join(os.path.dirname(score), f"{name}-{seed}.csv")),
    key=os.path.abspath(key),
    best_val_f1=best_val, train_seconds=round(train_s, 1), tune_seconds=round(tune_s, 1),
    predict_seconds=round(predict_s, 1), total_seconds=round(train_s + tune_s + predict_s, 1),
    machine=machine, cores=os.cpu_count(), date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))))
PY
    tail -n 1 "$out" >&2
  done
done
