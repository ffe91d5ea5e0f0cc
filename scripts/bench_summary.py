#!/usr/bin/env python3
"""Summarises the JSON lines of `masklab bench` and scripts/bench_torch.py (as
scripts/bench_gpu.sh writes them): per configuration and implementation, the median
images/s, the spread (min-max) and the number of runs, and each side's ratio to PyTorch's
fused-AdamW (train) or eager (infer) variant.
Usage: bench_summary.py RESULTS.jsonl [...]"""
import json, statistics, sys
from collections import defaultdict


def main():
    runs = defaultdict(lambda: defaultdict(list))
    for path in sys.argv[1:]:
        for line in open(path):
            line = line.strip()
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            if "images_per_s" not in r:
                continue
            config = (r["mode"], r["backbone"], r["size"], r["batch"], r["device"], r["amp"], r["channels_last"])
            side = r["impl"] + ("" if r["impl"] == "masklab" else " " + r.get("variant", "foreach"))
            runs[config][side].append(r["images_per_s"])
    print("| mode | backbone | size | batch | implementation | images/s (median) | min-max | runs | vs PyTorch (fused train, eager infer) |")
    print("|---|---|---:|---:|---|---:|---:|---:|---:|")
    for config, sides in runs.items():
        mode, backbone, size, batch = config[:4]
        base_name = "pytorch fused" if mode == "train" else "pytorch eager"
        base = statistics.median(sides[base_name]) if sides.get(base_name) else None
        for side, values in sorted(sides.items()):
            m = statistics.median(values)
            ratio = f"{m / base:.2f}x" if base else "-"
            print(f"| {mode} | {backbone} | {size} | {batch} | {side} | {m:.1f} | {min(values):.1f}-{max(values):.1f} | {len(values)} | {ratio} |")


if __name__ == "__main__":
    main()
