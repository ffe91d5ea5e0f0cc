#!/usr/bin/env bash
# Creates .venv with the libtorch that masklab builds against (PyPI's torch wheel).
# Idempotent: does nothing when .venv already holds the right versions.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.11.0
TORCHVISION_VERSION=0.26.0
PY=${MASKLAB_PYTHON:-python3}
# --bench: also what the PyTorch side of benchmarks and the stand-in data generator need.
# --test: also what the weight parity test needs (torchvision, safetensors); scripts/test.sh uses it.
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

have_test() { .venv/bin/python -c "import torchvision, safetensors, sys; sys.exit(0 if torchvision.__version__.split('+')[0]=='$TORCHVISION_VERSION' else 1)" 2>/dev/null; }

have_bench() { .venv/bin/python -c "import torchvision, PIL, numpy, sys; sys.exit(0 if torchvision.__version__.split('+')[0]=='$TORCHVISION_VERSION' else 1)" 2>/dev/null; }

if ! { [ -x .venv/bin/python ] && have; }; then
    echo "setup: installing torch==$TORCH_VERSION into .venv (a few GB, once)" >&2
    [ -x .venv/bin/python ] || "$PY" -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
    have || { echo "setup: torch $TORCH_VERSION did not install into .venv" >&2; exit 1; }
fi
if [ "$BENCH" = 1 ] && ! have_bench; then
    echo "setup: installing torchvision==$TORCHVISION_VERSION, pillow, numpy into .venv" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" pillow numpy
fi
if [ "$TEST" = 1 ] && ! have_test; then
    echo "setup: installing torchvision==$TORCHVISION_VERSION, safetensors into .venv (for the weight parity test)" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" safetensors
fi
