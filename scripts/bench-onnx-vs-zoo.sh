#!/usr/bin/env bash
# The same network run from its ONNX export and from the zoo's state_dict build, side by side: interleaved rounds
# (zoo, onnx, zoo, onnx, ...) of `atrous bench`, each the median of ITERS runs after a warm-up; prints latency,
# dispatches and planned memory per round. Make the two files with tools/export.py and tools/export_onnx.py (same
# --arch, --seed), e.g.:
#   python tools/export.py --arch deeplabv3_resnet50 --random --seed 1 --out /tmp/m.safetensors
#   python tools/export_onnx.py --arch deeplabv3_resnet50 --random --seed 1 --out /tmp/m.onnx --dynamic
#   bash scripts/bench-onnx-vs-zoo.sh /tmp/m.safetensors /tmp/m.onnx 257x257
set -euo pipefail
ZOO=$1 ONNX=$2 SIZE=${3:-257x257}
ROUNDS=${ROUNDS:-3} ITERS=${ITERS:-5}
BIN=${BIN:-target/release/atrous}
summary() {
    python3 -c 'import json,sys; d=json.load(sys.stdin); m=d["memory"]
print("%-40s %9.1f ms  %4d dispatches  %6.2f MiB planned" % (sys.argv[1], d["latency_ms"]["median"], d["dispatches"], m["planned_bytes"] / 2**20))' "$1"
}
for round in $(seq "$ROUNDS"); do
    echo "round $round"
    for model in "$ZOO" "$ONNX"; do
        "$BIN" bench --model "$model" --size "$SIZE" --iters "$ITERS" --warmup 2 --json | summary "$(basename "$model")"
    done
done
