#!/bin/bash
# Interleaved rounds of f32, f16 storage with f32 conv math, and f16 storage with f16 conv math (`--f16-math`), on
# a zoo fixture and three of the issue's conv shapes (default adapter: Vulkan, lavapipe here). Within a round each
# case runs the three back to back. Run from the repository root after `cargo build --release`; prints one line per
# run, then each case's per-round ratios to f16 with f32 math and their median.
set -euo pipefail
B=${ATROUS_BIN:-target/release/atrous}
ROUNDS=${ROUNDS:-3}
export ATROUS_ADAPTER=${ATROUS_ADAPTER:-vulkan}
log=$(mktemp)
date -u; uptime
cases=(
    "deeplab|--model tests/fixtures/zoo/deeplabv3_resnet50.safetensors --size 161x199 --iters 8 --warmup 2"
    "conv256|--op conv2d --in-channels 256 --out-channels 256 --size 65x65 --iters 5 --warmup 1"
    "conv1x1|--op conv2d --in-channels 1024 --out-channels 256 --kernel 1 --size 65x65 --iters 5 --warmup 1"
    "conv64|--op conv2d --in-channels 64 --out-channels 64 --size 128x128 --iters 5 --warmup 1"
)
for round in $(seq "$ROUNDS"); do
    for c in "${cases[@]}"; do
        name=${c%%|*}
        # shellcheck disable=SC2086 # the case's arguments are words
        for v in "f32 auto" "f16 off" "f16 on"; do
            set -- $v
            echo "$round $name $1-$2 $($B bench ${c#*|} --precision "$1" --f16-math "$2" --json)" | tee -a "$log"
        done
    done
done
uptime; date -u
python3 - "$log" <<'EOF'
import collections, json, statistics, sys
runs = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    r, name, variant, js = line.split(" ", 3)
    runs[(name, int(r))][variant] = json.loads(js)["latency_ms"]["median"]
print("case: per-round median latency ratio to f16-off (f32 math on f16 storage), then the median of rounds")
for name in dict.fromkeys(n for n, _ in runs):
    rounds = [v for (n, _), v in sorted(runs.items()) if n == name]
    for variant in ["f32-auto", "f16-on"]:
        ratios = [v[variant] / v["f16-off"] for v in rounds]
        print(f"{name} {variant}: {' '.join(f'{x:.2f}' for x in ratios)}  median {statistics.median(ratios):.2f}")
EOF
rm -f "$log"
