#!/usr/bin/env python3
"""Measures FaceRes's face features as a second opinion on gender and age beside a trained run.

Gender and age heads (softmax regression with L2 chosen on the run's validation rows, or with
--heads neighbours the votes of the k most similar training faces, k chosen alike) are built on
FaceRes's pooled features (`masklab face-attributes DATA --largest-face --features`) of
the training photos of the people the run trained on (its validation people left out); their
log-probabilities are added to the run's 18-way log-probabilities with one weight per task,
chosen on the run's validation rows; then, as `predict` would, decision biases are fitted by
`masklab tune` on the fused validation rows (in a scratch copy of the run) and applied when its
cross-fitted F1 rises. Photos where no face was found keep the run's own probabilities.

With --pool-people, before the biases, each photo's gender and age log-marginals move towards the
weighted mean of those of the photos whose faces look alike (cosine of the standardised features
>= t; a photo weighs 1 + b * P(no mask)), by a share per task; t, b and the shares are chosen on
the validation rows, which are grouped by their faces as the eval photos are, never by their
known people. It also reports the cosine between a validation person's own photos and between
different people's, and the validation F1 of grouping by the known people (an upper bound).

This is a measurement, not a product path: it reads the CSV files the CLI writes and writes a
submission (ImageID,ans) to score with ../shared/bench/score.py; with --key it prints the scores
and the paired difference from --against (a bootstrap over eval photos).

usage: face_probe_fusion.py RUN DATA TRAIN_FEATURES.csv EVAL_FEATURES.csv EVAL_PROBS.csv --out SUB.csv [--heads neighbours] [--pool-people]
         [--masklab target/release/masklab] [--key ANSWERS.csv --against SUB.csv]
  EVAL_PROBS.csv: `masklab predict RUN DATA/eval --no-tune --probs EVAL_PROBS.csv --out ...`.
Needs numpy and torch (the project's .venv after `scripts/setup.sh --bench`).
"""
import argparse, csv, itertools, json, os, shutil, subprocess, sys, tempfile
import numpy as np
import torch

csv.field_size_limit(1 << 30)
CLASSES = np.arange(18)
MASK, GENDER, AGE = CLASSES // 6, (CLASSES // 3) % 2, CLASSES % 3
MIN_PROB = 1e-7  # as labels.rs
L2_GRID = [1e-3, 1e-2, 3e-2, 1e-1]
K_GRID = [10, 25, 50, 100]  # neighbours tried (--heads neighbours), as face_heads/fit.rs
SHARPNESS = 10.0  # a neighbour's vote weighs exp(SHARPNESS * cosine), as face_heads/mod.rs
WEIGHT_GRID = [0, 0.5, 1, 1.5, 2, 3, 4, 6]


def macro_f1(t, p, n=18):
    scores = []
    for c in range(n):
        tp = np.sum((t == c) & (p == c)); fp = np.sum((t != c) & (p == c)); fn = np.sum((t == c) & (p != c))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def last_two(path):
    return "/".join(path.replace("\\", "/").split("/")[-2:])


def read_features(path):
    """Largest face's pooled features per photo, keyed by its last two path components."""
    out = {}
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows)
        if "f0" not in header:
            sys.exit(f"{path}: no f0..f1023 columns: write it with `masklab face-attributes --features`")
        first = header.index("f0")
        for line, row in enumerate(rows, start=2):
            if row[1] == "0":
                try:
                    out[last_two(row[0])] = np.array(row[first:], np.float32)
                except ValueError as e:
                    sys.exit(f"{path}:{line}: {e}")
    return out


def training_labels(data, bounds=(30, 60)):
    """Class of every training photo by person folder and file stem, relabel list applied."""
    people = {}
    with open(os.path.join(data, "train", "train.csv"), newline="") as f:
        for r in csv.DictReader(f):
            people[r["path"]] = {"id": r["id"], "gender": r["gender"], "age": int(r["age"]), "swap": False, "mask": {}}
    relabel = os.path.join(data, "train", "relabel.csv")
    if os.path.exists(relabel):
        with open(relabel, newline="") as f:
            for line, r in enumerate(csv.DictReader(f), start=2):
                hits = [p for k, p in people.items() if r["id"] in (p["id"], k)]
                if len(hits) != 1:
                    sys.exit(f"{relabel}:{line}: id {r['id']} names {len(hits)} people")
                p = hits[0]
                if r["field"] == "gender":
                    p["gender"] = r["true_value"]
                elif r["field"] == "age":
                    p["age"] = int(r["true_value"])
                elif r["field"] == "swap":
                    p["swap"] = True
                elif r["field"] == "mask":
                    stem, state = r["true_value"].split("=")
                    p["mask"][stem] = {"wear": 0, "incorrect": 1, "normal": 2}[state]
                else:
                    sys.exit(f"{relabel}:{line}: unknown field {r['field']}")

    def label(key):
        folder, file = key.split("/")
        p = people.get(folder)
        if p is None:
            return None
        stem = file.rsplit(".", 1)[0]
        if p["swap"] and stem in ("normal", "incorrect_mask"):
            stem = "incorrect_mask" if stem == "normal" else "normal"
        mask = p["mask"].get(stem, 2 if stem == "normal" else 1 if stem == "incorrect_mask" else 0)
        age = 0 if p["age"] < bounds[0] else 1 if p["age"] < bounds[1] else 2
        return mask * 6 + (0 if p["gender"] == "male" else 1) * 3 + age

    return label


class Neighbours:
    """Votes of the k most similar training faces (cosine of the standardised features)."""

    def __init__(self, x, y, n, k, mean, std):
        self.mean, self.std, self.k, self.n = mean, std, k, n
        z = torch.nn.functional.normalize((torch.from_numpy(x) - mean) / std, dim=1)
        self.bank = z.half().float()  # as the heads file stores it
        self.y = torch.from_numpy(y)

    def probs(self, x):
        with torch.no_grad():
            z = torch.nn.functional.normalize((torch.from_numpy(x) - self.mean) / self.std, dim=1)
            top, idx = (z @ self.bank.T).topk(self.k, dim=1)
            votes = torch.zeros(len(z), self.n, dtype=torch.float32).scatter_add_(1, self.y[idx], torch.exp(top * SHARPNESS)) + 1e-3
            return (votes / votes.sum(1, keepdim=True)).numpy()


class Probe:
    """Softmax regression on standardised features."""

    def __init__(self, x, y, n, l2, mean, std):
        self.mean, self.std = mean, std
        x = (torch.from_numpy(x) - mean) / std
        y = torch.from_numpy(y)
        self.w = torch.zeros(x.shape[1], n, requires_grad=True)
        self.b = torch.zeros(n, requires_grad=True)
        opt = torch.optim.LBFGS([self.w, self.b], max_iter=300, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(x @ self.w + self.b, y) + l2 * (self.w ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)

    def probs(self, x):
        with torch.no_grad():
            return torch.softmax(((torch.from_numpy(x) - self.mean) / self.std) @ self.w + self.b, 1).numpy()


def fuse(p, has, gender, age, wg, wa):
    return np.log(np.maximum(p, MIN_PROB)) + has[:, None] * (
        wg * np.log(np.maximum(gender[:, GENDER], MIN_PROB)) + wa * np.log(np.maximum(age[:, AGE], MIN_PROB)))


POOL_THRESHOLDS = [0.5, 0.6, 0.7, 0.8]  # --pool-people: look-alike cosines tried
POOL_BARE_WEIGHTS = [0, 2, 6]  # a bare face's extra say in its group's mean
POOL_SHARES = [0, 0.25, 0.5, 0.75, 1, 2]  # how far a task moves to its group's mean


def pool_people(logits, has, same, bare_weight, share_gender, share_age):
    """Each photo's gender and age log-marginals moved by the shares towards its group's weighted
    mean (`same`: which photos are one person's; a photo alone or without a face is unchanged)."""
    q = softmax(logits)
    gender = np.log(np.maximum(np.stack([q[:, GENDER == g].sum(1) for g in range(2)], 1), MIN_PROB))
    age = np.log(np.maximum(np.stack([q[:, AGE == g].sum(1) for g in range(3)], 1), MIN_PROB))
    say = 1 + bare_weight * q[:, MASK == 2].sum(1)
    group = (same & ((has[:, None] * has[None, :]) > 0)) | np.eye(len(q), dtype=bool)
    w = group * say[None, :]
    w = w / w.sum(1, keepdims=True)
    return logits + share_gender * (w @ gender - gender)[:, GENDER] + share_age * (w @ age - age)[:, AGE]


def softmax(logits):
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run"); ap.add_argument("data"); ap.add_argument("train_features"); ap.add_argument("eval_features"); ap.add_argument("eval_probs")
    ap.add_argument("--out", required=True)
    ap.add_argument("--masklab", default="target/release/masklab")
    ap.add_argument("--key"); ap.add_argument("--against")
    ap.add_argument("--heads", choices=["linear", "neighbours"], default="linear", help="softmax regression, or the votes of the k nearest training faces (tune's default)")
    ap.add_argument("--pool-people", action="store_true", help="share gender and age among look-alike faces (see above)")
    a = ap.parse_args()

    val = list(csv.DictReader(open(os.path.join(a.run, "val_predictions.csv"), newline="")))
    val_people = {r["person"] for r in val}
    label = training_labels(a.data)
    features = read_features(a.train_features)
    train_x, train_y = [], []
    for key, x in features.items():
        if key.split("/")[0] not in val_people and (y := label(key)) is not None:
            train_x.append(x); train_y.append(y)
    train_x, train_y = np.stack(train_x), np.array(train_y)
    mean, std = torch.from_numpy(train_x.mean(0)), torch.from_numpy(train_x.std(0) + 1e-6)

    val_p = np.array([[float(r[f"p{c}"]) for c in range(18)] for r in val])
    val_t = np.array([int(r["true"]) for r in val])
    val_keys = [last_two(r["path"]) for r in val]
    val_has = np.array([k in features for k in val_keys], float)
    val_x = np.stack([features.get(k, np.zeros(1024, np.float32)) for k in val_keys])
    seen = val_has > 0
    report = {"probe_photos": len(train_y), "val_photos": len(val), "val_with_face": int(seen.sum())}
    probes = {}
    for task, n, of in [("gender", 2, GENDER), ("age", 3, AGE)]:
        best = None
        # The L2 penalty or the number of neighbours, chosen by validation F1.
        for setting in (L2_GRID if a.heads == "linear" else K_GRID):
            if a.heads == "linear":
                probe = Probe(train_x, of[train_y], n, setting, mean, std)
            else:
                probe = Neighbours(train_x, of[train_y], n, min(setting, len(train_y)), mean, std)
            f1 = macro_f1(of[val_t[seen]], probe.probs(val_x[seen]).argmax(1), n)
            if best is None or f1 > best[0]:
                best = (f1, setting, probe)
        probes[task] = best[2]
        report[f"{task}_{'l2' if a.heads == 'linear' else 'k'}"], report[f"{task}_val_f1_probe"] = best[1], round(best[0], 4)
    val_g, val_a = probes["gender"].probs(val_x), probes["age"].probs(val_x)
    scores = {(wg, wa): macro_f1(val_t, fuse(val_p, val_has, val_g, val_a, wg, wa).argmax(1)) for wg, wa in itertools.product(WEIGHT_GRID, WEIGHT_GRID)}
    weights = max(scores, key=scores.get)
    report.update(weights=weights, val_f1_run=round(scores[(0, 0)], 4), val_f1_fused=round(scores[weights], 4))

    # Decision biases on the fused validation rows, by masklab tune, in a scratch copy of the run.
    val_logits = fuse(val_p, val_has, val_g, val_a, *weights)
    unit = lambda x: torch.nn.functional.normalize((torch.from_numpy(x) - mean) / std, dim=1).numpy()
    pooling = None
    if a.pool_people:
        val_z = unit(val_x)
        sims = val_z @ val_z.T
        person = np.array([r["person"] for r in val])
        known = person[:, None] == person[None, :]
        both = (val_has[:, None] * val_has[None, :]) > 0
        report.update(cosine_same_person_p1_p5_p50=[round(float(np.percentile(sims[known & both & ~np.eye(len(val), dtype=bool)], q)), 3) for q in (1, 5, 50)],
                      cosine_other_people_p50_p99_p999=[round(float(np.percentile(sims[~known & both], q)), 3) for q in (50, 99, 99.9)])
        scored = {(t, b, g, s_): macro_f1(val_t, pool_people(val_logits, val_has, sims >= t, b, g, s_).argmax(1))
                  for t, b, g, s_ in itertools.product(POOL_THRESHOLDS, POOL_BARE_WEIGHTS, POOL_SHARES, POOL_SHARES)}
        pooling = max(scored, key=scored.get)
        known_best = max(macro_f1(val_t, pool_people(val_logits, val_has, known, b, g, s_).argmax(1))
                         for b, g, s_ in itertools.product(POOL_BARE_WEIGHTS, POOL_SHARES, POOL_SHARES))
        report.update(pooling=pooling, val_f1_pooled=round(scored[pooling], 4), val_f1_pooled_by_known_people=round(known_best, 4))
        val_logits = pool_people(val_logits, val_has, sims >= pooling[0], *pooling[1:])
    fused_val = softmax(val_logits)
    with tempfile.TemporaryDirectory() as scratch:
        run = os.path.join(scratch, "run")
        os.makedirs(run)
        for name in ("config.toml", "best.safetensors", "best.json", "metrics.jsonl"):
            if os.path.exists(os.path.join(a.run, name)):
                shutil.copy(os.path.join(a.run, name), run)
        with open(os.path.join(run, "val_predictions.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "person", "fold", "true", "pred", "confidence"] + [f"p{c}" for c in range(18)])
            for r, p in zip(val, fused_val):
                w.writerow([r["path"], r["person"], r["fold"], r["true"], int(p.argmax()), float(p.max())] + [float(v) for v in p])
        subprocess.run([a.masklab, "tune", run, "--by", "class"], check=True, stdout=subprocess.DEVNULL)
        tune = json.load(open(os.path.join(run, "tune.json")))
    biases = np.array(tune["biases"]["values"]) if tune["applied"] else np.zeros(18)
    report.update(biases_applied=tune["applied"], held_out_f1=[round(tune["held_out_before"]["f1"], 4), round(tune["held_out_after"]["f1"], 4)])

    eval_rows = list(csv.DictReader(open(a.eval_probs, newline="")))
    ids = [r["ImageID"] for r in eval_rows]
    eval_p = np.array([[float(r[f"p{c}"]) for c in range(18)] for r in eval_rows])
    eval_features = read_features(a.eval_features)
    eval_keys = [last_two("images/" + i) for i in ids]
    eval_has = np.array([k in eval_features for k in eval_keys], float)
    eval_x = np.stack([eval_features.get(k, np.zeros(1024, np.float32)) for k in eval_keys])
    eval_g, eval_a = probes["gender"].probs(eval_x), probes["age"].probs(eval_x)
    logits = fuse(eval_p, eval_has, eval_g, eval_a, *weights)
    if pooling is not None:
        eval_z = unit(eval_x)
        logits = pool_people(logits, eval_has, eval_z @ eval_z.T >= pooling[0], *pooling[1:])
    answers = (np.log(np.maximum(softmax(logits), MIN_PROB)) + biases).argmax(1)
    with open(a.out, "w", newline="") as f:
        f.write("ImageID,ans\n" + "".join(f"{i},{c}\n" for i, c in zip(ids, answers)))
    report.update(eval_photos=len(ids), eval_with_face=int(eval_has.sum()))

    if a.key:
        key = {r["ImageID"]: int(r["ans"]) for r in csv.DictReader(open(a.key, newline=""))}
        truth = np.array([key[i] for i in ids])
        report.update(f1=round(macro_f1(truth, answers), 4), f1_gender=round(macro_f1(GENDER[truth], GENDER[answers], 2), 4),
                      f1_age=round(macro_f1(AGE[truth], AGE[answers], 3), 4))
        # The linear heads alone, and the run alone, on the eval photos where a face was found.
        found = eval_has > 0
        report.update(heads_alone_with_face=[round(macro_f1(GENDER[truth[found]], eval_g[found].argmax(1), 2), 4), round(macro_f1(AGE[truth[found]], eval_a[found].argmax(1), 3), 4)],
                      run_alone_with_face=[round(macro_f1(GENDER[truth[found]], GENDER[eval_p[found].argmax(1)], 2), 4), round(macro_f1(AGE[truth[found]], AGE[eval_p[found].argmax(1)], 3), 4)])
        if a.against:
            other = {r["ImageID"]: int(r["ans"]) for r in csv.DictReader(open(a.against, newline=""))}
            base = np.array([other[i] for i in ids])
            rng = np.random.default_rng(0)
            diffs = []
            for _ in range(1000):
                s = rng.integers(0, len(truth), len(truth))
                diffs.append(macro_f1(truth[s], answers[s]) - macro_f1(truth[s], base[s]))
            report.update(against=round(macro_f1(truth, base), 4), difference=round(macro_f1(truth, answers) - macro_f1(truth, base), 4),
                          ci95=[round(float(np.percentile(diffs, 2.5)), 4), round(float(np.percentile(diffs, 97.5)), 4)])
    print(json.dumps(report))


if __name__ == "__main__":
    main()
