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
# The browser test of `masklab serve`'s page: Debian's chromium, driven by playwright-core
# (pinned in tests/browser/package.json and package-lock.json).
PLAYWRIGHT_VERSION=1.65.1
PY=${MASKLAB_PYTHON:-python3}
# --bench: also what the PyTorch side of benchmarks and the stand-in data generator need.
# --test: also what the tests read masklab's output with: torchvision + safetensors (weight parity),
#         tensorboard and mlflow (tracking), Debian's chromium and playwright-core (the serve
#         page's browser test; apt as root, npm into tests/browser/node_modules); scripts/test.sh uses it.
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
want = {'torchvision': '$TORCHVISION_VERSION', 'safetensors': None, 'tensorboard': '$TENSORBOARD_VERSION', 'mlflow': '$MLFLOW_VERSION'}
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
sys.exit(0 if torchvision.__version__.split('+')[0]=='$TORCHVISION_VERSION' and v('fastapi')=='$FASTAPI_VERSION' and v('uvicorn')=='$UVICORN_VERSION' else 1)" 2>/dev/null
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

if ! { [ -x .venv/bin/python ] && have; }; then
    echo "setup: installing torch==$TORCH_VERSION into .venv (a few GB, once)" >&2
    [ -x .venv/bin/python ] || "$PY" -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
    have || { echo "setup: torch $TORCH_VERSION did not install into .venv" >&2; exit 1; }
fi
if [ "$BENCH" = 1 ] && ! have_bench; then
    echo "setup: installing torchvision==$TORCHVISION_VERSION, pillow, numpy into .venv" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" pillow numpy \
        safetensors "fastapi==$FASTAPI_VERSION" "uvicorn==$UVICORN_VERSION"
fi
if [ "$TEST" = 1 ] && ! have_test; then
    echo "setup: installing torchvision==$TORCHVISION_VERSION, safetensors, tensorboard==$TENSORBOARD_VERSION, mlflow==$MLFLOW_VERSION into .venv (for the tests)" >&2
    # torch stays pinned: mlflow's dependencies must not move it.
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" safetensors \
        "tensorboard==$TENSORBOARD_VERSION" "mlflow==$MLFLOW_VERSION"
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
