#!/usr/bin/env python3
"""Summarises scripts/bench_cpu.sh's JSON lines: per task (train: the first epoch's images/s;
predict: the eval set's images/s) and implementation, the median, the spread (min-max) and the
number of runs, and the ratio of each median to the reference at fp32 and to the reference at
its CPU best, with the goals of issue 25 beside them. Prints a Markdown table, then the machine,
dates and load the runs saw.
Usage: bench_cpu_summary.py RESULTS.jsonl [...]"""
import json, statistics, sys
from collections import defaultdict

from json_lines import records

ORDER = [("masklab", "fp32"), ("masklab", "bf16-channels-last"), ("reference", "fp32"), ("reference", "best")]
# Goals of issue 25: masklab's best against each reference.
GOALS = {("predict", "fp32"): 2.0, ("predict", "best"): 1.3, ("train", "fp32"): 1.5, ("train", "best"): 1.2}


def read(paths):
    runs, notes = defaultdict(list), defaultdict(set)
    for r in records(paths):
        if "task" not in r or "images_per_s" not in r:
            continue
        runs[(r["task"], r["impl"], r["variant"])].append(float(r["images_per_s"]))
        for key in ("machine", "cores", "cpu_bf16"):
            if key in r:
                notes[key].add(str(r[key]))
        if "date" in r:
            notes["date"].add(r["date"][:10])
        if "load_after" in r:
            notes["load"].add(r["load_after"].split()[0])
    return runs, notes


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    runs, notes = read(sys.argv[1:])
    if not runs:
        sys.exit("no bench_cpu.sh results in " + ", ".join(sys.argv[1:]))
    print("| task | implementation | images/s (median) | min-max | runs | vs reference fp32 | vs reference best |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for task in ("predict", "train"):
        medians = {side: statistics.median(runs[(task,) + side]) for side in ORDER if runs.get((task,) + side)}
        for side in ORDER:
            values = runs.get((task,) + side)
            if not values:
                continue
            m = medians[side]
            ratios = []
            for base in ("fp32", "best"):
                b = medians.get(("reference", base))
                ratios.append(f"{m / b:.2f}x" if b else "-")
            print(f"| {task} | {side[0]} {side[1]} | {m:.1f} | {min(values):.1f}-{max(values):.1f} | {len(values)} | {ratios[0]} | {ratios[1]} |")
    print()
    for (task, base), goal in GOALS.items():
        b = statistics.median(runs[(task, "reference", base)]) if runs.get((task, "reference", base)) else None
        best = max((statistics.median(runs[(task, "masklab", v)]) for v in ("fp32", "bf16-channels-last") if runs.get((task, "masklab", v))), default=None)
        if b and best:
            verdict = "met" if best / b >= goal else "not met"
            print(f"goal {task} vs reference {base}: >= {goal}x, measured {best / b:.2f}x ({verdict})")
    print()
    for key in ("machine", "cores", "cpu_bf16", "date"):
        if notes.get(key):
            print(f"{key}: {', '.join(sorted(notes[key]))}")
    if notes.get("load"):
        loads = sorted(float(x) for x in notes["load"])
        print(f"1-minute load after the runs: {loads[0]:.2f}-{loads[-1]:.2f} (a quiet machine stays near 0 between runs)")


if __name__ == "__main__":
    main()
