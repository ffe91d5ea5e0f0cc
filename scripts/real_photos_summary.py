"""Summary of scripts/real_photos_check.sh: per variant (no synthetic masks, painted, rendered),
the median and range over seeds of the stand-in eval F1 and of the shares of real masked photos
read as masked and real unmasked photos read as not worn, and each variant's paired difference
from `none` (same seed) for the F1.
Usage: python3 scripts/real_photos_summary.py real-photos.jsonl [more.jsonl ...]"""
import statistics, sys
from collections import defaultdict
from json_lines import records

if len(sys.argv) < 2:
    sys.exit(__doc__)
by_variant = defaultdict(dict)
for r in records(sys.argv[1:]):
    by_variant[r["variant"]][r["seed"]] = r


def spread(values):
    return f"{statistics.median(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


print("| variant | runs | stand-in eval F1 | masked read as masked | unmasked read as not worn | F1 - none (paired) |")
print("|---|---|---|---|---|---|")
for variant in ("none", "painted", "rendered"):
    runs = by_variant.get(variant)
    if not runs:
        continue
    seeds = sorted(runs)
    f1 = [runs[s]["f1"] for s in seeds]
    masked = [runs[s]["masked_read_right"] for s in seeds]
    unmasked = [runs[s]["unmasked_read_right"] for s in seeds]
    base = by_variant.get("none", {})
    diffs = [runs[s]["f1"] - base[s]["f1"] for s in seeds if s in base]
    diff = spread(diffs) if diffs and variant != "none" else ""
    print(f"| {variant} | {len(seeds)} | {spread(f1)} | {spread(masked)} | {spread(unmasked)} | {diff} |")
