#!/usr/bin/env bash
# Interleaved rounds of atrous with heuristic kernel choices, atrous tuned (`--tune`, its cache made before round 1),
# and ncnn-Vulkan, whole models on the same adapter, batch 1, f32. Models made by the ncnn peer harness
# (../shared/peers/ncnn-vulkan/make_models.py: its models.json gives each model's atrous arguments and size).
#   PY=/tmp/ncnn-venv/bin/python MODELS_DIR=/tmp/ncnn-models ROUNDS=3 bash scripts/bench-vs-ncnn.sh [NAME...]
# Prints one line per model and round, then per model the median ratios atrous/ncnn (< 1: atrous faster). TUNED=0
# skips the tuned runs (tuning a ResNet-50 takes minutes on lavapipe).
set -euo pipefail
cd "$(dirname "$0")/.."
PEER=${PEER:-../shared/peers/ncnn-vulkan}
ATROUS=${ATROUS:-target/release/atrous}; DIR=${MODELS_DIR:-/tmp/ncnn-models}; ROUNDS=${ROUNDS:-3}
PY=${PY:-python3}; ITERS=${ITERS:-5}; TUNED=${TUNED:-1}
export ATROUS_TUNE_CACHE=${ATROUS_TUNE_CACHE:-$DIR/tune.json}
names=${*:-lraspp_mobilenet_v3_large deeplabv3_mobilenet_v3_large smp_unet_resnet34 deeplabv3_resnet50}
log=$(mktemp)
args_of() { $PY -c "import json;m=json.load(open('$DIR/models.json'))['$1'];print(' '.join(m['atrous_args']), '--size', m['size'])"; }
median_ms() { $PY -c "import sys,json;print(json.load(sys.stdin)['latency_ms']['median'])"; }
if [[ $TUNED == 1 ]]; then
  for n in $names; do  # tune once, so the rounds time tuned plans, not tuning
    $ATROUS bench $(args_of "$n") --tune --plan-only >/dev/null
  done
fi
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r: $(uptime)" >&2
  for n in $names; do
    args=$(args_of "$n")
    a=$($ATROUS bench $args --iters "$ITERS" --warmup 1 --json 2>/dev/null | median_ms)
    t=$a
    [[ $TUNED == 1 ]] && t=$($ATROUS bench $args --tune --iters "$ITERS" --warmup 1 --json 2>/dev/null | median_ms)
    b=$($PY "$PEER/time_ncnn.py" "$DIR" "$n" --iters "$ITERS" | $PY -c "import sys,json;print(json.load(sys.stdin)['median_ms'])")
    echo "$n round $r: atrous ${a} ms, atrous tuned ${t} ms, ncnn-vulkan ${b} ms" | tee -a "$log"
  done
done
$PY - "$log" <<'PY'
import re, sys, statistics as st
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\S+) round \d+: atrous ([\d.]+) ms, atrous tuned ([\d.]+) ms, ncnn-vulkan ([\d.]+) ms", line)
    if m:
        a, t, b = map(float, m.groups()[1:])
        rows.setdefault(m[1], []).append((a / b, t / b, t / a))
for n, rs in rows.items():
    med = [st.median(r[i] for r in rs) for i in range(3)]
    print(f"{n}: atrous/ncnn {med[0]:.2f}x, tuned/ncnn {med[1]:.2f}x, tuned/heuristic {med[2]:.2f}x "
          f"(rounds: {'; '.join(', '.join(f'{v:.2f}' for v in r) for r in rs)})")
PY
