#!/usr/bin/env bash
# Do synthetic masks carry to real photos? The same recipe trained on a stand-in without synthetic
# masks, with the painted masks and with the rendered ones (augment.synth_mask_style), for each
# seed, alternating; each run scored on the stand-in's eval set (`masklab eval --split eval --json`)
# and on folders of real photos: `masklab predict RUN FOLDER --largest-face` (each photo's largest
# face, framed as in training), counting the masked photos read as masked (worn or incorrectly
# worn) and the unmasked read as not worn. One JSON line per run goes to OUT;
# `python3 scripts/real_photos_summary.py OUT` gives each variant's median and range over seeds.
# Usage: scripts/real_photos_check.sh DATA MASKED_DIR UNMASKED_DIR [MASKLAB_BINARY] [key=value ...]
#   DATA: a stand-in of ../shared/data/make_maskset.py (it writes eval/answers.csv); its
#         train/faces.csv is made first (`masklab faces DATA`) if missing: synthetic masks and
#         the recorded framing need the landmarks.
#   MASKED_DIR, UNMASKED_DIR: folders of real photos (searched recursively); their faces.csv
#         caches are written there by the first run (`masklab faces`).
#   env: SEEDS ("1 2 3"), VARIANTS ("none painted rendered"), SYNTH (0.5: augment.synth_mask for
#        the masked variants), CONFIG (configs/cpu-quick.toml), OUT (real-photos.jsonl),
#        WORK (the run folders; default: a temporary folder).
set -euo pipefail
data=${1:?usage: real_photos_check.sh DATA MASKED_DIR UNMASKED_DIR [MASKLAB_BINARY] [key=value ...]}
masked=${2:?masked photos folder}
unmasked=${3:?unmasked photos folder}
bin=${4:-target/release/masklab}
shift $(( $# >= 4 ? 4 : 3 ))
here=$(cd "$(dirname "$0")" && pwd)
seeds=${SEEDS:-1 2 3}
variants=${VARIANTS:-none painted rendered}
synth=${SYNTH:-0.5}
config=${CONFIG:-$here/../configs/cpu-quick.toml}
out=${OUT:-real-photos.jsonl}
for f in "$data/train/train.csv" "$data/eval/answers.csv" "$config" "$masked" "$unmasked"; do
  [ -e "$f" ] || { echo "real_photos_check.sh: $f is missing" >&2; exit 2; }
done
[ -x "$bin" ] || { echo "real_photos_check.sh: $bin is not an executable masklab" >&2; exit 2; }
if [ -n "${WORK:-}" ]; then work=$WORK; mkdir -p "$work"; else work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi
for folder in "$data" "$masked" "$unmasked"; do
  echo "real_photos_check.sh: faces of $folder" >&2
  "$bin" faces "$folder" --device cpu > "$work/faces.log" 2>&1 || { cat "$work/faces.log" >&2; exit 1; }
done
: > "$out"
for seed in $seeds; do
  for variant in $variants; do
    case $variant in
      none) masks=(augment.synth_mask=0) ;;
      painted|rendered) masks=(augment.synth_mask="$synth" augment.synth_mask_style="$variant") ;;
      *) echo "real_photos_check.sh: unknown variant $variant (none, painted, rendered)" >&2; exit 2 ;;
    esac
    run=$work/$variant-$seed
    rm -rf "$run"
    echo "real_photos_check.sh: seed $seed, $variant" >&2
    t0=$(date +%s.%N)
    "$bin" train "$data" --config "$config" --out "$run" --quiet train.seed="$seed" train.device=cpu \
      report.enabled=false "${masks[@]}" "$@" > "$work/train.log" 2>&1 || { cat "$work/train.log" >&2; exit 1; }
    train_seconds=$(echo "$(date +%s.%N) - $t0" | bc)
    "$bin" eval "$run" "$data" --split eval --json --device cpu > "$work/eval.json" 2> "$work/eval.log" \
      || { cat "$work/eval.log" >&2; exit 1; }
    for kind in masked unmasked; do
      folder=$([ $kind = masked ] && echo "$masked" || echo "$unmasked")
      "$bin" predict "$run" "$folder" --largest-face --out "$work/$kind.csv" --device cpu > "$work/predict.log" 2>&1 \
        || { cat "$work/predict.log" >&2; exit 1; }
    done
    python3 - "$work" "$seed" "$variant" "$train_seconds" >> "$out" <<'PY'
import csv, json, os, sys
work, seed, variant, seconds = sys.argv[1:]
e = json.load(open(os.path.join(work, "eval.json")))
line = dict(seed=int(seed), variant=variant, train_seconds=round(float(seconds), 1),
            f1=e["f1"], f1_mask=e["f1_mask"], f1_gender=e["f1_gender"], f1_age=e["f1_age"])
interval = (e.get("intervals") or {}).get("f1")
if interval:
    line["f1_low"], line["f1_high"] = interval["low"], interval["high"]
# class = mask*6 + gender*3 + age; mask 0 worn, 1 incorrect, 2 not worn. A photo without a face
# is answered whole (its face column empty): counted, and scored like the others.
for kind, right in (("masked", (0, 1)), ("unmasked", (2,))):
    with open(os.path.join(work, kind + ".csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{work}/{kind}.csv: no rows")
    line[kind + "_photos"] = len(rows)
    line[kind + "_without_face"] = sum(1 for r in rows if r["face"] == "")
    line[kind + "_read_right"] = round(sum(1 for r in rows if int(r["class"]) // 6 in right) / len(rows), 4)
print(json.dumps(line))
PY
  done
done
cat "$out"
