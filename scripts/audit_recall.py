#!/usr/bin/env python3
"""Recall of planted label errors: masklab's person-aware audit against cleanlab per photo.

Reads a k-fold run audited with `masklab audit RUN --top 0` (RUN/audit.json: every suspect,
ranked), its out-of-fold predictions (RUN/oof_predictions.csv) and the list of planted errors
(a relabel.csv, e.g. DATA/train/relabel.csv of make_maskset.py's output, with DATA/train/train.csv
mapping ids to folders). Runs `cleanlab.filter.find_label_issues` on the same probabilities (18
classes, default filter, ranked by self-confidence) and prints, for list lengths N, how many
planted errors each list holds in its top N:

- masklab: a planted error counts when a suspect of the same person folder and field is in the top N;
- cleanlab (any photo): when any photo of the person is in the top N (generous: a flagged photo
  of a gender-flipped person may be flagged for its age);
- cleanlab (right field): when a photo of the person is in the top N and its argmax differs from
  its label in the planted field (gender for a gender flip, the mask state of the normal or
  incorrect_mask photo for a swap, the age band for an age error, the mask state for a mask error).

Also checks that masklab's per-photo confident learning flags the same photos as cleanlab.
Needs numpy and cleanlab (a bench-only install). Usage:
  audit_recall.py RUN DATA [--planted FILE] [--lengths 10,30,100] [--json]
"""
import argparse, csv, json, os, sys

import numpy as np
from cleanlab.filter import find_label_issues


def read_planted(path, train_csv):
    folders = {}
    with open(train_csv, newline="") as f:
        for r in csv.DictReader(f):
            folders.setdefault(r["id"].strip(), []).append(r["path"].strip())
    planted = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            for folder in folders.get(r["id"].strip(), []):
                field = r["field"].strip().lower()
                stem = r["true_value"].split("=")[0].strip().lower() if field == "mask" else None
                planted.append((folder, field, stem))
    return planted


def stem_of(path):
    return os.path.splitext(os.path.basename(path.replace("\\", "/")))[0].lower()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("data")
    ap.add_argument("--planted", help="relabel.csv listing the planted errors (default DATA/train/relabel.csv)")
    ap.add_argument("--lengths", default="10,30,100")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    lengths = [int(x) for x in a.lengths.split(",")]
    planted = read_planted(a.planted or os.path.join(a.data, "train", "relabel.csv"), os.path.join(a.data, "train", "train.csv"))

    with open(os.path.join(a.run, "audit.json")) as f:
        audit = json.load(f)
    if audit["top"] != 0:
        sys.exit("audit.json lists only the top %d: audit with --top 0" % audit["top"])
    suspects = audit["audit"]["suspects"]

    rows = list(csv.DictReader(open(os.path.join(a.run, "oof_predictions.csv"), newline="")))
    labels = np.array([int(r["true"]) for r in rows])
    probs = np.array([[float(r[f"p{c}"]) for c in range(18)] for r in rows])
    probs = probs / probs.sum(axis=1, keepdims=True)
    ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
    mask = find_label_issues(labels, probs)
    ours = set(audit["audit"]["flagged_photos"])
    theirs = {rows[i]["path"] for i in np.flatnonzero(mask)}

    def task(c, field):
        return {"gender": (c // 3) % 2, "age": c % 3}.get(field, c // 6)

    def cleanlab_hits(n, strict):
        found = set()
        for i in ranked[:n]:
            r = rows[i]
            pred = int(probs[i].argmax())
            for k, (folder, field, stem) in enumerate(planted):
                if r["person"] != folder:
                    continue
                if not strict:
                    found.add(k)
                    continue
                photo = stem_of(r["path"])
                if field == "swap" and photo not in ("normal", "incorrect_mask"):
                    continue
                if field == "mask" and photo != stem:
                    continue
                f = "mask" if field in ("swap", "mask") else field
                if task(pred, f) != task(int(labels[i]), f):
                    found.add(k)
        return len(found)

    def masklab_hits(n):
        top = {(s["person"], s["field"], s.get("photo")) for s in suspects[:n]}
        return sum(1 for folder, field, stem in planted if any(p == folder and f == field and (field != "mask" or ph == stem) for p, f, ph in top))

    planted_people = {(folder, field) for folder, field, _ in planted}
    top30 = suspects[:30]
    unplanted30 = [s for s in top30 if (s["person"], s["field"]) not in planted_people]
    out = {
        "planted": len(planted),
        "photos": len(rows),
        "masklab_suspects": len(suspects),
        "cleanlab_issues": int(mask.sum()),
        "masklab_flags": len(ours),
        "flags_agree": ours == theirs,
        "flags_only_masklab": len(ours - theirs),
        "flags_only_cleanlab": len(theirs - ours),
        "recall": {n: {"masklab": masklab_hits(n), "cleanlab_any_photo": cleanlab_hits(n, False), "cleanlab_right_field": cleanlab_hits(n, True)} for n in lengths},
        "top30_not_planted": [(s["person"], s["field"], s["given"], s["suggested"], round(s["score"], 3), s["hard_case"]) for s in unplanted30],
        "missed_by_masklab_at_30": [p for p in planted if not any(s["person"] == p[0] and s["field"] == p[1] for s in top30)],
    }
    if a.json:
        print(json.dumps(out))
        return
    print(f"{out['planted']} planted errors, {out['photos']} photos; masklab: {out['masklab_suspects']} suspects; "
          f"cleanlab: {out['cleanlab_issues']} photo issues (masklab's own confident learning flags {out['masklab_flags']}, "
          f"same photos: {out['flags_agree']}, only masklab {out['flags_only_masklab']}, only cleanlab {out['flags_only_cleanlab']})")
    print("| top N | masklab audit | cleanlab, any photo of the person | cleanlab, photo wrong in the planted field |")
    print("|---|---|---|---|")
    for n, r in out["recall"].items():
        print(f"| {n} | {r['masklab']}/{out['planted']} | {r['cleanlab_any_photo']}/{out['planted']} | {r['cleanlab_right_field']}/{out['planted']} |")
    print(f"top 30 of masklab not planted: {len(unplanted30)}")
    for s in out["top30_not_planted"]:
        print("  ", *s)
    print("planted, not in masklab's top 30:", out["missed_by_masklab_at_30"])


if __name__ == "__main__":
    main()
