#!/usr/bin/env bash
# `masklab serve` against the FastAPI + uvicorn peer (scripts/serve_torch.py) on the same model
# and machine: both serve one exported run; `masklab bench serve` fires the same images at each
# concurrency level for a fixed time; the two alternate, each repetition in the opposite order,
# and the table shows the median over the repetitions.
#
# usage: scripts/bench_serve.sh [--backbone resnet18] [--size 64] [--seconds 10] [--reps 2]
#                               [--concurrency 1,8,64] [--threads 1] [--out bench-runs/serve]
# needs: cargo build --release; scripts/setup.sh --bench (fastapi, uvicorn, torchvision, pillow)
set -euo pipefail
cd "$(dirname "$0")/.."

BACKBONE=resnet18 SIZE=64 LEVEL_SECONDS=10 REPS=2 CONCURRENCY=1,8,64 THREADS=1 OUT=bench-runs/serve
while [ $# -gt 0 ]; do
    case "$1" in
        --backbone) BACKBONE=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        --seconds) LEVEL_SECONDS=$2; shift 2 ;;
        --reps) REPS=$2; shift 2 ;;
        --concurrency) CONCURRENCY=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        *) echo "bench_serve: unknown option $1" >&2; exit 2 ;;
    esac
done
MASKLAB=target/release/masklab
PY=.venv/bin/python
[ -x "$MASKLAB" ] || { echo "bench_serve: build first: source scripts/env.sh && cargo build --release" >&2; exit 1; }
$PY -c "import fastapi, uvicorn, torchvision, PIL, safetensors" 2>/dev/null || { echo "bench_serve: run scripts/setup.sh --bench first" >&2; exit 1; }
mkdir -p "$OUT"

# A small trained run and its torchvision export; photos at the competition's 384x512.
if [ ! -f "$OUT/run/best.safetensors" ]; then
    "$MASKLAB" demo-data "$OUT/train-data" --people 8 --size 96x120 >/dev/null
    "$MASKLAB" train "$OUT/train-data" --out "$OUT/run" --quiet model.backbone="$BACKBONE" data.size="$SIZE" \
        train.epochs=1 train.batch_size=16 train.device=cpu train.threads=2 report.enabled=false tracking.tensorboard=false >/dev/null 2>&1
fi
"$MASKLAB" export "$OUT/run" --out "$OUT/model.safetensors" >/dev/null
[ -d "$OUT/photos" ] || "$MASKLAB" demo-data "$OUT/photos" --people 6 --eval-people 4 --size 384x512 --seed 11 >/dev/null
IMAGES="$OUT/photos/eval/images"

PORT=18480
wait_up() {
    for _ in $(seq 1 300); do
        curl -sf "http://127.0.0.1:$PORT/$1" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "bench_serve: the server on port $PORT did not come up" >&2
    return 1
}
SERVER_PID=""
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
trap stop_server EXIT

run_one() { # impl rep
    local impl=$1 rep=$2
    if [ "$impl" = masklab ]; then
        "$MASKLAB" serve "$OUT/run" --addr "127.0.0.1:$PORT" --device cpu --threads "$THREADS" --decode-threads "$THREADS" \
            --max-connections 1024 --queue 1024 2>"$OUT/masklab.log" &
        SERVER_PID=$!
        wait_up readyz
    else
        $PY scripts/serve_torch.py --weights "$OUT/model.safetensors" --arch "$BACKBONE" --size "$SIZE" --port "$PORT" \
            --threads "$THREADS" 2>"$OUT/peer.log" &
        SERVER_PID=$!
        wait_up healthz
    fi
    "$MASKLAB" bench serve --url "http://127.0.0.1:$PORT/v1/predict" --images "$IMAGES" --concurrency "$CONCURRENCY" \
        --seconds "$LEVEL_SECONDS" --warmup-seconds 1 2>/dev/null |
        sed "s/^{/{\"impl\":\"$impl\",\"rep\":$rep,/" >>"$OUT/results.jsonl"
    stop_server
}

: >"$OUT/results.jsonl"
for rep in $(seq 1 "$REPS"); do
    if [ $((rep % 2)) = 1 ]; then order="masklab peer"; else order="peer masklab"; fi
    for impl in $order; do
        echo "bench_serve: repetition $rep, $impl" >&2
        run_one "$impl" "$rep"
    done
done

$PY - "$OUT/results.jsonl" "$BACKBONE" "$SIZE" "$THREADS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{sys.argv[2]} at {sys.argv[3]} px, torch threads {sys.argv[4]}; median of {max(r['rep'] for r in rows)} repetitions")
print("| concurrency | server | images/s | p50 ms | p95 ms | p99 ms | errors |")
print("|---:|---|---:|---:|---:|---:|---:|")
for c in sorted({r["concurrency"] for r in rows}):
    for impl, name in [("masklab", "masklab serve"), ("peer", "FastAPI + uvicorn")]:
        rs = [r for r in rows if r["impl"] == impl and r["concurrency"] == c]
        med = lambda k: statistics.median(r[k] for r in rs)
        print(f"| {c} | {name} | {med('images_per_s'):.1f} | {med('p50_ms'):.1f} | {med('p95_ms'):.1f} | {med('p99_ms'):.1f} | {sum(r['errors'] for r in rs)} |")
EOF
