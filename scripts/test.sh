#!/usr/bin/env bash
# Sets up (libtorch into .venv, once) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
cargo build --quiet --bins
cargo test --no-fail-fast "$@"
