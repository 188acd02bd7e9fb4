#!/usr/bin/env python3
"""Export a torchvision segmentation model to ONNX for atrous's ONNX importer.

    python tools/export_onnx.py --arch deeplabv3_resnet50 --pretrained --out deeplabv3_resnet50.onnx
    python tools/export_onnx.py --arch lraspp_mobilenet_v3_large --random --seed 1 --out lraspp.onnx \
        --size 481 641 --dynamic --exporter torchscript --verify

The graph has one input, "input" (1x3xHxW float32, normalised RGB), and one output, "out" (1xCxHxW logits at the
input size); the auxiliary head is not exported. --size is the example input's size (default 520 520); --dynamic
makes height and width symbolic ("height", "width") so the file runs at any size, otherwise the file is only valid at
--size. --exporter picks torch.onnx.export(dynamo=True) (the torch.export-based exporter, its default opset; the
default here) or torch.onnx.export(dynamo=False) (the TorchScript-based exporter, opset 17). Weights are stored
inside model.onnx (no external data file).

The model's metadata_props hold what atrous needs to preprocess and label:
    atrous.mean    "0.485,0.456,0.406"  (per-channel mean of the 0..1 RGB input)
    atrous.std     "0.229,0.224,0.225"
    atrous.size    "520"                (the shorter side images are resized to)
    atrous.labels  JSON list of the class names (the 21 VOC names for torchvision's weights)

--random initialises the weights from --seed with non-trivial batch-norm statistics (as tools/export.py does);
--verify runs the file with onnxruntime on a random input and prints the largest difference from PyTorch.
Needs torch, torchvision, onnx (and onnxscript for the dynamo exporter, onnxruntime for --verify).
"""
import argparse
import json
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export import ARCHITECTURES, VOC_LABELS, model_weights_categories, randomize_batch_norm  # noqa: E402

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
RESIZE = 520


class OutOnly(torch.nn.Module):
    """torchvision segmentation models return {"out": ..., "aux": ...}; this returns the "out" tensor only."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


def preprocessing(segmentation, arch: str):
    """mean, std and resize size of the weights' own transforms (torchvision's defaults if unavailable)."""
    try:
        enum = getattr(segmentation, {
            "deeplabv3_resnet50": "DeepLabV3_ResNet50_Weights",
            "deeplabv3_resnet101": "DeepLabV3_ResNet101_Weights",
            "deeplabv3_mobilenet_v3_large": "DeepLabV3_MobileNet_V3_Large_Weights",
            "fcn_resnet50": "FCN_ResNet50_Weights",
            "fcn_resnet101": "FCN_ResNet101_Weights",
            "lraspp_mobilenet_v3_large": "LRASPP_MobileNet_V3_Large_Weights",
        }[arch])
        t = enum.DEFAULT.transforms()
        size = t.resize_size[0] if isinstance(t.resize_size, (list, tuple)) else t.resize_size
        return tuple(t.mean), tuple(t.std), int(size)
    except Exception:
        return MEAN, STD, RESIZE


def export(model, x, out, exporter, dynamic):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            axes = {"input": {2: "height", 3: "width"}, "out": {2: "height", 3: "width"}} if dynamic else None
            torch.onnx.export(model, (x,), out, dynamo=False, opset_version=17, input_names=["input"],
                              output_names=["out"], dynamic_axes=axes)
        else:
            shapes = None
            if dynamic:
                shapes = ({2: torch.export.Dim("height", min=32, max=4096),
                           3: torch.export.Dim("width", min=32, max=4096)},)
            torch.onnx.export(model, (x,), out, dynamo=True, input_names=["input"], output_names=["out"],
                              dynamic_shapes=shapes, external_data=False)


def main() -> int:
    import onnx
    import torchvision  # noqa: F401
    from torchvision.models import segmentation

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", required=True, choices=ARCHITECTURES)
    ap.add_argument("--out", required=True, help="the .onnx file to write")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--pretrained", action="store_true", help="torchvision's COCO-with-VOC-labels weights")
    mode.add_argument("--random", action="store_true", help="random weights, non-trivial batch-norm statistics")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classes", type=int, default=21, help="class count (random mode)")
    ap.add_argument("--size", type=int, nargs=2, default=[520, 520], metavar=("H", "W"),
                    help="example input size (the only valid size unless --dynamic)")
    ap.add_argument("--dynamic", action="store_true", help="symbolic input height and width")
    ap.add_argument("--exporter", choices=["dynamo", "torchscript"], default="dynamo")
    ap.add_argument("--verify", action="store_true", help="compare onnxruntime's output with PyTorch's")
    args = ap.parse_args()

    ctor = getattr(segmentation, args.arch)
    if args.pretrained:
        model = ctor(weights="DEFAULT")  # the pretrained weights come with an aux head (aux_loss=False is refused)
        labels = list(model_weights_categories(segmentation, args.arch))
    else:
        torch.manual_seed(args.seed)
        model = ctor(weights=None, weights_backbone=None, num_classes=args.classes)
        randomize_batch_norm(model, torch.Generator().manual_seed(args.seed))
        labels = VOC_LABELS if args.classes == 21 else [f"class_{i}" for i in range(args.classes)]
    if getattr(model, "aux_classifier", None) is not None:
        model.aux_classifier = None  # DeepLabV3 / FCN skip the aux head when it is None; "out" is unchanged
    model = OutOnly(model).eval()
    mean, std, resize = preprocessing(segmentation, args.arch)

    x = torch.randn(1, 3, *args.size, generator=torch.Generator().manual_seed(args.seed + 1))
    export(model, x, args.out, args.exporter, args.dynamic)

    m = onnx.load(args.out)
    props = {"atrous.mean": ",".join(f"{v:g}" for v in mean), "atrous.std": ",".join(f"{v:g}" for v in std),
             "atrous.size": str(resize), "atrous.labels": json.dumps(labels)}
    kept = [p for p in m.metadata_props if p.key not in props]
    del m.metadata_props[:]
    m.metadata_props.extend(kept)
    onnx.helper.set_model_props(m, {**{p.key: p.value for p in kept}, **props})
    onnx.checker.check_model(m)
    onnx.save(m, args.out)
    opset = next(i.version for i in m.opset_import if i.domain in ("", "ai.onnx"))
    dims = [d.dim_param or d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    print(f"wrote {args.out}: {args.arch}, {args.exporter} exporter, opset {opset}, input {dims}, "
          f"{len(labels)} classes, {os.path.getsize(args.out) / 1e6:.1f} MB")

    if args.verify:
        import numpy as np
        import onnxruntime as ort

        sizes = [tuple(args.size)] + ([(args.size[0] - 37, args.size[1] + 23)] if args.dynamic else [])
        sess = ort.InferenceSession(args.out, providers=["CPUExecutionProvider"])
        for h, w in sizes:
            xv = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(args.seed + 2))
            with torch.no_grad():
                ref = model(xv).numpy()
            y = sess.run(["out"], {"input": xv.numpy()})[0]
            print(f"verify {h}x{w}: output {list(y.shape)}, max |onnxruntime - torch| {np.abs(y - ref).max():.2e} "
                  f"(max |logit| {np.abs(ref).max():.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
