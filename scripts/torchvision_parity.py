"""The PyTorch side of masklab's weight parity test (tests/weights_parity.rs).

A worker: it reads commands on stdin, one per line, and answers one line on stdout, so that torch
is imported once for all backbones while only one model's files exist at a time.

  make ARCH NUM_CLASSES FORMAT DIR   build torchvision.models.ARCH(num_classes) with random
                                     BatchNorm statistics, save its state dict to DIR/ARCH.pth
                                     (FORMAT zip or legacy) and {input, output} of a fixed input
                                     in eval mode to DIR/ARCH.io.pth; answers "ok"
  check ARCH NUM_CLASSES FILE IO     (torchvision backbones) load FILE (safetensors, torchvision names) into
                                     torchvision.models.ARCH(num_classes) with strict=True, run
                                     IO's `input` in eval mode; answers "relerr E" against IO's
                                     `output`
  quit

ARCH efficientnet_lite0..2 uses the EfficientNet-Lite PyTorch port (`efficientnet_lite_pytorch`,
dynamic "SAME" padding) when it is importable, and answers "skip" otherwise.
"""
import sys

import torch
import torchvision

INPUT_SHAPE = (2, 3, 64, 64)


def build(arch, num_classes):
    if arch.startswith("efficientnet_lite"):
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            return None
        name = arch.replace("efficientnet_", "efficientnet-")
        return EfficientNet.from_name(name, num_classes=num_classes, image_size=None)
    return getattr(torchvision.models, arch)(num_classes=num_classes)


def randomise_batch_norms(model):
    """Statistics and affine parameters away from their defaults, so that eval mode tests them."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_(0.0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0.0, 0.2)
            m.num_batches_tracked.fill_(7)


def relative_error(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


def make(arch, num_classes, fmt, out_dir):
    torch.manual_seed(0)
    model = build(arch, int(num_classes))
    if model is None:
        return "skip"
    with torch.no_grad():
        randomise_batch_norms(model)
    model.eval()
    x = torch.randn(*INPUT_SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x)
    zip_format = {"zip": True, "legacy": False}[fmt]
    torch.save(model.state_dict(), f"{out_dir}/{arch}.pth", _use_new_zipfile_serialization=zip_format)
    torch.save({"input": x, "output": y}, f"{out_dir}/{arch}.io.pth")
    return "ok"


def check(arch, num_classes, path, io_path):
    from safetensors.torch import load_file

    if arch.startswith("efficientnet_lite"):
        return "skip"  # exported under torchvision-style names, which the Lite port does not use
    model = build(arch, int(num_classes))
    model.load_state_dict(load_file(path), strict=True)
    model.eval()
    io = load_file(io_path)
    with torch.no_grad():
        y = model(io["input"])
    return f"relerr {relative_error(y, io['output']):.3e}"


def main():
    torch.set_num_threads(2)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        try:
            if words[0] == "quit":
                break
            elif words[0] == "make":
                answer = make(*words[1:])
            elif words[0] == "check":
                answer = check(*words[1:])
            else:
                answer = f"error unknown command {words[0]}"
        except Exception as e:  # the test prints the answer; keep the worker alive
            answer = f"error {type(e).__name__}: {e}".replace("\n", " ")
        print(answer, flush=True)


if __name__ == "__main__":
    main()
