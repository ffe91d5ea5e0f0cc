#!/usr/bin/env python3
"""Summary of scripts/preset_search.sh: per candidate, the number of runs, the eval macro F1's
median and range over seeds, each task's median F1, and the median time from start to submission
(train + tune + predict, plus `masklab faces` of the data for candidates that crop faces or read
them with face heads), and whether that time is within the budget (default 2100 s). Sorted by
median F1, best first.
With --against NAME, each candidate's eval F1 minus NAME's, paired by seed, with a 95% bootstrap
interval over the eval photos (the stand-in's eval photos carry no person key; 2,000 resamples
of the photos, both submissions scored on the same draw), from the submissions the runs wrote.
Usage: python3 scripts/preset_search_summary.py RESULTS.jsonl [...] [--budget SECONDS] [--against NAME]"""
import csv, statistics, sys

from json_lines import records


def main():
    args = sys.argv[1:]
    budget = 2100.0
    if "--budget" in args:
        i = args.index("--budget")
        try:
            budget = float(args[i + 1])
        except (IndexError, ValueError):
            sys.exit("--budget needs a number of seconds")
        del args[i:i + 2]
    against = None
    if "--against" in args:
        i = args.index("--against")
        if i + 1 >= len(args):
            sys.exit("--against needs a candidate's name")
        against = args[i + 1]
        del args[i:i + 2]
    if not args:
        sys.exit(__doc__)
    faces_seconds = 0.0
    runs = {}
    for r in records(args):
        if "faces" in r:
            faces_seconds += r["seconds"]
        elif "candidate" in r:
            runs.setdefault(r["candidate"], []).append(r)
    if not runs:
        sys.exit("no preset_search.sh results in " + ", ".join(args))
    if against is not None and against not in runs:
        sys.exit(f"--against {against}: no such candidate (have {', '.join(sorted(runs))})")

    def spread(values):
        med = statistics.median(values)
        return f"{med:.3f}" if len(values) == 1 else f"{med:.3f} [{min(values):.3f}, {max(values):.3f}]"

    rows = []
    for name, rs in runs.items():
        recipe = rs[0]["recipe"]
        faces = faces_seconds if "data.face_crop=mtcnn" in recipe or " heads=" in recipe else 0.0
        total = statistics.median(r["total_seconds"] for r in rs) + faces
        rows.append((statistics.median(r["f1"] for r in rs), name, rs, total, faces))
    rows.sort(key=lambda row: -row[0])
    print(f"| candidate | runs | eval F1 (median [range]) | mask | gender | age | seconds (train + tune + predict{' + faces' if faces_seconds else ''}) | within {budget:.0f} s |")
    print("|---|---:|---|---:|---:|---:|---:|---|")
    for _, name, rs, total, faces in rows:
        med = lambda key: statistics.median(r[key] for r in rs)
        print(f"| {name} | {len(rs)} | {spread([r['f1'] for r in rs])} | {med('f1_mask'):.3f} | {med('f1_gender'):.3f} | "
              f"{med('f1_age'):.3f} | {total:.0f} | {'yes' if total <= budget else 'no'} |")
    print()
    for _, name, rs, _, _ in rows:
        print(f"{name}: {rs[0]['recipe']}")
    if against:
        print(f"\n| candidate | seed | eval F1 - {against} [95% bootstrap over eval photos] |")
        print("|---|---:|---|")
        base = {r["seed"]: r for r in runs[against]}
        for _, name, rs, _, _ in rows:
            if name == against:
                continue
            for r in sorted(rs, key=lambda r: r["seed"]):
                b = base.get(r["seed"])
                if b is None or "submission" not in r or "submission" not in b:
                    continue
                diff, low, high = paired_difference(r["submission"], b["submission"], r["key"])
                print(f"| {name} | {r['seed']} | {diff:+.3f} [{low:+.3f}, {high:+.3f}] |")
    machines = sorted({f"{r['machine']} ({r['cores']} cores)" for rs in runs.values() for r in rs})
    print("\nmachine: " + "; ".join(machines))


def read_answers(path):
    with open(path, newline="") as f:
        return {row["ImageID"]: int(row["ans"]) for row in csv.DictReader(f)}


def paired_difference(submission_a, submission_b, key_path, resamples=2000, seed=0):
    """F1(a) - F1(b) on the key's photos, and its 95% percentile interval over photo resamples."""
    import numpy as np
    key = read_answers(key_path)
    a, b = read_answers(submission_a), read_answers(submission_b)
    ids = sorted(key)
    truth = np.array([key[i] for i in ids])
    pred_a = np.array([a.get(i, -1) for i in ids])
    pred_b = np.array([b.get(i, -1) for i in ids])

    def macro_f1(t, p, weights):
        # score.py's macro F1 (classes absent on both sides skipped), with photos counted `weights` times
        f1s = []
        for c in range(18):
            tp = weights[(t == c) & (p == c)].sum()
            fp = weights[(t != c) & (p == c)].sum()
            fn = weights[(t == c) & (p != c)].sum()
            if tp + fp + fn:
                f1s.append(2 * tp / (2 * tp + fp + fn))
        return sum(f1s) / len(f1s)

    ones = np.ones(len(ids))
    diff = macro_f1(truth, pred_a, ones) - macro_f1(truth, pred_b, ones)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        weights = np.bincount(rng.integers(0, len(ids), len(ids)), minlength=len(ids)).astype(float)
        draws.append(macro_f1(truth, pred_a, weights) - macro_f1(truth, pred_b, weights))
    low, high = np.percentile(draws, [2.5, 97.5])
    return diff, low, high


if __name__ == "__main__":
    main()
