#!/usr/bin/env python3
"""PyTorch's eager latency on a CUDA GPU, the side of a comparison `atrous bench` makes on the same GPU.

    python tools/torch_latency.py --arch deeplabv3_resnet50 --size 520 --iters 20 --precision f32
    python tools/torch_latency.py --convs --iters 20         # the largest 3x3 convs of deeplabv3_resnet50 alone

A model's latency is what atrous's is: the input copied from host memory, the forward pass, the logits copied back
(synchronised), timed per run after warm-up runs; median, min and max in ms. f32 runs with TF32 off for cuDNN and
matmuls (the issue's baseline), f16 casts model and input to half. `--convs` times F.conv2d alone on the shapes
`atrous bench --op conv2d` takes in scripts/device-bench.sh and reports GFLOP/s, FLOPs counting every tap
(2 * N * Cout * Hout * Wout * Cin * Kh * Kw). Prints one JSON object per line. Needs torch and torchvision.
"""
import argparse
import json
import statistics
import time

import torch

# (in, out, kernel, dilation, size): deeplabv3_resnet50's 3x3 convs at 520 x 520 (output stride 8): layer1..4's
# widest, and the ASPP branch of dilation 12.
CONV_SHAPES = [
    (64, 64, 3, 1, 130),
    (128, 128, 3, 1, 65),
    (256, 256, 3, 2, 65),
    (512, 512, 3, 4, 65),
    (2048, 256, 3, 12, 65),
]


def timed(fn, iters: int, warmup: int) -> list:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)


def summary(times: list) -> dict:
    return {"median_ms": statistics.median(times), "min_ms": times[0], "max_ms": times[-1]}


def model_latency(args) -> dict:
    from torchvision.models import segmentation

    torch.manual_seed(1)
    model = getattr(segmentation, args.arch)(weights=None, weights_backbone=None, num_classes=21).eval().cuda()
    dtype = torch.float16 if args.precision == "f16" else torch.float32
    model = model.to(dtype)
    x = torch.randn(1, 3, args.size, args.size).to(dtype).pin_memory()

    def run():
        with torch.no_grad():
            return model(x.cuda(non_blocking=True))["out"].cpu()

    times = timed(run, args.iters, args.warmup)
    return {"what": f"torch {args.arch} {args.size}x{args.size} {args.precision}", **summary(times)}


def conv_throughput(args) -> list:
    rows = []
    dtype = torch.float16 if args.precision == "f16" else torch.float32
    for cin, cout, k, d, size in CONV_SHAPES:
        x = torch.randn(1, cin, size, size, device="cuda", dtype=dtype)
        w = torch.randn(cout, cin, k, k, device="cuda", dtype=dtype)
        pad = d * (k - 1) // 2

        def run():
            return torch.nn.functional.conv2d(x, w, padding=pad, dilation=d)

        times = timed(run, args.iters, args.warmup)
        flops = 2 * cout * size * size * cin * k * k
        rows.append({
            "what": f"torch conv2d {cin}->{cout} {k}x{k} d{d} @{size} {args.precision}",
            "gflops": flops / (statistics.median(times) * 1e-3) * 1e-9,
            **summary(times),
        })
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="deeplabv3_resnet50")
    ap.add_argument("--size", type=int, default=520)
    ap.add_argument("--precision", choices=["f32", "f16"], default="f32")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--convs", action="store_true", help="time the largest 3x3 convs alone instead")
    args = ap.parse_args()

    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    device = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "cudnn": torch.backends.cudnn.version()}
    rows = conv_throughput(args) if args.convs else [model_latency(args)]
    for row in rows:
        print(json.dumps({**row, **device}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
