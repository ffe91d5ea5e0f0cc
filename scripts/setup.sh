#!/usr/bin/env bash
# Creates .venv with the libtorch that masklab builds against (PyPI's torch wheel).
# Idempotent: does nothing when .venv already holds the right versions.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.11.0
PY=${MASKLAB_PYTHON:-python3}

have() { .venv/bin/python -c "import torch,sys; sys.exit(0 if torch.__version__.split('+')[0]=='$TORCH_VERSION' else 1)" 2>/dev/null; }

if [ -x .venv/bin/python ] && have; then
    exit 0
fi
echo "setup: installing torch==$TORCH_VERSION into .venv (a few GB, once)" >&2
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
have || { echo "setup: torch $TORCH_VERSION did not install into .venv" >&2; exit 1; }
echo "setup: done" >&2
