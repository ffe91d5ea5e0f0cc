#!/usr/bin/env bash
# Sets up (libtorch into .venv, once) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
source scripts/env.sh
cargo build --quiet --bins --tests
# Unit tests share libtorch's global random generator, and some check that a seed reproduces
# a draw: run them one at a time so no other test draws in between.
cargo test --lib -- --test-threads=1 "$@"
cargo test --bins --test '*' --no-fail-fast "$@"
# Every fuzz target for a bounded time (cargo-fuzz, installed on first use): 20 s each by default.
FUZZ_SECONDS=${MASKLAB_FUZZ_SECONDS:-20}
if [ "$FUZZ_SECONDS" != 0 ]; then
    scripts/fuzz.sh "$FUZZ_SECONDS"
fi
