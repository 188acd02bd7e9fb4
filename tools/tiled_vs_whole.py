#!/usr/bin/env python3
"""How far tiled inference is from running the whole scene at once: PyTorch runs a UNet with 4 input channels
(random weights, or trained first with --train) on a whole 4-band u16 GeoTIFF scene; atrous segments the same scene
with `atrous segment --tile N --overlap M` (the same weights); the class maps are compared pixel by pixel. Run once
per network; the numbers are in BENCHMARKS.md and docs/remote-sensing.md.

Networks (--network): `resnet18`, smp Unet(resnet18, in_channels=4) saved with save_pretrained (a receptive field of
about 435 pixels); `unet`, the milesial UNet of tools/make_fixtures.py (4 levels of 3x3 double convs, transposed-conv
upsampling; --base channels at full resolution, 16 by default: the width changes the cost, not the receptive field of
about 140 pixels) saved as safetensors for the zoo `unet` builder.

The scene is `tools/make_scene.py --pattern fields` (smooth random fields) or, with --pattern parcels, its
reproducible land-cover parcels (tests/tiles.rs writes the same scene by formula).

--fixture DIR (with --network unet) also saves what the CI check `tiled_unet_should_agree_with_pytorch_on_the_whole_
scene` in tests/tiles.rs needs: DIR/unet4.safetensors (the weights), DIR/whole.png (PyTorch's whole-scene class map,
one grey level per class) and DIR/scene.json (scene size and pattern, the per-band mean and std passed to both
PyTorch and atrous, per-band sums of the scene's values so that the test can check its copy of the formula). The
tests/fixtures/tiles fixture was made by

    python3 tools/tiled_vs_whole.py --network unet --base 8 --pattern parcels --train 400 --fixture tests/fixtures/tiles

Needs torch, segmentation_models_pytorch, safetensors, rasterio and pillow, and a built atrous (target/release or
target/debug; --runs "" skips it). Run from the repository root:

    python3 tools/tiled_vs_whole.py [--network resnet18|unet] [--size 1504x1312] [--runs 1024/128,512/128,512/0]
        [--pattern fields|parcels] [--fixture DIR] [--work /tmp/tiled-vs-whole]
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


def train(model, steps, mean, std, crop=128, batch=12):
    """Fits the network to the parcels' land covers (make_scene.py's ground truth) with Adam on random crops of the
    pattern taken far below the scene (rows 20,000 on), so that the check runs weights shaped by a task, as users'
    networks are, rather than random ones: the covers' reflectances overlap once a parcel's brightness shift and the
    noise are added, so that single pixels of similar covers are ambiguous and the network learns to look around
    them. Deterministic (seeded)."""
    from make_scene import parcel_cover, parcels  # noqa: E402  (tools/ is on the path)

    rng = np.random.default_rng(0)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps)
    model.train()
    start = time.time()
    for step in range(steps):
        inputs, labels = [], []
        for _ in range(batch):
            y0, x0 = int(rng.integers(20000, 40000)), int(rng.integers(0, 20000))
            ys, xs = np.meshgrid(np.arange(y0, y0 + crop, dtype=np.int64), np.arange(x0, x0 + crop, dtype=np.int64),
                                 indexing="ij")
            bands = np.stack([parcels(b, ys, xs) for b in range(4)]).astype(np.float32)
            inputs.append((bands - mean[:, None, None]) / std[:, None, None])
            labels.append(parcel_cover(ys, xs))
        logits = model(torch.from_numpy(np.stack(inputs)))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(np.stack(labels)))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"training step {step}: loss {loss.item():.4f} ({time.time() - start:.0f} s)")
    model.eval()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="1504x1312", help="WIDTHxHEIGHT (multiples of 32: PyTorch runs it unpadded)")
    p.add_argument("--runs", default="1024/128,512/128,512/0", help="TILE/OVERLAP pairs")
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--network", choices=["resnet18", "unet"], default="resnet18")
    p.add_argument("--base", type=int, default=16, help="the milesial UNet's channels at full resolution")
    p.add_argument("--pattern", choices=["fields", "parcels"], default="fields", help="the scene (make_scene.py)")
    p.add_argument("--train", type=int, default=0, metavar="STEPS",
                   help="train the network on the parcels' covers first (--pattern parcels), instead of random weights")
    p.add_argument("--fixture", default=None, help="save the CI check's fixture here (--network unet)")
    p.add_argument("--work", default="/tmp/tiled-vs-whole")
    p.add_argument("--atrous", default=None, help="the atrous binary (default: target/release, else target/debug)")
    args = p.parse_args()
    if args.fixture and args.network != "unet":
        p.error("--fixture saves the milesial UNet (--network unet)")
    if args.train and args.pattern != "parcels":
        p.error("--train learns the covers of --pattern parcels")
    width, height = (int(v) for v in args.size.split("x"))
    os.makedirs(args.work, exist_ok=True)
    if args.fixture:
        os.makedirs(args.fixture, exist_ok=True)
    scene = os.path.join(args.work, "scene.tif")
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run([sys.executable, os.path.join(here, "make_scene.py"), "--size", f"{width}x{height}",
                    "--bands", "4", "--dtype", "uint16", "--pattern", args.pattern, "--block", "256", scene],
                   check=True)
    with rasterio.open(scene) as src:
        data = src.read().astype(np.float32)
    # Rounded as the command line passes them, so that PyTorch and atrous normalise with the same numbers.
    mean = np.round(data.reshape(4, -1).mean(1), 2)
    std = np.round(data.reshape(4, -1).std(1), 2)

    sys.path.insert(0, here)
    torch.manual_seed(0)
    if args.network == "resnet18":
        model = smp.Unet(encoder_name="resnet18", encoder_weights=None, in_channels=4, classes=args.classes).eval()
    else:
        from make_fixtures import UNet  # noqa: E402  (tools/make_fixtures.py: milesial's layout and key names)

        model = UNet(4, args.classes, bilinear=False, base=args.base).eval()
    x = torch.from_numpy((data - mean[:, None, None]) / std[:, None, None])[None]
    if args.train:
        train(model, args.train, mean, std)
    else:
        # Random batch-norm statistics, so that the network is not close to linear.
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                    m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    if args.network == "unet" and not args.train:
        # A random milesial UNet puts ~95% of this scene in one class, which would make any agreement look good:
        # centre each class's logit over the scene (its mean moved into outc's bias), so the classes share it.
        with torch.no_grad():
            model.outc.conv.bias -= model(x)[0].mean((1, 2))
    if args.fixture:
        # Stored as f16 (half the size in the repository), rounded before PyTorch runs, so the reference is exact.
        with torch.no_grad():
            for t in model.state_dict().values():
                if t.is_floating_point():
                    t.copy_(t.half().float())
    if args.network == "resnet18":
        model_dir = os.path.join(args.work, "unet_r18_4band")
        model.save_pretrained(model_dir)
    else:
        from safetensors.torch import save_file

        model_dir = os.path.join(args.fixture or args.work,
                                 "unet4.safetensors" if args.fixture else f"unet{args.base}_4band.safetensors")
        tensors = {k: (v.half() if args.fixture and v.is_floating_point() else v).detach().contiguous().clone()
                   for k, v in model.state_dict().items()}
        labels = json.dumps([f"class{i}" for i in range(args.classes)])
        save_file(tensors, model_dir, metadata={"architecture": "unet", "labels": labels})

    reach, r90, r99 = receptive_field(model)
    print(f"{args.network}: the centre pixel's input gradient is non-zero within {reach} pixels, 90% of it within "
          f"{r90}, 99% within {r99}")
    start = time.time()
    with torch.no_grad():
        whole = model(x)[0].argmax(0).numpy()
    shares = np.bincount(whole.ravel(), minlength=args.classes) / whole.size
    print(f"PyTorch whole scene {width}x{height}: {time.time() - start:.1f} s; class shares {shares}")
    if args.pattern == "parcels":
        from make_scene import parcel_cover  # noqa: E402

        ys, xs = np.meshgrid(np.arange(height, dtype=np.int64), np.arange(width, dtype=np.int64), indexing="ij")
        print(f"PyTorch whole scene vs the parcels' covers: {100 * (whole == parcel_cover(ys, xs)).mean():.2f}%")
    if args.fixture:
        from PIL import Image

        Image.fromarray(whole.astype(np.uint8), mode="L").save(os.path.join(args.fixture, "whole.png"),
                                                                optimize=True)
        facts = {"width": width, "height": height, "pattern": args.pattern, "bands": 4, "base": args.base,
                 "classes": args.classes, "mean": [round(float(v), 2) for v in mean],
                 "std": [round(float(v), 2) for v in std], "train_steps": args.train,
                 "band_sums": [int(v) for v in data.reshape(4, -1).astype(np.int64).sum(1)],
                 "class_shares": shares.round(4).tolist(), "receptive_field": [reach, r90, r99]}
        with open(os.path.join(args.fixture, "scene.json"), "w") as f:
            json.dump(facts, f, indent=1)
            f.write("\n")

    exe = args.atrous
    if exe is None and args.runs:
        root = os.path.dirname(here)
        exe = next(e for e in (os.path.join(root, "target", d, "atrous") for d in ("release", "debug"))
                   if os.path.exists(e))
    rows = []
    for run in filter(None, args.runs.split(",")):
        tile, overlap = (int(v) for v in run.split("/"))
        out = os.path.join(args.work, f"out_{args.network}_{tile}_{overlap}")
        cmd = [exe, "segment", "--model", model_dir, "--tile", str(tile), "--overlap", str(overlap),
               "--mean", ",".join(f"{v:.2f}" for v in mean), "--std", ",".join(f"{v:.2f}" for v in std),
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
