#!/usr/bin/env python3
"""Summarises scripts/f1_check_cpu.sh's JSON lines: per precision the eval macro F1's mean,
standard deviation and range over seeds; the paired difference bf16 + channels-last minus fp32
(same seed) with its mean and spread; and, where the eval drew them, each run's 95% bootstrap
interval and whether every bf16 run's F1 lies inside the interval of the fp32 run of its seed.
Usage: f1_check_summary.py RESULTS.jsonl [...]"""
import statistics, sys

from json_lines import records

VARIANTS = ("fp32", "bf16-channels-last")


def spread(values):
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    runs = {}
    for r in records(sys.argv[1:]):
        if r.get("variant") in VARIANTS and "f1" in r:
            runs[(r["variant"], r["seed"])] = r
    if not runs:
        sys.exit("no f1_check_cpu.sh results in " + ", ".join(sys.argv[1:]))
    print("| precision | runs | eval F1 mean | sd | min-max | mask | gender | age |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for v in VARIANTS:
        rs = [r for (variant, _), r in sorted(runs.items()) if variant == v]
        if not rs:
            continue
        f1 = [r["f1"] for r in rs]
        task = lambda k: statistics.mean(r[k] for r in rs)
        print(f"| {v} | {len(rs)} | {statistics.mean(f1):.4f} | {spread(f1):.4f} | {min(f1):.4f}-{max(f1):.4f} | "
              f"{task('f1_mask'):.4f} | {task('f1_gender'):.4f} | {task('f1_age'):.4f} |")
    seeds = sorted({s for (_, s) in runs if ("fp32", s) in runs and ("bf16-channels-last", s) in runs})
    if seeds:
        diffs = [runs[("bf16-channels-last", s)]["f1"] - runs[("fp32", s)]["f1"] for s in seeds]
        print(f"\npaired difference (bf16 + channels-last - fp32) over {len(seeds)} seeds: mean {statistics.mean(diffs):+.4f}, "
              f"sd {spread(diffs):.4f}, range {min(diffs):+.4f} to {max(diffs):+.4f}")
        with_intervals = [s for s in seeds if "f1_low" in runs[("fp32", s)]]
        if with_intervals:
            print("\n| seed | fp32 F1 [95% interval] | bf16 + channels-last F1 [95% interval] | bf16 inside fp32's interval |")
            print("|---:|---|---|---|")
            inside = 0
            for s in with_intervals:
                a, b = runs[("fp32", s)], runs[("bf16-channels-last", s)]
                ok = a["f1_low"] <= b["f1"] <= a["f1_high"]
                inside += ok
                fmt = lambda r: f"{r['f1']:.4f} [{r['f1_low']:.4f}, {r['f1_high']:.4f}]" if "f1_low" in r else f"{r['f1']:.4f}"
                print(f"| {s} | {fmt(a)} | {fmt(b)} | {'yes' if ok else 'no'} |")
            print(f"\n{inside} of {len(with_intervals)} bf16 runs inside the interval of the fp32 run of the same seed")
        else:
            print("(no bootstrap intervals in these evaluations: this masklab's eval draws none)")
    if any(not r.get("cpu_bf16", True) for r in runs.values()):
        print("\nwarning: this CPU has no native bf16: masklab ran the bf16 runs in float32 (as it warns)")


if __name__ == "__main__":
    main()
