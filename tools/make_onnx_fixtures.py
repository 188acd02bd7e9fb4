#!/usr/bin/env python3
"""Writes tests/fixtures/onnx/models: ONNX parity fixtures for segmentation networks, each exported with both PyTorch
exporters, in the ONNX backend-test layout:

    tests/fixtures/onnx/models/<net>_<exporter>/model.onnx
    tests/fixtures/onnx/models/<net>_<exporter>/test_data_set_<k>/input_0.pb, output_0.pb   (onnx.TensorProto)
    tests/fixtures/onnx/models/manifest.json

<exporter> is `ts` (torch.onnx.export(..., dynamo=False), the TorchScript-based exporter, opset 17) or `dynamo`
(torch.onnx.export(..., dynamo=True), the torch.export-based exporter, at its default opset). The networks are
defined here in plain PyTorch with small widths (plus a width-reduced torchvision DeepLabV3-MobileNetV3 and an smp
Unet with a MobileNetV2 encoder), random weights from a fixed seed, every BatchNorm with non-trivial running
statistics (tools/export.py's randomize_batch_norm), every PReLU with random slopes, in eval mode.

The reference outputs are onnxruntime's (CPUExecutionProvider) on the exported file, for a random-normal input of
odd height and width (fixed seed); the tensors are named after the graph's input / output. manifest.json holds, per
case: network, exporter, opset, input and output shapes per data set, the op histogram, notable node patterns
(attributes and where each input comes from for Resize, Pad, MaxPool, MaxUnpool, ConvTranspose, Slice, ...), the
largest |PyTorch - onnxruntime| per data set and the file size. An export that fails is not worked around: its
exception is recorded under "export_failures" and no case folder is written.

unet_dynamic is exported with dynamic height and width and has two data sets at two odd sizes.

Run from the repository root: python tools/make_onnx_fixtures.py [NET...]   (all networks when none is given;
naming networks rewrites only their cases and keeps the other manifest entries)
"""

import collections
import contextlib
import io
import json
import os
import shutil
import sys
import traceback
import warnings
import zlib

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export import randomize_batch_norm  # noqa: E402  (tools/export.py)

OUT = "tests/fixtures/onnx/models"
CLASSES = 5
TS_OPSET = 17
# SegNet / ENet pass MaxUnpool2d's output_size as the traced x.shape[-2:] (what PyTorch code normally does). When an
# export fails, it is retried once with INT_SIZES set (output_size as Python ints) only to record the next error in
# the manifest ("retry_with_int_output_size"); nothing from the retry is kept.
INT_SIZES = False


def hw(x):
    return [int(s) for s in x.shape[-2:]] if INT_SIZES else x.shape[-2:]


def randomize(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    randomize_batch_norm(model, g)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.45 + 0.05)


def conv_bn_relu(cin, cout, k=3, stride=1, padding=None, dilation=1):
    if padding is None:
        padding = dilation * (k // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding, dilation, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


# ----------------------------------------------------------------------------------------------------------- SegNet
class SegNet(nn.Module):
    """Reduced SegNet: 4 encoder stages (2 conv-bn-relu each, MaxPool2d with indices), a mirrored decoder that
    unpools with the encoder's indices and output_size (so odd sizes round-trip), 1x1 conv to the classes."""

    def __init__(self, widths=(8, 16, 32, 32), classes=CLASSES):
        super().__init__()
        self.enc = nn.ModuleList()
        cin = 3
        for w in widths:
            self.enc.append(nn.Sequential(conv_bn_relu(cin, w), conv_bn_relu(w, w)))
            cin = w
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.dec = nn.ModuleList()
        outs = list(reversed(widths[:-1])) + [widths[0]]
        for w in outs:
            self.dec.append(nn.Sequential(conv_bn_relu(cin, cin), conv_bn_relu(cin, w)))
            cin = w
        self.head = nn.Conv2d(cin, classes, 1)

    def forward(self, x):
        stack = []
        for block in self.enc:
            x = block(x)
            size = hw(x)
            x, idx = self.pool(x)
            stack.append((idx, size))
        for block in self.dec:
            idx, size = stack.pop()
            x = self.unpool(x, idx, output_size=size)
            x = block(x)
        return self.head(x)


# ------------------------------------------------------------------------------------------------------------- ENet
class InitialBlock(nn.Module):
    def __init__(self, cout=16):
        super().__init__()
        self.main = nn.Conv2d(3, cout - 3, 3, stride=2, padding=1, bias=False)
        self.ext = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.PReLU(cout)

    def forward(self, x):
        return self.act(self.bn(torch.cat((self.main(x), self.ext(x)), 1)))


def cbp(cin, cout, k, stride=1, padding=0, dilation=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding, dilation, bias=False), nn.BatchNorm2d(cout),
                         nn.PReLU(cout))


class RegularBottleneck(nn.Module):
    def __init__(self, ch, k=3, padding=1, dilation=1, asymmetric=False, dropout=0.1, ratio=4):
        super().__init__()
        mid = ch // ratio
        self.conv1 = cbp(ch, mid, 1)
        if asymmetric:
            self.conv2 = nn.Sequential(cbp(mid, mid, (k, 1), padding=(padding, 0)),
                                       cbp(mid, mid, (1, k), padding=(0, padding)))
        else:
            self.conv2 = cbp(mid, mid, k, padding=padding, dilation=dilation)
        self.conv3 = cbp(mid, ch, 1)
        self.drop = nn.Dropout2d(dropout)
        self.act = nn.PReLU(ch)

    def forward(self, x):
        return self.act(x + self.drop(self.conv3(self.conv2(self.conv1(x)))))


class DownsamplingBottleneck(nn.Module):
    def __init__(self, cin, cout, dropout=0.1, ratio=4):
        super().__init__()
        mid = cin // ratio
        self.pool = nn.MaxPool2d(2, stride=2, return_indices=True)
        self.conv1 = cbp(cin, mid, 2, stride=2)
        self.conv2 = cbp(mid, mid, 3, padding=1)
        self.conv3 = cbp(mid, cout, 1)
        self.drop = nn.Dropout2d(dropout)
        self.act = nn.PReLU(cout)
        self.extra = cout - cin

    def forward(self, x):
        main, idx = self.pool(x)
        main = F.pad(main, (0, 0, 0, 0, 0, self.extra))  # zero channels appended
        ext = self.drop(self.conv3(self.conv2(self.conv1(x))))
        return self.act(main + ext), idx


class UpsamplingBottleneck(nn.Module):
    def __init__(self, cin, cout, dropout=0.1, ratio=4):
        super().__init__()
        mid = cin // ratio
        self.main_conv = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.unpool = nn.MaxUnpool2d(2)
        self.conv1 = cbp(cin, mid, 1)
        self.tconv = nn.ConvTranspose2d(mid, mid, 2, stride=2, bias=False)
        self.tconv_bn = nn.Sequential(nn.BatchNorm2d(mid), nn.PReLU(mid))
        self.conv2 = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.drop = nn.Dropout2d(dropout)
        self.act = nn.PReLU(cout)

    def forward(self, x, idx, size):
        main = self.unpool(self.main_conv(x), idx, output_size=size)
        ext = self.tconv_bn(self.tconv(self.conv1(x), output_size=size))
        ext = self.drop(self.conv2(ext))
        return self.act(main + ext)


class ENet(nn.Module):
    """Reduced ENet (after davidtvs/PyTorch-ENet): widths 16/32/64 and one or four bottlenecks per stage."""

    def __init__(self, classes=CLASSES):
        super().__init__()
        self.initial = InitialBlock(16)
        self.down1 = DownsamplingBottleneck(16, 32, dropout=0.01)
        self.stage1 = nn.Sequential(RegularBottleneck(32, dropout=0.01),
                                    RegularBottleneck(32, k=5, padding=2, asymmetric=True, dropout=0.01))
        self.down2 = DownsamplingBottleneck(32, 64)
        self.stage2 = nn.Sequential(RegularBottleneck(64), RegularBottleneck(64, dilation=2, padding=2),
                                    RegularBottleneck(64, k=5, padding=2, asymmetric=True),
                                    RegularBottleneck(64, dilation=4, padding=4))
        self.up1 = UpsamplingBottleneck(64, 32)
        self.stage3 = RegularBottleneck(32)
        self.up2 = UpsamplingBottleneck(32, 16)
        self.stage4 = RegularBottleneck(16)
        self.full = nn.ConvTranspose2d(16, classes, 3, stride=2, padding=1, bias=False)

    def forward(self, x):
        size0 = hw(x)
        x = self.initial(x)
        size1 = hw(x)
        x, idx1 = self.down1(x)
        x = self.stage1(x)
        size2 = hw(x)
        x, idx2 = self.down2(x)
        x = self.stage2(x)
        x = self.stage3(self.up1(x, idx2, size2))
        x = self.stage4(self.up2(x, idx1, size1))
        return self.full(x, output_size=size0)


# ------------------------------------------------------------------------------------ dilated ResNet-ish backbone
class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1, dilation=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, dilation, dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class DilatedBackbone(nn.Module):
    """Output stride 8: stem (stride 2) + max pool (stride 2) + layer2 (stride 2); layer3 / layer4 dilated 2 / 4."""

    def __init__(self, widths=(8, 16, 32, 64), stem_k=3, ceil_pool=False):
        super().__init__()
        self.stem = conv_bn_relu(3, widths[0], stem_k, 2)
        self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=ceil_pool)
        self.layer1 = BasicBlock(widths[0], widths[0])
        self.layer2 = BasicBlock(widths[0], widths[1], stride=2)
        self.layer3 = BasicBlock(widths[1], widths[2], dilation=2)
        self.layer4 = BasicBlock(widths[2], widths[3], dilation=4)
        self.out_channels = widths[3]

    def forward(self, x):
        x = self.pool(self.stem(x))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class DeepLabV2(nn.Module):
    """DeepLab v2: dilated backbone, ASPP as four parallel dilated 3x3 convs to the classes whose outputs are
    summed, bilinear (align_corners=True) upsampling to the input size."""

    def __init__(self, classes=CLASSES, rates=(6, 12, 18, 24)):
        super().__init__()
        self.backbone = DilatedBackbone(stem_k=7, ceil_pool=True)
        c = self.backbone.out_channels
        self.aspp = nn.ModuleList(nn.Conv2d(c, classes, 3, padding=r, dilation=r) for r in rates)

    def forward(self, x):
        f = self.backbone(x)
        y = self.aspp[0](f)
        for branch in self.aspp[1:]:
            y = y + branch(f)
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=True)


class PSPNet(nn.Module):
    """PSPNet: dilated backbone (output stride 8), pyramid pooling (AdaptiveAvgPool2d 1, 2, 3, 6 -> 1x1 conv-bn-relu
    -> bilinear upsample, concatenated with the features), 3x3 conv-bn-relu, dropout, 1x1 classifier, bilinear
    (align_corners=True) upsampling to the input size."""

    def __init__(self, classes=CLASSES, bins=(1, 2, 3, 6)):
        super().__init__()
        self.backbone = DilatedBackbone(widths=(8, 16, 32, 48))
        c = self.backbone.out_channels
        r = c // len(bins)
        self.stages = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(c, r, 1, bias=False),
                                                  nn.BatchNorm2d(r), nn.ReLU(inplace=True)) for b in bins)
        self.bottleneck = nn.Sequential(conv_bn_relu(c + r * len(bins), 24), nn.Dropout2d(0.1))
        self.cls = nn.Conv2d(24, classes, 1)

    def forward(self, x):
        f = self.backbone(x)
        size = f.shape[-2:]
        pyramid = [f] + [F.interpolate(s(f), size=size, mode="bilinear", align_corners=True) for s in self.stages]
        y = self.cls(self.bottleneck(torch.cat(pyramid, 1)))
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=True)


# ----------------------------------------------------------------------------------------------------------- FCN-8s
class FCN8s(nn.Module):
    """FCN-8s as in fcn.berkeleyvision.org voc-fcn8s (conv1_1 padded by 100, ceil-mode pools, fc6 7x7 / fc7 1x1
    convs, stride-2 / stride-8 transposed convs without bias, crops at offsets 5, 9 and 31) with small widths."""

    def __init__(self, classes=CLASSES, widths=(8, 16, 24, 32, 32), fc=40):
        super().__init__()
        convs = (2, 2, 3, 3, 3)
        self.blocks = nn.ModuleList()
        cin = 3
        for i, (w, n) in enumerate(zip(widths, convs)):
            layers = []
            for j in range(n):
                layers += [nn.Conv2d(cin, w, 3, padding=100 if i == j == 0 else 1), nn.ReLU(inplace=True)]
                cin = w
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            self.blocks.append(nn.Sequential(*layers))
        self.fc = nn.Sequential(nn.Conv2d(cin, fc, 7), nn.ReLU(inplace=True), nn.Dropout2d(),
                                nn.Conv2d(fc, fc, 1), nn.ReLU(inplace=True), nn.Dropout2d())
        self.score_fr = nn.Conv2d(fc, classes, 1)
        self.score_pool3 = nn.Conv2d(widths[2], classes, 1)
        self.score_pool4 = nn.Conv2d(widths[3], classes, 1)
        self.upscore2 = nn.ConvTranspose2d(classes, classes, 4, stride=2, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(classes, classes, 4, stride=2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(classes, classes, 16, stride=8, bias=False)

    def forward(self, x):
        h = x
        pools = []
        for block in self.blocks:
            h = block(h)
            pools.append(h)
        pool3, pool4 = pools[2], pools[3]
        up2 = self.upscore2(self.score_fr(self.fc(h)))
        s4 = self.score_pool4(pool4)[:, :, 5:5 + up2.shape[2], 5:5 + up2.shape[3]]
        up4 = self.upscore_pool4(up2 + s4)
        s3 = self.score_pool3(pool3)[:, :, 9:9 + up4.shape[2], 9:9 + up4.shape[3]]
        up8 = self.upscore8(up4 + s3)
        return up8[:, :, 31:31 + x.shape[2], 31:31 + x.shape[3]]


# ------------------------------------------------------------------------------------------------------------- UNet
class Down(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.conv = nn.Sequential(conv_bn_relu(cin, cout), conv_bn_relu(cout, cout))

    def forward(self, x):
        return self.conv(self.pool(x))


class Up(nn.Module):
    """Upsample (2x2 stride-2 transposed conv, or bilinear x2 then a 1x1 conv), F.pad to the skip's size, concat,
    double conv (as in milesial/Pytorch-UNet)."""

    def __init__(self, cin, cout, bilinear):
        super().__init__()
        if bilinear:
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                                    nn.Conv2d(cin, cin // 2, 1))
        else:
            self.up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2)
        self.conv = nn.Sequential(conv_bn_relu(cin, cout), conv_bn_relu(cout, cout))

    def forward(self, x, skip):
        x = self.up(x)
        dy = skip.size(2) - x.size(2)
        dx = skip.size(3) - x.size(3)
        x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    def __init__(self, classes=CLASSES, widths=(8, 16, 32, 64)):
        super().__init__()
        self.inc = nn.Sequential(conv_bn_relu(3, widths[0]), conv_bn_relu(widths[0], widths[0]))
        self.down = nn.ModuleList(Down(a, b) for a, b in zip(widths, widths[1:]))
        ups = []
        for i, (a, b) in enumerate(zip(reversed(widths), list(reversed(widths))[1:])):
            ups.append(Up(a, b, bilinear=(i == 0)))  # the deepest up is bilinear, the others transposed convs
        self.up = nn.ModuleList(ups)
        self.outc = nn.Conv2d(widths[0], classes, 1)

    def forward(self, x):
        x = self.inc(x)
        skips = [x]
        for d in self.down:
            x = d(x)
            skips.append(x)
        skips.pop()
        for u in self.up:
            x = u(x, skips.pop())
        return self.outc(x)


# ------------------------------------------------------------------------------------------- library-built networks
class OutOnly(nn.Module):
    """torchvision segmentation models return {"out": ...}; keep only "out"."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


TV_WIDTH_MULT = 0.25
TV_ASPP_CHANNELS = 16


def tv_deeplabv3():
    """torchvision deeplabv3_mobilenet_v3_large(num_classes=5, aux_loss=False) built from torchvision's own pieces
    with the backbone at width_mult 0.25 and the DeepLabHead's 256 channels cut to 16 (the full-width model has
    11.0 M parameters, ~44 MB of float32 weights per export, over the 25 MB limit)."""
    from torchvision.models import mobilenet_v3_large
    from torchvision.models.segmentation.deeplabv3 import ASPP, DeepLabHead, _deeplabv3_mobilenetv3

    model = _deeplabv3_mobilenetv3(mobilenet_v3_large(weights=None, dilated=True, width_mult=TV_WIDTH_MULT),
                                   CLASSES, False)
    cin = model.classifier[0].convs[0][0].in_channels
    head = DeepLabHead(cin, CLASSES)  # same layout, narrower: ASPP(cin, [12, 24, 36], 16), 3x3 conv, BN, ReLU, 1x1
    head[0] = ASPP(cin, [12, 24, 36], TV_ASPP_CHANNELS)
    head[1] = nn.Conv2d(TV_ASPP_CHANNELS, TV_ASPP_CHANNELS, 3, padding=1, bias=False)
    head[2] = nn.BatchNorm2d(TV_ASPP_CHANNELS)
    head[4] = nn.Conv2d(TV_ASPP_CHANNELS, CLASSES, 1)
    model.classifier = head
    return OutOnly(model)


SMP_KW = dict(encoder_depth=3, decoder_channels=(32, 16, 8))


def smp_mobilenet():
    import segmentation_models_pytorch as smp

    return smp.Unet("mobilenet_v2", encoder_weights=None, classes=3, **SMP_KW)


# name -> (constructor, input sizes (H, W) (one data set each), dynamic H/W, note)
NETS = {
    "segnet": (SegNet, [(45, 61)], False, "4 stages 8/16/32/32; MaxPool2d(return_indices) + MaxUnpool2d(output_size)"),
    "enet": (ENet, [(45, 61)], False,
             "reduced ENet 16/32/64; PReLU, 5x1/1x5, dilated 2/4, F.pad channels, MaxUnpool, ConvTranspose"),
    "deeplabv2": (DeepLabV2, [(45, 61)], False,
                  "dilated ResNet-ish OS8 8/16/32/64, 7x7 stem, ceil-mode max pool; ASPP 6/12/18/24 summed"),
    "fcn8s": (FCN8s, [(45, 61)], False, "VGG-like 8/16/24/32/32, fc 40; pad 100, crops 5/9/31"),
    "pspnet": (PSPNet, [(45, 93)], False,
               "dilated ResNet-ish OS8 8/16/32/48; PPM bins 1/2/3/6 on a 6x12 feature map (the TorchScript exporter "
               "only exports AdaptiveAvgPool2d when the bins divide the feature size, hence 45x93)"),
    "unet_dynamic": (UNet, [(45, 61), (37, 83)], True,
                     "UNet 8/16/32/64, deepest up bilinear x2 + 1x1 conv, others ConvTranspose2d; F.pad to the skip; "
                     "dynamic H and W"),
    "tv_deeplabv3": (tv_deeplabv3, [(53, 71)], False,
                     f"torchvision deeplabv3_mobilenet_v3_large layout, backbone width_mult {TV_WIDTH_MULT}, "
                     f"ASPP/head {TV_ASPP_CHANNELS} channels instead of 256: the full-width model is 11.0 M "
                     "parameters (~44 MB per export), over the 25 MB limit"),
    "smp_mobilenet": (smp_mobilenet, [(45, 61)], False,
                      f"segmentation_models_pytorch Unet('mobilenet_v2', encoder_weights=None, classes=3, "
                      f"{', '.join(f'{k}={v}' for k, v in SMP_KW.items())}) (depth 5 / default decoder: 26 MB)"),
}

EXPORTERS = ("ts", "dynamo")
PATTERN_OPS = {"Resize", "Upsample", "Pad", "MaxPool", "MaxUnpool", "ConvTranspose", "Slice", "AveragePool",
               "GlobalAveragePool", "ReduceMean", "Concat", "Clip", "ScatterND", "ScatterElements", "Reshape",
               "Expand", "Gather", "Squeeze", "Unsqueeze", "Dropout", "Softmax", "ArgMax", "Split", "Identity",
               "BatchNormalization", "Shape", "ConstantOfShape", "Cast", "Transpose", "Div", "Sub", "Mul"}


@contextlib.contextmanager
def quiet():
    """Silences Python and C++ writes to stdout / stderr (the exporters print graphs and progress)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def export(model, x, path, exporter, dynamic):
    """Raises what the exporter raises."""
    with quiet():
        if exporter == "ts":
            axes = {"input": {2: "height", 3: "width"}, "output": {2: "height", 3: "width"}} if dynamic else None
            torch.onnx.export(model, (x,), path, dynamo=False, opset_version=TS_OPSET, input_names=["input"],
                              output_names=["output"], dynamic_axes=axes)
        else:
            shapes = None
            if dynamic:
                h = torch.export.Dim("height", min=16, max=2048)
                w = torch.export.Dim("width", min=16, max=2048)
                shapes = ({2: h, 3: w},)
            torch.onnx.export(model, (x,), path, dynamo=True, input_names=["input"], output_names=["output"],
                              dynamic_shapes=shapes, external_data=False)


def short_path(path):
    return path.split("site-packages/")[-1] if "site-packages/" in path else os.path.relpath(path)


def retry_int_sizes(model, x, exporter, dynamic):
    """The outcome of the same export with MaxUnpool2d / ConvTranspose2d output sizes given as Python ints."""
    global INT_SIZES
    INT_SIZES = True
    path = os.path.join(OUT, ".retry.onnx")
    try:
        export(model, x, path, exporter, dynamic)
        onnx.checker.check_model(onnx.load(path), full_check=True)
        return "exports and passes the checker (not kept)"
    except Exception as e:
        return f"{type(e).__name__}: {e}".strip()[:4000]
    finally:
        INT_SIZES = False
        if os.path.exists(path):
            os.remove(path)


def producers(graph):
    """output name -> (op_type, node) for every node; initializer names -> ("initializer", tensor)."""
    out = {i.name: ("initializer", i) for i in graph.initializer}
    for n in graph.node:
        for o in n.output:
            out[o] = (n.op_type, n)
    for i in graph.input:
        out[i.name] = ("graph_input", i)
    return out


def input_kind(name, prod):
    if name == "":
        return "-"
    kind, obj = prod.get(name, ("?", None))
    if kind == "initializer":
        arr = numpy_helper.to_array(obj)
        return f"init{list(arr.shape)}" + (f"={arr.tolist()}" if arr.size <= 8 else "")
    if kind == "Constant":
        for a in obj.attribute:
            if a.name == "value":
                arr = numpy_helper.to_array(a.t)
                return f"Constant{list(arr.shape)}" + (f"={arr.tolist()}" if arr.size <= 8 else "")
        return "Constant"
    return kind  # the op that computes it at run time (or graph_input)


def attr_text(a):
    v = onnx.helper.get_attribute_value(a)
    if isinstance(v, bytes):
        v = v.decode()
    elif isinstance(v, onnx.TensorProto):
        v = numpy_helper.to_array(v).tolist()
    elif isinstance(v, list):
        v = [x.decode() if isinstance(x, bytes) else x for x in v]
    return f"{a.name}={v}"


def node_patterns(model):
    """For the ops in PATTERN_OPS: distinct (attributes, where each input comes from, output count) with counts."""
    graph = model.graph
    prod = producers(graph)
    patterns = collections.Counter()
    for n in graph.node:
        if n.op_type not in PATTERN_OPS:
            continue
        attrs = " ".join(sorted(attr_text(a) for a in n.attribute))
        ins = ", ".join(input_kind(i, prod) for i in n.input)
        outs = sum(1 for o in n.output if o)
        patterns[f"{n.op_type}({ins}) {attrs} -> {outs} output(s)".replace("  ", " ")] += 1
    return dict(sorted(patterns.items()))


def op_histogram(model):
    hist = collections.Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
                               for n in model.graph.node)
    for f in model.functions:  # should be none (both exporters inline); counted separately if not
        hist.update(f"function {f.name}:{n.op_type}" for n in f.node)
    return dict(sorted(hist.items()))


def default_opset(model):
    return next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), None)


def seed_of(name):
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def make_net(name, entry, out_dir, manifest):
    ctor, sizes, dynamic, note = entry
    seed = seed_of(name)
    torch.manual_seed(seed)
    model = ctor()
    randomize(model, seed + 1)
    model.eval()
    g = torch.Generator().manual_seed(seed + 2)
    inputs = [torch.randn(1, 3, h, w, generator=g) for h, w in sizes]
    with torch.no_grad():
        torch_outs = [model(x).float().numpy() for x in inputs]
    for exporter in EXPORTERS:
        case = f"{name}_{exporter}"
        case_dir = os.path.join(out_dir, case)
        if os.path.exists(case_dir):
            shutil.rmtree(case_dir)
        manifest["cases"].pop(case, None)
        manifest["export_failures"].pop(case, None)
        os.makedirs(case_dir)
        path = os.path.join(case_dir, "model.onnx")
        try:
            export(model, inputs[0], path, exporter, dynamic)
            if not os.path.exists(path):
                raise RuntimeError("exporter returned without writing model.onnx")
            onnx_model = onnx.load(path)
            if any(t.data_location == onnx.TensorProto.EXTERNAL for t in onnx_model.graph.initializer):
                raise RuntimeError("export wrote external data")
            onnx.checker.check_model(onnx_model, full_check=True)
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        except Exception as e:  # recorded, not worked around
            shutil.rmtree(case_dir)
            frames = traceback.extract_tb(e.__traceback__)[-4:]
            manifest["export_failures"][case] = {
                "network": name, "exporter": exporter, "error": f"{type(e).__name__}: {e}".strip()[:4000],
                "innermost_frames": [f"{short_path(f.filename)}:{f.lineno} in {f.name}" for f in frames]}
            print(f"{case}: EXPORT FAILED: {type(e).__name__}: {str(e).strip().splitlines()[0][:200]}")
            manifest["export_failures"][case]["retry_with_int_output_size"] = retry_int_sizes(model, inputs[0],
                                                                                              exporter, dynamic)
            continue
        in_name = sess.get_inputs()[0].name
        out_name = sess.get_outputs()[0].name
        data_sets = []
        for k, (x, ref) in enumerate(zip(inputs, torch_outs)):
            y = sess.run(None, {in_name: x.numpy()})[0]
            ds = os.path.join(case_dir, f"test_data_set_{k}")
            os.makedirs(ds)
            with open(os.path.join(ds, "input_0.pb"), "wb") as f:
                f.write(numpy_helper.from_array(x.numpy(), in_name).SerializeToString())
            with open(os.path.join(ds, "output_0.pb"), "wb") as f:
                f.write(numpy_helper.from_array(y, out_name).SerializeToString())
            data_sets.append({"input": list(x.shape), "outputs": [list(y.shape)],
                              "max_abs_torch_vs_ort": float(np.abs(y - ref).max()),
                              "max_abs_output": float(np.abs(y).max())})
        onnx_model = onnx.load(path)
        manifest["cases"][case] = {
            "network": name, "exporter": exporter,
            "exporter_call": "torch.onnx.export(dynamo=False)" if exporter == "ts" else "torch.onnx.export(dynamo=True)",
            "opset": default_opset(onnx_model), "dynamic_hw": dynamic, "note": note,
            "input_name": in_name, "output_name": out_name, "data_sets": data_sets,
            "file_bytes": os.path.getsize(path), "nodes": len(onnx_model.graph.node),
            "initializers": len(onnx_model.graph.initializer),
            "graph_input_shape": [d.dim_param or d.dim_value
                                  for d in onnx_model.graph.input[0].type.tensor_type.shape.dim],
            "ops": op_histogram(onnx_model), "patterns": node_patterns(onnx_model)}


def main() -> int:
    names = sys.argv[1:] or list(NETS)
    unknown = [n for n in names if n not in NETS]
    if unknown:
        print(f"unknown network(s) {unknown}; known: {list(NETS)}")
        return 2
    out_dir = OUT
    manifest_path = os.path.join(out_dir, "manifest.json")
    if sys.argv[1:] and os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    else:
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        manifest = {"cases": {}, "export_failures": {}}
    os.makedirs(out_dir, exist_ok=True)
    import torchvision  # noqa: F401  (version only)

    manifest["generated_with"] = {"torch": torch.__version__, "onnx": onnx.__version__,
                                  "onnxruntime": ort.__version__, "torchvision": torchvision.__version__,
                                  "script": "tools/make_onnx_fixtures.py"}
    try:
        import onnxscript
        import segmentation_models_pytorch as smp
        manifest["generated_with"]["onnxscript"] = onnxscript.__version__
        manifest["generated_with"]["segmentation_models_pytorch"] = smp.__version__
    except ImportError:
        pass
    for name in names:
        print(f"== {name}")
        make_net(name, NETS[name], out_dir, manifest)

    manifest["cases"] = dict(sorted(manifest["cases"].items()))
    manifest["export_failures"] = dict(sorted(manifest["export_failures"].items()))
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")

    print(f"\n{'case':24s} {'opset':>5s} {'input':>16s} {'output':>16s} {'nodes':>5s} {'KB':>6s} "
          f"{'max|torch-ort|':>14s}  ops")
    total = 0
    for case, c in manifest["cases"].items():
        ds = c["data_sets"]
        total += c["file_bytes"]
        for k, d in enumerate(ds):
            first = k == 0
            kb = f"{c['file_bytes'] / 1e3:.0f}" if first else ""
            print(f"{case if first else '':24s} {str(c['opset']) if first else '':>5s} "
                  f"{'x'.join(map(str, d['input'])):>16s} {'x'.join(map(str, d['outputs'][0])):>16s} "
                  f"{str(c['nodes']) if first else '':>5s} {kb:>6s} {d['max_abs_torch_vs_ort']:14.2e}  "
                  + (" ".join(f"{k}:{v}" for k, v in c["ops"].items()) if first else ""))
    for case, fail in manifest["export_failures"].items():
        print(f"{case:24s} FAILED: {fail['error'].splitlines()[0][:150]}")
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out_dir) for f in fs)
    print(f"\n{len(manifest['cases'])} cases, {len(manifest['export_failures'])} export failures; model.onnx files "
          f"{total / 1e6:.2f} MB, folder {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
