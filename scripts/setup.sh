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
PY=${MASKLAB_PYTHON:-python3}
# --bench: also what the PyTorch side of benchmarks and the stand-in data generator need.
BENCH=0
[ "${1:-}" = "--bench" ] && BENCH=1
# --test: also tensorboard and mlflow, which the test suite reads tracking output with.
TEST=0
[ "${1:-}" = "--test" ] && TEST=1

have() { .venv/bin/python -c "import torch,sys; sys.exit(0 if torch.__version__.split('+')[0]=='$TORCH_VERSION' else 1)" 2>/dev/null; }

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
# Package metadata, not imports: importing mlflow takes seconds.
have_test() { .venv/bin/python -c "from importlib.metadata import version as v; import sys; sys.exit(0 if (v('tensorboard'), v('mlflow')) == ('$TENSORBOARD_VERSION', '$MLFLOW_VERSION') else 1)" 2>/dev/null; }
if [ "$TEST" = 1 ] && ! have_test; then
    echo "setup: installing tensorboard==$TENSORBOARD_VERSION and mlflow==$MLFLOW_VERSION into .venv (for the tests)" >&2
    # torch stays pinned: mlflow's dependencies must not move it.
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" "tensorboard==$TENSORBOARD_VERSION" "mlflow==$MLFLOW_VERSION"
    have_test || { echo "setup: tensorboard $TENSORBOARD_VERSION / mlflow $MLFLOW_VERSION did not install into .venv" >&2; exit 1; }
fi
