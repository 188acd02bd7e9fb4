#!/usr/bin/env bash
# The issue's real-GPU comparison in one run, for a machine with an NVIDIA GPU, PyTorch (with torchvision) and no
# build tools: atrous (a release binary built elsewhere) against PyTorch eager with cuDNN, side by side, in rounds
# that alternate the two.
#
#   deeplabv3_resnet50 at 520 x 520, batch 1: atrous f32, f16 with f32 conv math and with f16 conv math, PyTorch
#   f32 (TF32 off) and f16;
#   the largest 3x3 convs of that model alone: atrous `bench --op conv2d` and PyTorch's F.conv2d, GFLOP/s.
#
# Prepare on the build machine, in the repository root (the Vulkan loader, for a machine that has only the driver):
#
#   cargo build --release && mkdir -p .bin && cp target/release/atrous .bin/
#   echo /.bin/ >> .git/info/exclude; echo /.gl/ >> .git/info/exclude
#   mkdir -p .gl && (cd .gl && apt-get download libvulkan1)          # an x86-64 Debian package
#
# then run `bash scripts/device-bench.sh` there with .bin and .gl alongside. Results go to $OUT (default
# /tmp/device-bench) as JSON lines, and a summary to stdout. ROUNDS (default 3) and ITERS (default 20) adjust it.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device-bench}
ROUNDS=${ROUNDS:-3}
ITERS=${ITERS:-20}
BIN=${ATROUS_BIN:-.bin/atrous}
mkdir -p "$OUT"

if ! ldconfig -p | grep -q libvulkan && compgen -G ".gl/*.deb" >/dev/null; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -e "$icd" ] && export VK_DRIVER_FILES=$icd
export ATROUS_ADAPTER=${ATROUS_ADAPTER:-vulkan}

nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
"$BIN" info | tee "$OUT/adapter.txt" | head -5

model=/tmp/deeplabv3_resnet50.safetensors
python3 tools/export.py --arch deeplabv3_resnet50 --random --seed 1 --out "$model" || exit 1

for round in $(seq "$ROUNDS"); do
    for p in f32 f16; do
        for math in off on; do
            [ "$p" = f32 ] && [ "$math" = on ] && continue
            tag=$p; [ "$p" = f16 ] && tag=$p-math-$math
            "$BIN" bench --model "$model" --size 520x520 --iters "$ITERS" --warmup 3 --precision "$p" \
                --f16-math "$([ "$p" = f16 ] && echo "$math" || echo auto)" --json > "$OUT/atrous-model-$tag-$round.json"
        done
        python3 tools/torch_latency.py --size 520 --iters "$ITERS" --precision "$p" >> "$OUT/torch-model.jsonl"
    done
done

for round in $(seq "$ROUNDS"); do
    # The shapes of tools/torch_latency.py's CONV_SHAPES: in, out, kernel, dilation, size.
    for shape in "64 64 3 1 130" "128 128 3 1 65" "256 256 3 2 65" "512 512 3 4 65" "2048 256 3 12 65"; do
        read -r cin cout k d s <<< "$shape"
        "$BIN" bench --op conv2d --in-channels "$cin" --out-channels "$cout" --kernel "$k" --dilation "$d" \
            --size "${s}x${s}" --iters "$ITERS" --json > "$OUT/atrous-conv-$cin-$cout-d$d-$round.json"
    done
    python3 tools/torch_latency.py --convs --iters "$ITERS" >> "$OUT/torch-conv.jsonl"
done

python3 - "$OUT" <<'EOF'
import glob, json, statistics, sys
out = sys.argv[1]
print("\n== deeplabv3_resnet50 520x520, median latency ms per round")
for tag in ["f32", "f16-math-off", "f16-math-on"]:
    p = tag[:3]
    ours = [json.load(open(f))["latency_ms"]["median"] for f in sorted(glob.glob(f"{out}/atrous-model-{tag}-[0-9]*.json"))]
    theirs = [r["median_ms"] for r in map(json.loads, open(f"{out}/torch-model.jsonl")) if r["what"].endswith(p)]
    print(f"{tag}: atrous {[round(v, 2) for v in ours]}  torch {[round(v, 2) for v in theirs]}  "
          f"ratio of medians {statistics.median(ours) / statistics.median(theirs):.2f}")
print("\n== 3x3 convs, GFLOP/s (median over rounds)")
torch_rows = [json.loads(l) for l in open(f"{out}/torch-conv.jsonl")]
for f in sorted(set(g.rsplit("-", 1)[0] for g in glob.glob(f"{out}/atrous-conv-*.json"))):
    runs = [json.load(open(g)) for g in glob.glob(f"{f}-*.json")]
    ours = statistics.median(r["gflops_per_second"] for r in runs)
    _, _, cin, cout, d = f.rsplit("/", 1)[1].split("-")
    mine = [r["gflops"] for r in torch_rows if r["what"].startswith(f"torch conv2d {cin}->{cout} ") and f" {d} " in r["what"]]
    print(f"{cin}->{cout} {d}: atrous {ours:.0f}  torch {statistics.median(mine):.0f}")
EOF
