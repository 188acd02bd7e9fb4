#!/usr/bin/env bash
# Interleaved rounds of the burn peer and atrous on BENCHMARKS.md's four conv2d shapes: burn, then atrous (the path
# conv2d::choose picks, median of 3 like the peer), ROUNDS times, with the date and load between rounds.
# Build the peer first as ../shared/peers/burn-conv/README.md says (BURN defaults to its binary under /tmp).
#
#     ROUNDS=3 scripts/bench-vs-burn.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
BURN=${BURN:-/tmp/burn-conv/target/release/burn-conv}
ONLY=1x2048x65x65_to256_k3x3_d12,1x256x65x65_to256,1x1024x65x65_to256,1x64x256x256
cargo bench --profile dev --bench conv --no-run
date; uptime
for r in $(seq 1 "$ROUNDS"); do
    echo "== round $r: burn"
    "$BURN"
    echo "== round $r: atrous"
    ATROUS_BENCH_MEDIAN3=1 ATROUS_BENCH_PATHS=chosen ATROUS_BENCH_ONLY=$ONLY \
        cargo bench --profile dev --bench conv -- nomatch 2>&1 | grep "median of 3"
    date; uptime
done
