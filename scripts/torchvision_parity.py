"""The PyTorch side of masklab's weight parity test (tests/weights_parity.rs).

A worker: it reads commands on stdin, one per line, and answers one line on stdout, so that torch
is imported once for all backbones while only one model's files exist at a time.

  make ARCH NUM_CLASSES FORMAT DIR SIZE
                                     build torchvision.models.ARCH(num_classes) with random
                                     BatchNorm statistics, save its state dict to DIR/ARCH.pth
                                     (FORMAT zip or legacy) and {input, output} of a fixed
                                     2 x 3 x SIZE x SIZE input in eval mode to DIR/ARCH.io.pth;
                                     answers "ok"
  check ARCH NUM_CLASSES FILE IO     (torchvision backbones) load FILE (safetensors, torchvision names) into
                                     torchvision.models.ARCH(num_classes) with strict=True, run
                                     IO's `input` in eval mode; answers "relerr E" against IO's
                                     `output`
  timm NAME NUM_CLASSES DIR SIZE [BN_EPS]
                                     the same for timm.create_model(NAME, num_classes), saved as
                                     DIR/NAME.safetensors (timm's names) and DIR/NAME.io.pth; with
                                     BN_EPS, every BatchNorm's eps is set to it first (timm's
                                     non-TF models use 1e-5 where torchvision uses 1e-3), so that
                                     the comparison tests the names, not the eps
  load ARCH PATH DIR SIZE            torchvision.models.ARCH() (1000 classes) with the state dict in
                                     PATH (strict), {input, output} of a fixed input to
                                     DIR/ARCH.io.pth; answers "ok"
  weights ARCH                       torchvision's ImageNet weights of ARCH: answers
                                     "DEFAULT_NAME NAME=FILE,NAME=FILE..."
  timmcfg NAME.TAG                   answers the pretrained config's hf_hub_id, or "none"
  quit

ARCH efficientnet_lite0..2 uses the EfficientNet-Lite PyTorch port (`efficientnet_lite_pytorch`,
dynamic "SAME" padding) when it is importable, and answers "skip" otherwise.
"""
import copy
import sys

import torch
import torchvision



def build(arch, num_classes):
    if arch.startswith("efficientnet_lite"):
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            return None
        name = arch.replace("efficientnet_", "efficientnet-")
        return EfficientNet.from_name(name, num_classes=num_classes, image_size=None)
    return getattr(torchvision.models, arch)(num_classes=num_classes)


# Parameters that start at a constant, zero or nearly nothing (ConvNeXt's 1e-6 layer scale, ViT's
# zero head and class token, Swin's 0.02 position bias), which would let a wrong block pass.
NEAR_CONSTANT = ("layer_scale", "gamma", "class_token", "cls_token", "relative_position_bias_table", "heads.head.", "head.")


def randomise(model):
    """Statistics and affine parameters away from their defaults, so that eval mode tests them."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_(0.0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0.0, 0.2)
            m.num_batches_tracked.fill_(7)
        elif isinstance(m, torch.nn.LayerNorm) and m.weight is not None:
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0.0, 0.2)
    for name, p in model.named_parameters():
        if any(name.endswith(k) or name.startswith(k) for k in NEAR_CONSTANT):
            p.data.normal_(0.0, 0.5)


def relative_error(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


def make(arch, num_classes, fmt, out_dir, size):
    torch.manual_seed(0)
    model = build(arch, int(num_classes))
    if model is None:
        return "skip"
    with torch.no_grad():
        randomise(model)
    model.eval()
    x = torch.randn(2, 3, int(size), int(size), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x)
    zip_format = {"zip": True, "legacy": False}[fmt]
    torch.save(model.state_dict(), f"{out_dir}/{arch}.pth", _use_new_zipfile_serialization=zip_format)
    torch.save({"input": x, "output": y}, f"{out_dir}/{arch}.io.pth")
    return "ok"


def make_timm(name, num_classes, out_dir, size, bn_eps=None):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=int(num_classes))
    with torch.no_grad():
        randomise(model)
        for m in model.modules():
            if bn_eps is not None and isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eps = float(bn_eps)
    model.eval()
    x = torch.randn(2, 3, int(size), int(size), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        # Randomised deep networks amplify float32 rounding (EfficientNetV2-S: 3e-4 between
        # float32 and float64 here), so the exact comparison is made in float64.
        y64 = copy.deepcopy(model).double()(x.double())
    save_file(state, f"{out_dir}/{name}.safetensors")
    torch.save({"input": x, "output": y, "output64": y64}, f"{out_dir}/{name}.io.pth")
    return "ok"


def load(arch, path, out_dir, size):
    model = build(arch, 1000)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    model.eval()
    x = torch.randn(2, 3, int(size), int(size), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x)
    torch.save({"input": x, "output": y}, f"{out_dir}/{arch}.io.pth")
    return "ok"


def weights(arch):
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch)
    files = ",".join(f"{w.name}={w.url.rsplit('/', 1)[1]}" for w in enum)
    return f"{enum.DEFAULT.name} {files}"


def timm_config(name):
    import timm

    cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=False)
    return (cfg.hf_hub_id or "none") if cfg is not None else "none"


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
            elif words[0] == "timm":
                answer = make_timm(*words[1:])
            elif words[0] == "load":
                answer = load(*words[1:])
            elif words[0] == "weights":
                answer = weights(*words[1:])
            elif words[0] == "timmcfg":
                answer = timm_config(*words[1:])
            else:
                answer = f"error unknown command {words[0]}"
        except Exception as e:  # the test prints the answer; keep the worker alive
            answer = f"error {type(e).__name__}: {e}".replace("\n", " ")
        print(answer, flush=True)


if __name__ == "__main__":
    main()
