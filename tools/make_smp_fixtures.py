"""Writes tests/fixtures/smp: tiny segmentation_models_pytorch models (resnet18 encoder, every width divided by
SHRINK after construction, random weights and batch-norm statistics), each saved with smp's save_pretrained into
<name>/ plus <name>/io.safetensors holding `input` and PyTorch's `expected` logits.

Run from the repository root: python tools/make_smp_fixtures.py [NAME...] (all fixtures when no name is given)
"""

import os
import sys

import segmentation_models_pytorch as smp
import torch
from safetensors.torch import save_file
from torch import nn

OUT = "tests/fixtures/smp"
SHRINK = 8


def narrow(n, k=None):
    return max(1, n // (k or SHRINK))


def shrink(module, keep_out, k=None, first=None):
    """Replaces every conv / transposed conv / batch-norm with one SHRINK times narrower (input channels 3 and the
    head's class count are kept), so the state_dict keeps smp's key layout with small shapes."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Conv2d):
            cin = child.in_channels if child is first else narrow(child.in_channels, k)
            cout = child.out_channels if child is keep_out else narrow(child.out_channels, k)
            # Depthwise stays depthwise; a grouped conv (ResNeXt) keeps channels / group and loses groups.
            groups = cin if child.groups == child.in_channels > 1 else max(1, child.groups // (k or SHRINK))
            new = nn.Conv2d(cin, cout, child.kernel_size, child.stride, child.padding, child.dilation, groups,
                            child.bias is not None)
            setattr(module, name, new)
        elif isinstance(child, nn.ConvTranspose2d):
            new = nn.ConvTranspose2d(narrow(child.in_channels, k), narrow(child.out_channels, k), child.kernel_size,
                                     child.stride, child.padding, child.output_padding, 1, child.bias is not None)
            setattr(module, name, new)
        elif isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.BatchNorm2d(narrow(child.num_features, k)))
        elif isinstance(child, nn.GroupNorm):
            # smp hard-codes 32 groups: the narrowed width must stay a multiple of it.
            setattr(module, name, nn.GroupNorm(child.num_groups, narrow(child.num_channels, k)))
        else:
            shrink(child, keep_out, k, first)


def randomize(model):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            elif isinstance(m, nn.GroupNorm):
                m.weight.copy_(torch.rand(m.num_channels, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_channels, generator=g) * 0.2)
            elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_in = m.weight[0].numel() if isinstance(m, nn.Conv2d) else m.weight.shape[0] * m.weight[0, 0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


def tame_residuals(model):
    """Bottleneck stacks grow the residual stream block after block; a smaller last BN scale keeps logits O(10)."""
    with torch.no_grad():
        for name, m in model.named_modules():
            if name.endswith("bn3"):
                m.weight.mul_(0.2)


def make_one(name, model, shape, k=None, half=False):
    """With `half`, the weights are rounded to f16 before PyTorch runs (in f32) and saved as f16: half the bytes,
    the same reference, and atrous's f16 weight reading on the path."""
    torch.manual_seed(1)
    head = model.segmentation_head[0]
    # The first conv keeps its input channels (3, or a multispectral model's band count).
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    shrink(model, head, k, first)
    randomize(model)
    tame_residuals(model)
    model.eval()
    if half:
        with torch.no_grad():
            for t in list(model.parameters()) + list(model.buffers()):
                if t.is_floating_point():
                    t.copy_(t.half().float())
    x = torch.randn(*shape)
    with torch.no_grad():
        y = model(x)
    d = os.path.join(OUT, name)
    (model.half() if half else model).save_pretrained(d)
    os.remove(os.path.join(d, "README.md"))
    save_file({"input": x.contiguous(), "expected": y.contiguous()}, os.path.join(d, "io.safetensors"))
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"{name}: in {tuple(x.shape)} out {tuple(y.shape)} |y|max {y.abs().max():.2f} {size / 1e3:.0f} kB")


def main():
    enc = dict(encoder_name="resnet18", encoder_weights=None, in_channels=3)
    wanted = set(sys.argv[1:])

    def make(name, *args, **kwargs):
        if not wanted or name in wanted:
            make_one(name, *args, **kwargs)

    make("unet", smp.Unet(**enc, classes=3, encoder_depth=4, decoder_channels=(128, 64, 32, 16)), (2, 3, 48, 80))
    make("unet_d5", smp.Unet(**enc, classes=2), (1, 3, 64, 96))
    make("deeplabv3", smp.DeepLabV3(**enc, classes=4), (1, 3, 40, 56))
    make("linknet", smp.Linknet(**enc, classes=3), (1, 3, 64, 96))
    make("pspnet", smp.PSPNet(**enc, classes=3), (2, 3, 48, 72))
    # Bottleneck encoder, dilated (every conv of layer3/layer4 at stride 1), rates small enough to reach real pixels.
    make("deeplabv3_r50", smp.DeepLabV3(encoder_name="resnet50", encoder_weights=None, classes=3,
                                        decoder_atrous_rates=(1, 2, 3)), (1, 3, 72, 88), k=32)
    make("deeplabv3plus", smp.DeepLabV3Plus(**enc, classes=5), (1, 3, 64, 80))
    # ResNeXt: grouped 3x3s (32 groups narrow to 2).
    make("unet_resnext", smp.Unet(encoder_name="resnext50_32x4d", encoder_weights=None, classes=2, encoder_depth=4,
                                  decoder_channels=(64, 32, 16, 16)), (1, 3, 48, 64), k=16, half=True)
    # Segmentation channels 512 narrow to 64: GroupNorm(32, 64), two channels a group. At depth 4, smp's FPN still
    # takes the last four features (strides 2-16), so its output is twice the input's size.
    # Four input bands (e.g. Sentinel-2 B4, B3, B2, B8): the first conv's weight is [64/8, 4, 7, 7].
    make("unet_4band", smp.Unet(encoder_name="resnet18", encoder_weights=None, in_channels=4, classes=3,
                                encoder_depth=4, decoder_channels=(64, 32, 16, 16)), (1, 4, 32, 48), half=True)
    make("fpn", smp.FPN(**enc, classes=3, decoder_segmentation_channels=512), (1, 3, 64, 96),
         half=True)
    make("fpn_cat", smp.FPN(**enc, classes=2, encoder_depth=4, decoder_segmentation_channels=512,
                            decoder_merge_policy="cat", decoder_interpolation="bilinear"), (1, 3, 48, 80), half=True)


if __name__ == "__main__":
    main()
