#!/usr/bin/env python3
"""Export a torchvision segmentation model's state_dict as safetensors for atrous.

    python tools/export.py --arch deeplabv3_resnet50 --out deeplabv3_resnet50.safetensors --pretrained
    python tools/export.py --arch fcn_resnet50 --out fcn.safetensors --random --seed 1 --classes 21 \
        --reference fcn.reference.safetensors --size 520 520

The file's metadata holds "architecture" (what `atrous run --model FILE` builds), "labels" (a JSON list) and where
the weights came from. --random initialises every batch-norm with non-trivial running statistics (mean ~ N(0, 0.1),
var in [0.5, 2], weight in [0.5, 1.5], bias ~ N(0, 0.1)) so that folding them is actually tested.
--reference also writes a random input ("input", 1x3xHxW) and PyTorch's float32 eval-mode logits ("expected").
Needs torch, torchvision and safetensors.
"""
import argparse
import json
import sys

import torch
from safetensors.torch import save_file

ARCHITECTURES = [
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "deeplabv3_mobilenet_v3_large",
    "fcn_resnet50",
    "fcn_resnet101",
    "lraspp_mobilenet_v3_large",
]

VOC_LABELS = [
    "__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]


def randomize_batch_norm(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Non-trivial eval-mode statistics and affine parameters for every BatchNorm2d."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(n, generator=generator) * 0.1)


def state_dict_tensors(model: torch.nn.Module) -> dict:
    """The state_dict as contiguous tensors (safetensors refuses shared or strided storage)."""
    return {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}


def metadata(arch: str, labels: list, source: str) -> dict:
    return {"architecture": arch, "labels": json.dumps(labels), "source": source}


def main() -> int:
    import torchvision
    from torchvision.models import segmentation

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", required=True, choices=ARCHITECTURES)
    ap.add_argument("--out", required=True)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--pretrained", action="store_true", help="torchvision's COCO-with-VOC-labels weights")
    mode.add_argument("--random", action="store_true", help="random weights, non-trivial batch-norm statistics")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classes", type=int, default=21, help="class count (random mode)")
    ap.add_argument("--reference", help="also write an input and PyTorch's logits to this safetensors file")
    ap.add_argument("--size", type=int, nargs=2, default=[520, 520], metavar=("H", "W"))
    args = ap.parse_args()

    ctor = getattr(segmentation, args.arch)
    if args.pretrained:
        model = ctor(weights="DEFAULT")
        labels = list(model_weights_categories(segmentation, args.arch))
        source = f"torchvision {torchvision.__version__} pretrained"
    else:
        torch.manual_seed(args.seed)
        model = ctor(weights=None, weights_backbone=None, num_classes=args.classes)
        g = torch.Generator().manual_seed(args.seed)
        randomize_batch_norm(model, g)
        labels = VOC_LABELS if args.classes == 21 else [f"class_{i}" for i in range(args.classes)]
        source = f"torchvision {torchvision.__version__} random seed {args.seed}"
    model.eval()
    save_file(state_dict_tensors(model), args.out, metadata=metadata(args.arch, labels, source))
    print(f"wrote {args.out}")

    if args.reference:
        g = torch.Generator().manual_seed(args.seed + 1)
        x = torch.randn(1, 3, *args.size, generator=g)
        with torch.no_grad():
            y = model(x)["out"].float().contiguous()
        save_file({"input": x, "expected": y}, args.reference, metadata={"architecture": args.arch})
        print(f"wrote {args.reference}: logits {tuple(y.shape)}, max |logit| {y.abs().max().item():.3f}")
    return 0


def model_weights_categories(segmentation, arch: str):
    """The class names the pretrained weights come with."""
    enum_name = {
        "deeplabv3_resnet50": "DeepLabV3_ResNet50_Weights",
        "deeplabv3_resnet101": "DeepLabV3_ResNet101_Weights",
        "deeplabv3_mobilenet_v3_large": "DeepLabV3_MobileNet_V3_Large_Weights",
        "fcn_resnet50": "FCN_ResNet50_Weights",
        "fcn_resnet101": "FCN_ResNet101_Weights",
        "lraspp_mobilenet_v3_large": "LRASPP_MobileNet_V3_Large_Weights",
    }[arch]
    return getattr(segmentation, enum_name).DEFAULT.meta["categories"]


if __name__ == "__main__":
    sys.exit(main())
