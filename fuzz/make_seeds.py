"""Writes the fuzz targets' seed corpora: small valid inputs made by the programs that make them
in real life (torch.save, safetensors, Pillow, the csv module), so the fuzzer starts from the
formats' real shapes. Usage: make_seeds.py OUT_DIR (one folder per target). Needs .venv with
torch, safetensors and Pillow (scripts/setup.sh --test)."""
import collections
import csv
import io
import json
import os
import pickle
import struct
import sys

import torch
from PIL import Image
from safetensors.torch import save as safetensors_save

out = sys.argv[1]


def put(target, name, data):
    os.makedirs(os.path.join(out, target), exist_ok=True)
    with open(os.path.join(out, target, name), "wb") as f:
        f.write(data)


def csv_bytes(rows):
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode()


# Dataset CSVs: ordinary rows, suffixed and duplicated ids, quoting, a bad row (train.csv's
# first byte chooses --skip-bad).
train = [["id", "gender", "race", "age", "path"],
         ["000001", "female", "Asian", "45", "000001_female_Asian_45"],
         ["001498-1", "male", "Asian", "23", "001498-1_male_Asian_23"],
         ["000008", "male", "Asian", "60", "000008_male_Asian_60"],
         ["000008", "female", "Asian", "19", "000008_female_Asian_19"],
         ['a,"b"\nc', "male", "x", "30", 'odd, "folder"'],
         ["000009", "female", "Asian", "forty", "000009_female_Asian_40"]]
put("train_csv", "strict", b"\x00" + csv_bytes(train[:5]))
put("train_csv", "skip_bad", b"\x01" + csv_bytes(train))
put("train_csv", "repeated", b"\x00" + csv_bytes(train[:3] + [train[1]]))
put("relabel_csv", "fields", csv_bytes([["id", "field", "true_value"], ["000001", "gender", "male"], ["000002", "age", "61"],
                                         ["000003", "swap", "normal<->incorrect_mask"], ["000004", "mask", "mask3=incorrect"],
                                         ["000008_male_Asian_60", "age", "70"], ['a,"b"', "age", "1"]]))
put("info_csv", "info", csv_bytes([["ImageID", "ans"], ["cbc5c6e168e63498590db46022617123f1fe1268.jpg", "0"], ["a,b.jpg", "0"]]))

# faces.csv: a photo with two faces (one reaching past the edge, as MTCNN's boxes do), one
# without, and a file from before min_face existed.
landmarks = ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]
face_cols = ["face", "score", "x1", "y1", "x2", "y2"] + [f"{n}_{a}" for n in landmarks for a in "xy"]
head = ["image", "bytes", "modified_ns", "width", "height"]
marks = ["40.0", "50.0", "60.0", "50.0", "50.0", "62.0", "42.0", "75.0", "58.0", "75.0"]
put("faces_csv", "faces", csv_bytes([head + ["min_face"] + face_cols,
                                     ["a/mask1.jpg", "1234", "1700000000000000000", "384", "512", "20", "0", "0.99", "20.5", "30", "90", "110"] + marks,
                                     ["a/mask1.jpg", "1234", "1700000000000000000", "384", "512", "20", "1", "0.7", "-10", "400", "60", "560"] + marks,
                                     ["b/normal.png", "99", "1", "43", "64", "20"] + [""] * len(face_cols)]))
put("faces_csv", "old", csv_bytes([head + face_cols, ["c.jpg", "5", "6", "100", "100", "0", "0.9", "10", "10", "50", "60"] + marks]))

# Held-out predictions (val_predictions.csv, oof_predictions.csv).
probs = [f"{1 / 18:.6f}"] * 18
top = ["0.01"] * 18
top[7] = "0.83"
put("predictions_csv", "oof", csv_bytes([["path", "person", "fold", "true", "pred", "confidence"] + [f"p{c}" for c in range(18)],
                                         ["train/images/000001_male_Asian_45/mask1.jpg", "000001_male_Asian_45", "2", "7", "7", "0.83"] + top,
                                         ['odd, "path".png', "p,q", "0", "3", "0", "0.055556"] + probs]))

# Images: baseline and progressive JPEG, grey and CMYK JPEG, EXIF orientations, PNG colour types.
img = Image.new("RGB", (24, 16))
img.putdata([((x * 10) % 256, (y * 16) % 256, (x * y) % 256) for y in range(16) for x in range(24)])


def save(image, fmt, **kw):
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


put("image_decode", "baseline.jpg", save(img, "JPEG", quality=90))
put("image_decode", "progressive.jpg", save(img, "JPEG", quality=80, progressive=True))
put("image_decode", "gray.jpg", save(img.convert("L"), "JPEG"))
put("image_decode", "cmyk.jpg", save(img.convert("CMYK"), "JPEG"))
put("image_decode", "subsampled.jpg", save(img, "JPEG", subsampling=2))
for orientation in (3, 6, 8):
    exif = Image.Exif()
    exif[0x0112] = orientation
    put("image_decode", f"orientation{orientation}.jpg", save(img, "JPEG", exif=exif.tobytes()))
put("image_decode", "rgb.png", save(img, "PNG"))
put("image_decode", "rgba.png", save(img.convert("RGBA"), "PNG"))
put("image_decode", "palette.png", save(img.convert("P"), "PNG"))
put("image_decode", "gray16.png", save(img.convert("I;16"), "PNG"))
put("image_decode", "interlaced.png", save(img, "PNG", optimize=False))

# Pickles: plain data at every protocol, and what torch.save writes.
state = collections.OrderedDict(w=torch.arange(6, dtype=torch.float32).view(2, 3), b=torch.tensor([1, 2], dtype=torch.int64))
for protocol in (2, 3, 4, 5):
    put("pickle", f"data_p{protocol}", pickle.dumps({"a": [1, -2, 2**40, 1.5, None, True], "b": (b"x", "y"), "c": {1, 2}}, protocol=protocol))
buf = io.BytesIO()
torch.save({"epoch": 3, "state_dict": state}, buf)
zip_bytes = buf.getvalue()
import zipfile  # noqa: E402

with zipfile.ZipFile(io.BytesIO(zip_bytes)) as z:
    pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
    put("pickle", "torch_data.pkl", z.read(pkl))

# torch.save files, zip and legacy; a Parameter; a view into a larger storage.
put("torch_checkpoint", "nested.pt", zip_bytes)
buf = io.BytesIO()
torch.save(state, buf, _use_new_zipfile_serialization=False)
put("torch_checkpoint", "legacy.pth", buf.getvalue())
buf = io.BytesIO()
base = torch.arange(12, dtype=torch.float16)
torch.save(collections.OrderedDict(p=torch.nn.Parameter(torch.ones(2, 2)), view=base[2:8].view(2, 3), t=base.view(3, 4).t()), buf)
put("torch_checkpoint", "views.pth", buf.getvalue())

put("safetensors", "state.safetensors", safetensors_save({k: v.contiguous() for k, v in state.items()}, metadata={"masklab": "{}"}))
put("safetensors", "dtypes.safetensors", safetensors_save({"h": torch.ones(3, dtype=torch.float16), "b": torch.tensor([True]), "e": torch.zeros(0, 4)}))


# TF.js: the fuzz input is a 4-byte little-endian JSON length, model.json, then the shard bytes
# (each group an equal share); float32, uint8-affine and float16-quantised weights across two shards.
def tfjs_seed(groups, blob):
    text = json.dumps({"format": "graph-model", "modelTopology": {"node": []}, "weightsManifest": groups}).encode()
    return struct.pack("<I", len(text)) + text + blob


put("tfjs", "mixed.bin", tfjs_seed(
    [{"paths": ["group1-shard1of2.bin", "group1-shard2of2.bin"], "weights": [
        {"name": "conv/kernel", "shape": [1, 1, 2, 2], "dtype": "float32"},
        {"name": "q8", "shape": [4], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
        {"name": "h", "shape": [2], "dtype": "float32", "quantization": {"dtype": "float16", "original_dtype": "float32"}},
        {"name": "axes", "shape": [2], "dtype": "int32"}]}],
    struct.pack("<4f", 1.0, -2.0, 0.5, 3.0) + bytes([0, 1, 2, 255]) + struct.pack("<2e", 1.5, -0.25) + struct.pack("<2i", 1, 2)))
put("tfjs", "two_groups.bin", tfjs_seed(
    [{"paths": ["a.bin"], "weights": [{"name": "b", "shape": [3], "dtype": "bool"}]},
     {"paths": ["b.bin"], "weights": [{"name": "q16", "shape": [2], "dtype": "int32", "quantization": {"dtype": "uint16", "scale": 0.25, "min": 0}}]}],
    bytes([1, 0, 1]) + struct.pack("<2H", 2, 5)))
