#!/usr/bin/env python3
"""The PyTorch reference pipeline at its best on a CPU: the baseline masklab's CPU speed is
compared with besides the reference as users run it (shared/bench/reference_train.py, fp32).

Same data, split, transforms and model as that reference (person-level split by gender x age
band, the team's centre crop of 380/384 of the shorter side, Resize, ColorJitter + flip for
training, Normalize, a torchvision backbone from scratch, AdamW, cross entropy, one 18-way
head), with what a PyTorch user who tunes for a CPU adds:
  - bf16 autocast (torch.autocast("cpu", dtype=torch.bfloat16)), on CPUs with native bf16;
  - channels-last weights and inputs;
  - JPEG decoding scaled in the DCT by PIL's draft(): the largest of 1/8, 1/4, 1/2 at which the
    centre crop keeps at least SIZE pixels a side (the rule masklab's decoder follows, so both
    resize the same amount of detail away);
  - as many DataLoader workers as there are cores (--workers to change), persistent.

Modes (each prints one JSON line per measurement, as scripts/bench_torch.py does):
  train    one or more training epochs over the training split, decode included (the first
           epoch is what a run without a warm cache pays); images/s per epoch.
  predict  (--predict) the eval set (DATA/eval/info.csv + images/) through a model in eval
           mode; images/s from the first batch requested to the last prediction.

Usage: reference_cpu_best.py DATA [--predict] [--model efficientnet_b0] [--size 96] [--batch 64]
        [--epochs 1] [--workers N] [--threads N] [--fp32] [--no-channels-last] [--no-draft]
        [--limit-people N] [--limit-images N] [--seed 42]
DATA holds train/train.csv, train/images/, eval/info.csv, eval/images/ (make_maskset.py's layout).
Needs torch, torchvision and pillow (scripts/setup.sh --bench).
"""
import argparse, csv, json, math, os, random, time
import torch, torchvision
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset

MEAN, STD = (0.548, 0.504, 0.479), (0.237, 0.247, 0.246)
MASK_OF_STEM = {"mask1": 0, "mask2": 0, "mask3": 0, "mask4": 0, "mask5": 0, "incorrect_mask": 1, "normal": 2}
CROP = 380 / 384


def age_band(age, old):
    return 0 if age < 30 else (1 if age < old else 2)


def read_people(data, age_old):
    """[(gender*3 + age band, [(path, class18), ...]) per person] from train.csv and the folders."""
    root = os.path.join(data, "train", "images")
    people = []
    with open(os.path.join(data, "train", "train.csv"), newline="") as f:
        for row in csv.DictReader(f):
            gender = 0 if row["gender"] == "male" else 1
            band = age_band(int(row["age"]), age_old)
            folder = os.path.join(root, row["path"])
            photos = []
            for name in sorted(os.listdir(folder)):
                stem = os.path.splitext(name)[0]
                if not name.startswith("._") and stem in MASK_OF_STEM:
                    photos.append((os.path.join(folder, name), MASK_OF_STEM[stem] * 6 + gender * 3 + band))
            people.append((gender * 3 + band, photos))
    return people


def person_split(people, val_ratio, seed):
    """Training photos: each (gender, age band) group's people, shuffled, less its validation share."""
    rng = random.Random(seed)
    groups = {}
    for person in people:
        groups.setdefault(person[0], []).append(person)
    train = []
    for key in sorted(groups):
        group = groups[key]
        rng.shuffle(group)
        held_out = max(1, round(len(group) * val_ratio))
        train += [photo for _, photos in group[held_out:] for photo in photos]
    return train


def draft_request(size):
    """The size to ask PIL's draft() for so that the centre crop keeps >= size pixels a side."""
    side = math.ceil(size / CROP)
    return (side, side)


class Photos(Dataset):
    def __init__(self, items, transform, size, draft):
        self.items, self.transform, self.size, self.draft = items, transform, size, draft

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, label = self.items[i]
        image = Image.open(path)
        if self.draft and image.format == "JPEG":
            image.draft("RGB", draft_request(self.size))
        return self.transform(image.convert("RGB")), label


def transform(size, train):
    square = T.Lambda(lambda im: T.functional.center_crop(im, int(min(im.size) * CROP)))
    ops = [square, T.Resize((size, size))]
    if train:
        ops += [T.ColorJitter(0.1, 0.1, 0.1, 0.1), T.RandomHorizontalFlip()]
    return T.Compose(ops + [T.ToTensor(), T.Normalize(MEAN, STD)])


def cpu_has_bf16():
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        pass
    return "avx512_bf16" in flags or "amx_bf16" in flags


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("--predict", action="store_true", help="time prediction of the eval set instead of training")
    ap.add_argument("--model", default="efficientnet_b0")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--batch", type=int, default=64, help="training batch; prediction uses twice this")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--no-draft", action="store_true", help="decode JPEGs at full size")
    ap.add_argument("--age-old", type=int, default=60)
    ap.add_argument("--limit-people", type=int, default=0)
    ap.add_argument("--limit-images", type=int, default=0, help="predict: the first N eval images only")
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    if a.threads:
        torch.set_num_threads(a.threads)
    bf16 = not a.fp32 and cpu_has_bf16()
    fmt = torch.contiguous_format if a.no_channels_last else torch.channels_last
    draft = not a.no_draft
    model = getattr(torchvision.models, a.model)(num_classes=18).to(memory_format=fmt)
    loader_args = dict(num_workers=a.workers, persistent_workers=a.workers > 0)
    settings = dict(impl="pytorch-cpu-best", model=a.model, size=a.size, bf16=bf16, channels_last=not a.no_channels_last,
                    draft=draft, workers=a.workers, threads=torch.get_num_threads(), torch=torch.__version__)

    if a.predict:
        eval_dir = os.path.join(a.data, "eval")
        with open(os.path.join(eval_dir, "info.csv"), newline="") as f:
            names = [row["ImageID"] for row in csv.DictReader(f)]
        if a.limit_images:
            names = names[:a.limit_images]
        items = [(os.path.join(eval_dir, "images", n), 0) for n in names]
        loader = DataLoader(Photos(items, transform(a.size, False), a.size, draft), a.batch * 2, **loader_args)
        model.eval()
        start, predictions = time.perf_counter(), []
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for x, _ in loader:
                predictions.append(model(x.to(memory_format=fmt)).float().argmax(1))
        seconds = time.perf_counter() - start
        n = sum(len(p) for p in predictions)
        print(json.dumps(dict(settings, mode="predict", batch=a.batch * 2, images=n, seconds=round(seconds, 2),
                              images_per_s=round(n / seconds, 1))), flush=True)
        return

    people = read_people(a.data, a.age_old)
    if a.limit_people:
        random.Random(a.seed).shuffle(people)
        people = people[:a.limit_people]
    train = person_split(people, 0.2, a.seed)
    loader = DataLoader(Photos(train, transform(a.size, True), a.size, draft), a.batch, shuffle=True, drop_last=True,
                        **loader_args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=a.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, a.epochs * len(loader))
    model.train()
    for epoch in range(1, a.epochs + 1):
        start, seen, losses = time.perf_counter(), 0, []
        for x, y in loader:
            x = x.to(memory_format=fmt)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.cross_entropy(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            seen += x.shape[0]
            losses.append(loss.item())
        seconds = time.perf_counter() - start
        print(json.dumps(dict(settings, mode="train", epoch=epoch, batch=a.batch, images=seen, seconds=round(seconds, 2),
                              images_per_s=round(seen / seconds, 1) if seen else 0.0,
                              loss=round(sum(losses) / max(len(losses), 1), 4))), flush=True)


if __name__ == "__main__":
    main()
