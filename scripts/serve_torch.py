#!/usr/bin/env python3
"""What a PyTorch user writes instead of `masklab serve`: a FastAPI + uvicorn app running the same
torchvision model, one forward pass per request. The peer `scripts/bench_serve.sh` measures
`masklab serve` against (as `bench_torch.py` stands in for PyTorch training).

The weights are masklab's own export (`masklab export RUN --out model.safetensors`, a `single`
layout run: 18 classes), loaded strictly into `torchvision.models.<arch>(num_classes=18)`. The
input pipeline is masklab's: EXIF orientation, RGB, a centre crop of `--crop` of the shorter
side, a bilinear antialiased resize to `--size`, the competition's mean and std.

POST /v1/predict with an image as the raw body -> {"label", "class", "probabilities"}.
The blocking work runs in FastAPI's thread pool so requests overlap as far as PyTorch lets them.

usage: serve_torch.py --weights model.safetensors --arch resnet18 --size 64 [--port 8090] [--threads 1]
(pip packages: scripts/setup.sh --bench)
"""
import argparse
import io

import torch
import torchvision
import torchvision.transforms.functional as F
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from PIL import Image, ImageOps
from safetensors.torch import load_file

MEAN = [0.548, 0.504, 0.479]
STD = [0.237, 0.247, 0.246]
MASKS, GENDERS, AGES = ["Wear", "Incorrect", "NotWear"], ["Male", "Female"], ["<30", "30-59", ">=60"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--crop", type=float, default=0.9896, help="centre crop, a fraction of the shorter side")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8090)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: PyTorch's default)")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    model = getattr(torchvision.models, a.arch)(num_classes=18)
    model.load_state_dict(load_file(a.weights))
    model.eval()

    def classify(data: bytes) -> dict:
        try:
            img = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
        except Exception as e:
            raise HTTPException(status_code=422, detail=f"cannot decode image: {e}")
        side = round(min(img.size) * a.crop)
        x = F.center_crop(F.pil_to_tensor(img), [side, side])
        x = F.resize(x, [a.size, a.size], antialias=True).float().div(255)
        x = F.normalize(x, MEAN, STD).unsqueeze(0)
        with torch.inference_mode():
            probs = model(x).softmax(1)[0]
        c = int(probs.argmax())
        return {"label": f"{MASKS[c // 6]}/{GENDERS[(c // 3) % 2]}/{AGES[c % 3]}", "class": c, "probabilities": probs.tolist()}

    app = FastAPI()

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.post("/v1/predict")
    async def predict(request: Request):
        data = await request.body()
        return await run_in_threadpool(classify, data)

    uvicorn.run(app, host=a.host, port=a.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
