#!/usr/bin/env python3
"""PyTorch's side of `masklab bench`: the same measurement (synthetic input, 5 warm-up steps,
median of 20) printed as the same JSON line, so the two can be set side by side.

Train step: forward, cross entropy, backward, AdamW step under GradScaler. `--optimizer`:
  fused    AdamW(fused=True): one kernel for all parameters and GradScaler's inf check on the
           device with no host sync; what a PyTorch user who cares about speed writes.
  foreach  PyTorch's default AdamW (foreach): with GradScaler every step waits on a host sync
           (found_inf.item()) before the optimiser runs from Python.
`--compile`: the model through torch.compile (default mode), on top of either optimiser.
Usage: bench_torch.py train|infer --backbone B --size S --batch N [--device cuda] [--amp]
       [--channels-last] [--optimizer fused|foreach] [--compile]
"""
import argparse, json, time
import torch, torchvision


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["train", "infer"])
    ap.add_argument("--backbone", default="efficientnet_b0")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--optimizer", choices=["fused", "foreach"], help="default: fused on CUDA, foreach on CPU")
    ap.add_argument("--compile", action="store_true")
    a = ap.parse_args()
    dev = torch.device(a.device)
    a.optimizer = a.optimizer or ("fused" if dev.type == "cuda" else "foreach")
    torch.backends.cudnn.benchmark = True
    amp = a.amp and dev.type == "cuda"
    fmt = torch.channels_last if a.channels_last and dev.type == "cuda" else torch.contiguous_format
    model = getattr(torchvision.models, a.backbone)(num_classes=18).to(dev).to(memory_format=fmt)
    step_model = torch.compile(model) if a.compile else model
    x = torch.randn(a.batch, 3, a.size, a.size, device=dev).to(memory_format=fmt)
    y = torch.randint(0, 18, (a.batch,), device=dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, **({"fused": True} if a.optimizer == "fused" else {"foreach": True}))
    scaler = torch.amp.GradScaler(enabled=amp)
    model.train(a.mode == "train")
    times = []
    for i in range(a.warmup + a.steps):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        if a.mode == "train":
            with torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
                out = step_model(x)
            loss = torch.nn.functional.cross_entropy(out.float(), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            with torch.no_grad(), torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
                step_model(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= a.warmup:
            times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    median = times[len(times) // 2]
    variant = (a.optimizer if a.mode == "train" else "eager") + ("+compile" if a.compile else "")
    print(json.dumps(dict(impl="pytorch", variant=variant, mode=a.mode, backbone=a.backbone, size=a.size, batch=a.batch,
                          device=dev.type, amp=amp, channels_last=fmt == torch.channels_last,
                          torch=torch.__version__, gpu=torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
                          step_ms=round(median, 3), images_per_s=round(a.batch / median * 1e3, 1))))


if __name__ == "__main__":
    main()
