#!/usr/bin/env python3
"""Writes tests/fixtures/zoo/*.safetensors: small PyTorch-parity fixtures for every model-zoo builder.

Each file holds a random-weight model's state_dict (keys exactly as the full model's), an input ("input") and
PyTorch's float32 eval-mode logits ("expected"), with metadata "architecture". The models are narrow and shallow
variants built from the libraries' own blocks and code paths:
- ResNet: torchvision's ResNet with Bottleneck blocks, its layers rebuilt by its own `_make_layer` with small
  widths and block counts (replace_stride_with_dilation=[False, True, True] as in the segmentation models).
- MobileNetV3-Large: torchvision's `_mobilenet_v3_conf(width_mult=0.25, dilated=True)` and `MobileNetV3`.
- Heads: torchvision's FCNHead, LRASPP (via `_lraspp_mobilenetv3`), and DeepLabHead's layout with torchvision's
  ASPP at 16 channels instead of 256 (DeepLabHead hard-codes 256, which would make the fixture large).
- UNet: a module with milesial/Pytorch-UNet's structure and key names (written from its description, not copied),
  base width 8 instead of 64, in both upsampling variants.
Batch-norms get non-trivial statistics (tools/export.py: randomize_batch_norm), and the final classifier is scaled
so that the largest logit is 4. Needs torch and torchvision.

    python tools/make_fixtures.py [--out tests/fixtures/zoo]
"""
import argparse
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export import VOC_LABELS, randomize_batch_norm, state_dict_tensors  # noqa: E402


# --- torchvision variants -------------------------------------------------------------------------------------

def small_resnet(blocks, widths, stem=8):
    from torchvision.models.resnet import Bottleneck, ResNet

    m = ResNet(Bottleneck, [1, 1, 1, 1], replace_stride_with_dilation=[False, True, True])
    m.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
    m.bn1 = nn.BatchNorm2d(stem)
    m.inplanes, m.dilation = stem, 1
    m.layer1 = m._make_layer(Bottleneck, widths[0], blocks[0])
    m.layer2 = m._make_layer(Bottleneck, widths[1], blocks[1], stride=2, dilate=False)
    m.layer3 = m._make_layer(Bottleneck, widths[2], blocks[2], stride=2, dilate=True)
    m.layer4 = m._make_layer(Bottleneck, widths[3], blocks[3], stride=2, dilate=True)
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
    return m, widths[3] * Bottleneck.expansion


class SmallDeepLabHead(nn.Sequential):
    """torchvision's DeepLabHead (same children and keys) with a narrower ASPP."""

    def __init__(self, in_channels, num_classes, width=16):
        from torchvision.models.segmentation.deeplabv3 import ASPP

        super().__init__(
            ASPP(in_channels, [12, 24, 36], out_channels=width),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, num_classes, 1),
        )


def resnet_model(kind, blocks, widths, classes):
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.deeplabv3 import DeepLabV3
    from torchvision.models.segmentation.fcn import FCN, FCNHead

    trunk, channels = small_resnet(blocks, widths)
    backbone = IntermediateLayerGetter(trunk, return_layers={"layer4": "out"})
    if kind == "deeplabv3":
        return DeepLabV3(backbone, SmallDeepLabHead(channels, classes), None)
    return FCN(backbone, FCNHead(channels, classes), None)


def mobilenet_features():
    from torchvision.models.mobilenetv3 import MobileNetV3, _mobilenet_v3_conf

    setting, last_channel = _mobilenet_v3_conf("mobilenet_v3_large", width_mult=0.25, dilated=True)
    return MobileNetV3(setting, last_channel).features


def deeplabv3_mobilenet(classes):
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.deeplabv3 import DeepLabV3

    features = mobilenet_features()
    # As torchvision's _deeplabv3_mobilenetv3: the last stage (C5, stride 16) is "out".
    out_pos = len(features) - 1
    head = SmallDeepLabHead(features[out_pos].out_channels, classes)
    return DeepLabV3(IntermediateLayerGetter(features, return_layers={str(out_pos): "out"}), head, None)


def lraspp_mobilenet(classes):
    from torchvision.models.mobilenetv3 import MobileNetV3, _mobilenet_v3_conf
    from torchvision.models.segmentation.lraspp import _lraspp_mobilenetv3

    setting, last_channel = _mobilenet_v3_conf("mobilenet_v3_large", width_mult=0.25, dilated=True)
    return _lraspp_mobilenetv3(MobileNetV3(setting, last_channel), classes)


# --- milesial/Pytorch-UNet layout -----------------------------------------------------------------------------

class DoubleConv(nn.Module):
    def __init__(self, cin, cout, mid=None):
        super().__init__()
        mid = mid or cout
        self.double_conv = nn.Sequential(
            nn.Conv2d(cin, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(cin, cout))

    def forward(self, x):
        return self.maxpool_conv(x)


class Up(nn.Module):
    def __init__(self, cin, cout, bilinear):
        super().__init__()
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConv(cin, cout, cin // 2)
        else:
            self.up = nn.ConvTranspose2d(cin, cin // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(cin, cout)

    def forward(self, x, skip):
        x = self.up(x)
        dy, dx = skip.shape[2] - x.shape[2], skip.shape[3] - x.shape[3]
        x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, x], dim=1))


class OutConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.conv(x)


class UNet(nn.Module):
    def __init__(self, channels, classes, bilinear=False, base=64):
        super().__init__()
        f = 2 if bilinear else 1
        b = base
        self.inc = DoubleConv(channels, b)
        self.down1, self.down2, self.down3 = Down(b, 2 * b), Down(2 * b, 4 * b), Down(4 * b, 8 * b)
        self.down4 = Down(8 * b, 16 * b // f)
        self.up1, self.up2 = Up(16 * b, 8 * b // f, bilinear), Up(8 * b, 4 * b // f, bilinear)
        self.up3, self.up4 = Up(4 * b, 2 * b // f, bilinear), Up(2 * b, b, bilinear)
        self.outc = OutConv(b, classes)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.outc(x)


# --- fixtures -------------------------------------------------------------------------------------------------

# name: (architecture, constructor, input shape, classes)
FIXTURES = {
    "deeplabv3_resnet50": ("deeplabv3_resnet50",
                           lambda k: resnet_model("deeplabv3", [1, 1, 2, 2], [4, 8, 8, 16], k), (1, 3, 161, 199), 5),
    "deeplabv3_resnet101": ("deeplabv3_resnet101",
                            lambda k: resnet_model("deeplabv3", [1, 2, 3, 2], [4, 8, 8, 8], k), (2, 3, 67, 93), 4),
    "fcn_resnet50": ("fcn_resnet50",
                     lambda k: resnet_model("fcn", [1, 1, 2, 2], [4, 8, 8, 16], k), (1, 3, 67, 93), 21),
    "fcn_resnet101": ("fcn_resnet101",
                      lambda k: resnet_model("fcn", [2, 1, 3, 2], [4, 4, 8, 8], k), (2, 3, 45, 61), 3),
    "deeplabv3_mobilenet_v3_large": ("deeplabv3_mobilenet_v3_large", deeplabv3_mobilenet, (1, 3, 197, 229), 5),
    "lraspp_mobilenet_v3_large": ("lraspp_mobilenet_v3_large", lraspp_mobilenet, (2, 3, 67, 93), 21),
    "unet": ("unet", lambda k: UNet(3, k, bilinear=False, base=8), (1, 3, 48, 80), 3),
    "unet_bilinear": ("unet", lambda k: UNet(3, k, bilinear=True, base=8), (2, 3, 32, 48), 2),
    # Sides that are not multiples of 16: every level pads its upsampled map (67 -> 33 -> 16 -> 8 -> 4 and back).
    "unet_odd": ("unet", lambda k: UNet(3, k, bilinear=False, base=4), (1, 3, 67, 93), 3),
    "unet_bilinear_odd": ("unet", lambda k: UNet(3, k, bilinear=True, base=4), (1, 3, 45, 61), 2),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "zoo"))
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    for i, (name, (arch, make, shape, classes)) in enumerate(FIXTURES.items()):
        if args.only and name not in args.only:
            continue
        torch.manual_seed(1000 + i)
        model = make(classes)
        randomize_batch_norm(model, torch.Generator().manual_seed(2000 + i))
        model.eval()
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(3000 + i))
        run = lambda: (lambda y: (y["out"] if isinstance(y, dict) else y).float().contiguous())(model(x))
        with torch.no_grad():
            # Scale the final classifier(s) so the largest logit is 4: an absolute tolerance then means something.
            scale = 4.0 / run().abs().max().item()
            for mname, mod in model.named_modules():
                if isinstance(mod, nn.Conv2d) and mname.startswith(("classifier", "outc")) \
                        and mod.out_channels == classes and mod.bias is not None:
                    mod.weight.mul_(scale)
                    mod.bias.mul_(scale)
            y = run()
        assert y.shape[2:] == x.shape[2:], (name, y.shape)
        tensors = state_dict_tensors(model)
        assert "input" not in tensors and "expected" not in tensors
        tensors["input"] = x.contiguous()
        tensors["expected"] = y
        labels = VOC_LABELS if classes == 21 else [f"class_{c}" for c in range(classes)]
        meta = {"architecture": arch, "labels": json.dumps(labels),
                "source": f"tools/make_fixtures.py, torch {torch.__version__}"}
        path = os.path.join(args.out, f"{name}.safetensors")
        save_file(tensors, path, metadata=meta)
        params = sum(v.numel() for k, v in tensors.items() if k not in ("input", "expected"))
        print(f"{name}: {params} weights, input {tuple(x.shape)}, logits {tuple(y.shape)}, "
              f"max |logit| {y.abs().max().item():.3f}, {os.path.getsize(path) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
