#!/usr/bin/env python3
"""facenet-pytorch's own MTCNN on photos, for masklab's parity test (tests/faces_parity.rs).

Usage: mtcnn_parity.py FACENET_DIR IMAGE...
FACENET_DIR holds the unpacked facenet-pytorch wheel (its `facenet_pytorch/` folder); the wheel
pins an old torch, so it is never installed: its MTCNN module is imported from there, next to
the .venv's torch and torchvision. The package's __init__ is skipped (it imports the face
recogniser and its download helpers, which need packages MTCNN does not).
Prints one JSON line per image: {"image", "boxes": [[x1, y1, x2, y2, score]], "landmarks": [[[x, y] x5]]}
with facenet-pytorch's defaults (min_face_size 20, thresholds 0.6/0.7/0.7, factor 0.709), every face.
"""
import json
import os
import sys
import types


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    root = os.path.join(sys.argv[1], "facenet_pytorch")
    if not os.path.isdir(root):
        sys.exit(f"{root} not found: run scripts/setup.sh --test")
    package = types.ModuleType("facenet_pytorch")
    package.__path__ = [root]
    sys.modules["facenet_pytorch"] = package
    import numpy as np
    from PIL import Image
    from facenet_pytorch.models.mtcnn import MTCNN

    mtcnn = MTCNN(keep_all=True, device="cpu")
    for path in sys.argv[2:]:
        img = Image.open(path).convert("RGB")
        boxes, probs, points = mtcnn.detect(img, landmarks=True)
        out = {"image": path, "boxes": [], "landmarks": []}
        if boxes is not None:
            for b, p, pts in zip(boxes, probs, points):
                out["boxes"].append([float(v) for v in b] + [float(p)])
                out["landmarks"].append(np.asarray(pts, dtype=float).tolist())
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
