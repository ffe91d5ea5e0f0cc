#!/usr/bin/env python3
"""A framing-shift test set: UTKFace faces that make_maskset.py did NOT use for a given stand-in,
framed two ways, in the eval layout `masklab eval RUN DATA --split eval` reads.

  OUT/tight/eval/{images/,info.csv,answers.csv}   the aligned face crop as it is (200x200)
  OUT/small/eval/{images/,info.csv,answers.csv}   the same face, small, somewhere in a larger photo

Each face gets a mask state drawn evenly (worn, incorrect, none) and masks painted with the
generator's own draw_mask, so the labels are known (class = mask*6 + gender*3 + age band);
`--masks none` leaves every face bare (gender and age on real, unmasked faces).
Deterministic for a seed. Nothing here is committed data: it writes under OUT only.

Usage: python3 scripts/make_framing_shift.py PATH/make_maskset.py OUT
         --train-people N --eval-people M --seed S   (the stand-in's own arguments: its faces are left out)
         [--people 80] [--size 384x512] [--face 0.22,0.4] [--masks even|none]
"""
import argparse, csv, hashlib, importlib.util, os, random
from PIL import Image, ImageFilter


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("generator")
    ap.add_argument("out")
    ap.add_argument("--train-people", type=int, default=2000)
    ap.add_argument("--eval-people", type=int, default=600)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--people", type=int, default=80)
    ap.add_argument("--size", default="384x512")
    ap.add_argument("--face", default="0.22,0.4", help="face side as a share of the photo's width (range)")
    ap.add_argument("--masks", choices=["even", "none"], default="even",
                    help="even: worn, incorrect and none in equal shares; none: every face bare")
    a = ap.parse_args()
    spec = importlib.util.spec_from_file_location("make_maskset", a.generator)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)

    # The generator's own draw of people, to leave its faces out.
    rng = random.Random(a.seed)
    people = gen.load_people(rng)
    train, evals = gen.sample(people, a.train_people, a.eval_people)
    used = {p["file"] for p in train + evals}
    unused = sorted((p for p in people if p["file"] not in used), key=lambda p: p["file"])
    pick = random.Random(f"{a.seed}/framing")
    pick.shuffle(unused)
    chosen = unused[: a.people]
    if len(chosen) < a.people:
        raise SystemExit(f"only {len(chosen)} unused faces")
    W, H = (int(v) for v in a.size.lower().split("x"))
    lo, hi = (float(v) for v in a.face.split(","))

    rows = {"tight": [], "small": []}
    for kind in rows:
        os.makedirs(os.path.join(a.out, kind, "eval", "images"), exist_ok=True)
    for i, p in enumerate(chosen):
        r = random.Random(f"{a.seed}/framing/{p['file']}")
        face = Image.open(os.path.join(gen.FACES, p["file"])).convert("RGB")
        state = i % 3 if a.masks == "even" else 2  # 0 worn, 1 incorrect, 2 none
        if state == 0:
            face = gen.draw_mask(face, r, 0.47 + r.uniform(-0.03, 0.02), r.choice(["surgical", "cloth", "kn95", "pattern"]))
        elif state == 1:
            face = gen.draw_mask(face, r, r.choice([0.64, 0.67, 0.80]) + r.uniform(-0.02, 0.02), r.choice(["surgical", "cloth", "kn95"]))
        cls = state * 6 + p["gender"] * 3 + gen.age_band(p["age"])
        name = hashlib.sha1(f"{a.seed}/{p['file']}".encode()).hexdigest() + ".jpg"
        face.save(os.path.join(a.out, "tight", "eval", "images", name), quality=92)
        rows["tight"].append((name, cls))
        # Small in a larger photo: a blurred, darkened backdrop of another face, the face placed anywhere.
        back_src = Image.open(os.path.join(gen.FACES, unused[(i + a.people) % len(unused)]["file"])).convert("RGB")
        back = back_src.resize((W, H)).filter(ImageFilter.GaussianBlur(W / 10)).point(lambda v: int(v * r.uniform(0.5, 0.9)))
        side = int(W * r.uniform(lo, hi))
        f = face.resize((side, side), Image.BICUBIC)
        back.paste(f, (r.randint(0, W - side), r.randint(0, H - side)))
        back.save(os.path.join(a.out, "small", "eval", "images", name), quality=92)
        rows["small"].append((name, cls))
    for kind, rs in rows.items():
        for fname, value in (("info.csv", lambda c: 0), ("answers.csv", lambda c: c)):
            with open(os.path.join(a.out, kind, "eval", fname), "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["ImageID", "ans"])
                w.writerows((n, value(c)) for n, c in rs)
    masks = "masks worn, incorrect and none in equal shares" if a.masks == "even" else "no masks"
    print(f"{len(chosen)} faces not used by the stand-in (seed {a.seed}), {masks}, framed tight and small -> {a.out}")


if __name__ == "__main__":
    main()
