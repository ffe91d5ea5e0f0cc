#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (libFuzzer through cargo-fuzz) for SECONDS each (default 25),
# from seeds that fuzz/make_seeds.py writes with torch, safetensors and Pillow. A crash, panic,
# time-out or memory blow-up fails the script and leaves the input in fuzz/artifacts/TARGET/;
# turn it into a regression test beside the parser. `scripts/fuzz.sh 600 pickle` fuzzes one
# target for ten minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-25}
shift || true
CARGO_FUZZ_VERSION=0.13.2

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
    cargo install --quiet --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
# libFuzzer's coverage flags are unstable rustc options: the stable toolchain takes them with
# RUSTC_BOOTSTRAP. No sanitizer (the parsers are safe Rust); debug assertions catch overflows.
export RUSTC_BOOTSTRAP=1
FUZZ=(cargo fuzz)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <("${FUZZ[@]}" list)

corpus=fuzz/corpus
mkdir -p "$corpus"
.venv/bin/python fuzz/make_seeds.py "$corpus"
if ! "${FUZZ[@]}" build --sanitizer none --debug-assertions > fuzz/build.log 2>&1; then
    tail -n 40 fuzz/build.log >&2
    exit 1
fi

failed=()
for t in "${targets[@]}"; do
    echo "fuzz: $t for ${SECONDS_EACH}s" >&2
    # Inputs up to 64 KiB; 2 GiB of memory and 10 s per input at most.
    if ! "${FUZZ[@]}" run --sanitizer none --debug-assertions "$t" "$corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -max_len=65536 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        > "fuzz/$t.log" 2>&1; then
        failed+=("$t")
        tail -n 40 "fuzz/$t.log" >&2
    else
        grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "fuzz/$t.log" | tr '\n' ' ' >&2
        echo >&2
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${SECONDS_EACH}s each, no crash"
