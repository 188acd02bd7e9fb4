#!/usr/bin/env python3
"""How far tiled inference is from running the whole scene at once: PyTorch runs a random-weight UNet with 4 input
channels on a whole 4-band u16 GeoTIFF scene; atrous segments the same scene with `atrous segment --tile N --overlap M`
(the same weights); the class maps are compared pixel by pixel. Run once per network; the numbers are in
BENCHMARKS.md and docs/remote-sensing.md.

Networks (--network): `resnet18`, smp Unet(resnet18, in_channels=4) saved with save_pretrained (a receptive field of
about 435 pixels); `unet`, the milesial UNet of tools/make_fixtures.py (4 levels of 3x3 double convs, transposed-conv
upsampling; --base channels at full resolution, 16 by default: the width changes the cost, not the receptive field of
about 140 pixels) saved as safetensors for the zoo `unet` builder.

Needs torch, segmentation_models_pytorch, safetensors and rasterio, and a built atrous (target/release or
target/debug). Run from the repository root:

    python3 tools/tiled_vs_whole.py [--network resnet18|unet] [--size 1504x1312] [--runs 1024/128,512/128,512/0]
        [--work /tmp/tiled-vs-whole]
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import rasterio
import segmentation_models_pytorch as smp
import torch


def receptive_field(model, size=512):
    """How far the network looks: |d logits(centre pixel) / d input| (summed over classes and bands) on a random
    size x size input; returns the (Chebyshev) radius where it is non-zero, and those holding 90% and 99% of it."""
    x = torch.randn(1, 4, size, size, generator=torch.Generator().manual_seed(3), requires_grad=True)
    c = size // 2
    model(x)[0, :, c, c].abs().sum().backward()
    g = x.grad[0].abs().sum(0).numpy()
    ys, xs = np.nonzero(g > 0)
    r = np.maximum(np.abs(ys - c), np.abs(xs - c))
    order = np.argsort(r)
    mass = np.cumsum(g[ys, xs][order]) / g.sum()
    return int(r.max()), int(r[order][np.searchsorted(mass, 0.9)]), int(r[order][np.searchsorted(mass, 0.99)])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="1504x1312", help="WIDTHxHEIGHT (multiples of 32: PyTorch runs it unpadded)")
    p.add_argument("--runs", default="1024/128,512/128,512/0", help="TILE/OVERLAP pairs")
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--network", choices=["resnet18", "unet"], default="resnet18")
    p.add_argument("--base", type=int, default=16, help="the milesial UNet's channels at full resolution")
    p.add_argument("--work", default="/tmp/tiled-vs-whole")
    p.add_argument("--atrous", default=None, help="the atrous binary (default: target/release, else target/debug)")
    args = p.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    os.makedirs(args.work, exist_ok=True)
    scene = os.path.join(args.work, "scene.tif")
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run([sys.executable, os.path.join(here, "make_scene.py"), "--size", f"{width}x{height}",
                    "--bands", "4", "--dtype", "uint16", "--pattern", "fields", "--block", "256", scene], check=True)
    with rasterio.open(scene) as src:
        data = src.read().astype(np.float32)
    mean = data.reshape(4, -1).mean(1)
    std = data.reshape(4, -1).std(1)

    torch.manual_seed(0)
    if args.network == "resnet18":
        model = smp.Unet(encoder_name="resnet18", encoder_weights=None, in_channels=4, classes=args.classes).eval()
    else:
        sys.path.insert(0, here)
        from make_fixtures import UNet  # noqa: E402  (tools/make_fixtures.py: milesial's layout and key names)

        model = UNet(4, args.classes, bilinear=False, base=args.base).eval()
    # Random batch-norm statistics, so that the network is not close to linear.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    x = torch.from_numpy((data - mean[:, None, None]) / std[:, None, None])[None]
    if args.network == "unet":
        # A random milesial UNet puts ~95% of this scene in one class, which would make any agreement look good:
        # centre each class's logit over the scene (its mean moved into outc's bias), so the classes share it.
        with torch.no_grad():
            model.outc.conv.bias -= model(x)[0].mean((1, 2))
    if args.network == "resnet18":
        model_dir = os.path.join(args.work, "unet_r18_4band")
        model.save_pretrained(model_dir)
    else:
        from safetensors.torch import save_file

        model_dir = os.path.join(args.work, f"unet{args.base}_4band.safetensors")
        tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        labels = json.dumps([f"class{i}" for i in range(args.classes)])
        save_file(tensors, model_dir, metadata={"architecture": "unet", "labels": labels})

    reach, r90, r99 = receptive_field(model)
    print(f"{args.network}: the centre pixel's input gradient is non-zero within {reach} pixels, 90% of it within "
          f"{r90}, 99% within {r99}")
    start = time.time()
    with torch.no_grad():
        whole = model(x)[0].argmax(0).numpy()
    print(f"PyTorch whole scene {width}x{height}: {time.time() - start:.1f} s; class shares "
          f"{np.bincount(whole.ravel(), minlength=args.classes) / whole.size}")

    exe = args.atrous
    if exe is None:
        root = os.path.dirname(here)
        exe = next(e for e in (os.path.join(root, "target", d, "atrous") for d in ("release", "debug"))
                   if os.path.exists(e))
    rows = []
    for run in args.runs.split(","):
        tile, overlap = (int(v) for v in run.split("/"))
        out = os.path.join(args.work, f"out_{args.network}_{tile}_{overlap}")
        cmd = [exe, "segment", "--model", model_dir, "--tile", str(tile), "--overlap", str(overlap),
               "--mean", ",".join(f"{v:.4f}" for v in mean), "--std", ",".join(f"{v:.4f}" for v in std),
               "--out", out, scene]
        start = time.time()
        subprocess.run(cmd, check=True)
        seconds = time.time() - start
        with rasterio.open(os.path.join(out, "scene.mask.tif")) as m:
            mask = m.read(1)
        agree = float((mask == whole).mean())
        rows.append((tile, overlap, agree, seconds))
        print(f"atrous tile {tile} overlap {overlap}: agreement with PyTorch's whole scene {100 * agree:.4f}% "
              f"({int((mask != whole).sum())} pixels differ; {seconds:.1f} s)")
    print("\n| tile | overlap | agreement with the whole scene (PyTorch) | atrous time |")
    print("|---|---|---|---|")
    for tile, overlap, agree, seconds in rows:
        print(f"| {tile} | {overlap} | {100 * agree:.4f}% | {seconds:.0f} s |")


if __name__ == "__main__":
    main()
