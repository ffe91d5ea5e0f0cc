#!/usr/bin/env bash
# Sets up, builds, and runs masklab's main job on its built-in demo dataset (in ./demo).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
cargo build --release --quiet
bin=target/release/masklab
rm -rf demo
$bin demo-data demo --people 40 --seed 1
$bin eda demo --out demo/eda
