#!/usr/bin/env python3
"""Plants more wrong labels into a finished k-fold run's out-of-fold predictions, for measuring
the label audit at a higher error rate without training again.

A person's out-of-fold probabilities come from the fold model that never saw the person, so
filing the person wrongly changes only the labels of their rows (and, slightly, what the other
folds trained on: that second-order effect is what this leaves out). Writes:

  OUT_RUN/  a copy of RUN whose oof_predictions.csv has the new wrong labels (folds symlinked)
  OUT_DATA/ DATA with train/train.csv filed the same way (images symlinked) and
            train/relabel.csv = DATA's planted list + the new ones

Usage: audit_plant.py RUN DATA OUT_RUN OUT_DATA [--gender 20] [--swap 10] [--age 10] [--seed 1]
Age errors move a person's filed age to another band, at least 8 years outside the true band.
"""
import argparse, csv, os, random, shutil


def band(age):
    return 0 if age < 30 else (1 if age < 60 else 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for a in ("run", "data", "out_run", "out_data"):
        ap.add_argument(a)
    ap.add_argument("--gender", type=int, default=20)
    ap.add_argument("--swap", type=int, default=10)
    ap.add_argument("--age", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)

    train = list(csv.DictReader(open(os.path.join(a.data, "train", "train.csv"), newline="")))
    planted = list(csv.DictReader(open(os.path.join(a.data, "train", "relabel.csv"), newline="")))
    already = {r["id"] for r in planted}
    ids = {}
    for r in train:
        ids.setdefault(r["id"], []).append(r)
    # People whose id is unique and who carry no planted error yet.
    free = [r for r in train if len(ids[r["id"]]) == 1 and r["id"] not in already]
    rng.shuffle(free)
    picks = {"gender": free[: a.gender], "swap": free[a.gender : a.gender + a.swap], "age": free[a.gender + a.swap : a.gender + a.swap + a.age]}
    new_rows, filed = [], {}
    for r in picks["gender"]:
        g = "female" if r["gender"] == "male" else "male"
        new_rows.append([r["id"], "gender", r["gender"]])
        filed[r["path"]] = ("gender", g)
    for r in picks["swap"]:
        new_rows.append([r["id"], "swap", "normal<->incorrect_mask"])
        filed[r["path"]] = ("swap", None)
    for r in picks["age"]:
        age = int(r["age"])
        far = [x for x in range(18, 67) if band(x) != band(age) and abs(x - age) >= 8 and (band(x) == 2) == (x >= 60)]
        new_age = rng.choice(far)
        new_rows.append([r["id"], "age", str(age)])
        filed[r["path"]] = ("age", new_age)

    # The data copy: train.csv as filed now, images shared.
    os.makedirs(os.path.join(a.out_data, "train"), exist_ok=True)
    for sub in ("train/images", "eval"):
        link = os.path.join(a.out_data, sub)
        if not os.path.exists(link):
            os.symlink(os.path.abspath(os.path.join(a.data, sub)), link)
    with open(os.path.join(a.out_data, "train", "train.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "gender", "race", "age", "path"])
        for r in train:
            g, age = r["gender"], r["age"]
            kind, v = filed.get(r["path"], (None, None))
            if kind == "gender":
                g = v
            if kind == "age":
                age = v
            w.writerow([r["id"], g, r["race"], age, r["path"]])
    with open(os.path.join(a.out_data, "train", "relabel.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "field", "true_value"])
        w.writerows([[r["id"], r["field"], r["true_value"]] for r in planted] + new_rows)

    # The run copy: the out-of-fold labels filed the same way.
    os.makedirs(a.out_run, exist_ok=True)
    for name in os.listdir(a.run):
        src, dst = os.path.join(os.path.abspath(a.run), name), os.path.join(a.out_run, name)
        if name.startswith("fold-"):
            if not os.path.exists(dst):
                os.makedirs(dst)
                for f in os.listdir(src):
                    os.symlink(os.path.join(src, f), os.path.join(dst, f))
        elif name in ("config.toml", "folds.json", "cv.json"):
            shutil.copy(src, dst)
    with open(os.path.join(a.run, "oof_predictions.csv"), newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    for r in body:
        kind, v = filed.get(r[1], (None, None))
        c = int(r[3])
        mask, gender, age_band = c // 6, (c // 3) % 2, c % 3
        if kind == "gender":
            gender = 1 - gender
        elif kind == "swap" and mask in (1, 2):
            mask = 3 - mask
        elif kind == "age":
            age_band = band(v)
        r[3] = str(mask * 6 + gender * 3 + age_band)
    with open(os.path.join(a.out_run, "oof_predictions.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(body)
    print(f"planted {len(new_rows)} more ({a.gender} gender, {a.swap} swap, {a.age} age) on top of {len(planted)}: "
          f"{a.out_run}, {a.out_data}")


if __name__ == "__main__":
    main()
