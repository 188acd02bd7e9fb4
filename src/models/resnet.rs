//! torchvision's ResNet as a segmentation backbone (`backbone.conv1`, `backbone.layer1.0.conv1`, ...): Bottleneck
//! ("v1.5", stride on the 3x3) or BasicBlock, told apart by `conv3`; block counts and widths from the keys. ResNeXt
//! is the same network with a grouped 3x3, its group count read from the weight shapes.

use super::{ConvSpec, Net};
use crate::error::{Error, Result};
use crate::ops::{Activation, MaxPool2d};
use crate::weights::Prefixed;

const BN_EPS: f64 = 1e-5;

/// The backbone's taps: `layer3` ("aux") and `layer4` ("out").
pub struct ResNetFeatures {
    pub layer3: String,
    pub layer4: String,
}

/// The ResNet under `p` applied to `x`. `replace_stride_with_dilation` is torchvision's argument for layers 2-4
/// (`[false, true, true]` in its segmentation models: output stride 8).
pub fn resnet(
    net: &mut Net,
    p: &Prefixed,
    x: &str,
    replace_stride_with_dilation: [bool; 3],
) -> Result<ResNetFeatures> {
    let f = resnet_stages(
        net,
        p,
        x,
        Dilation::Torchvision(replace_stride_with_dilation),
        5,
    )?;
    Ok(ResNetFeatures {
        layer3: f[3].clone(),
        layer4: f[4].clone(),
    })
}

/// How a ResNet trades strides for dilation.
#[derive(Clone, Copy, Debug)]
pub enum Dilation {
    /// torchvision's `replace_stride_with_dilation` for layers 2-4: the first block of a dilated layer keeps the
    /// previous dilation.
    Torchvision([bool; 3]),
    /// smp's `make_dilated(output_stride)`: every conv of a stage whose stride exceeds the output stride (block 0
    /// and its downsample too) gets stride 1 and dilation `stage_stride / output_stride`. 32 means none.
    Smp { output_stride: usize },
}

/// The ResNet's features `[relu(bn1) (stride 2), layer1 (4), layer2 (8), layer3 (16), layer4 (32)]`, the first
/// `depth` of them (smp's `encoder_depth`; layers past it are absent from smp's state_dicts).
pub fn resnet_stages(
    net: &mut Net,
    p: &Prefixed,
    x: &str,
    dilation_mode: Dilation,
    depth: usize,
) -> Result<Vec<String>> {
    let stem = net.conv(
        &p.name("conv1"),
        x,
        &p.pp("conv1"),
        Some((&p.pp("bn1"), BN_EPS)),
        ConvSpec::same().stride(2),
        Activation::Relu,
    )?;
    let mut taps = vec![stem.clone()];
    let mut y = net.b.max_pool2d(
        &p.name("maxpool"),
        &stem,
        MaxPool2d {
            stride: [2, 2],
            padding: [1, 1],
            ..MaxPool2d::new([3, 3])
        },
    );
    let mut dilation = 1;
    for layer in 1..depth.min(5) {
        let lp = p.pp(format!("layer{layer}"));
        let blocks = (0..)
            .take_while(|i| lp.contains(&format!("{i}.conv1.weight")))
            .count();
        if blocks == 0 {
            return Err(Error::Model(format!(
                "weight tensor {:?} is missing: not a ResNet backbone",
                lp.name("0.conv1.weight")
            )));
        }
        let mut stride = if layer == 1 { 1 } else { 2 };
        let previous_dilation = dilation;
        let mut first_dilation = previous_dilation;
        match dilation_mode {
            Dilation::Torchvision(replace) => {
                if layer > 1 && replace[layer - 2] {
                    dilation *= stride;
                    stride = 1;
                }
            }
            Dilation::Smp { output_stride } => {
                let stage_stride = 2usize << layer;
                if stage_stride > output_stride {
                    dilation = stage_stride / output_stride;
                    first_dilation = dilation;
                    stride = 1;
                }
            }
        }
        for i in 0..blocks {
            let (s, d) = if i == 0 {
                (stride, first_dilation)
            } else {
                (1, dilation)
            };
            y = block(net, &lp.pp(i), &y, s, d)?;
        }
        taps.push(y.clone());
    }
    Ok(taps)
}

/// One Bottleneck or BasicBlock: `relu(convs(x) + identity)`, with `downsample.{0,1}` when present.
fn block(net: &mut Net, p: &Prefixed, x: &str, stride: usize, dilation: usize) -> Result<String> {
    let bn = |i: usize| p.pp(format!("bn{i}"));
    let bottleneck = p.contains("conv3.weight");
    let y = if bottleneck {
        // ResNeXt: conv2's weight is [width, width / groups, 3, 3] on conv1's `width` outputs.
        let width = net.conv_shape(&p.pp("conv1"), "weight")?[0];
        let per_group = net.conv_shape(&p.pp("conv2"), "weight")?[1];
        if per_group == 0 || width % per_group != 0 {
            return Err(Error::Model(format!(
                "weight tensor {:?} takes {per_group} input channels a group; {:?} gives {width}",
                p.name("conv2.weight"),
                p.name("conv1.weight")
            )));
        }
        let y = net.conv(
            &p.name("conv1"),
            x,
            &p.pp("conv1"),
            Some((&bn(1), BN_EPS)),
            ConvSpec::same(),
            Activation::Relu,
        )?;
        let y = net.conv(
            &p.name("conv2"),
            &y,
            &p.pp("conv2"),
            Some((&bn(2), BN_EPS)),
            ConvSpec::same()
                .stride(stride)
                .dilation(dilation)
                .groups(width / per_group),
            Activation::Relu,
        )?;
        net.conv(
            &p.name("conv3"),
            &y,
            &p.pp("conv3"),
            Some((&bn(3), BN_EPS)),
            ConvSpec::same(),
            Activation::None,
        )?
    } else {
        let y = net.conv(
            &p.name("conv1"),
            x,
            &p.pp("conv1"),
            Some((&bn(1), BN_EPS)),
            ConvSpec::same().stride(stride).dilation(dilation),
            Activation::Relu,
        )?;
        net.conv(
            &p.name("conv2"),
            &y,
            &p.pp("conv2"),
            Some((&bn(2), BN_EPS)),
            ConvSpec::same().dilation(dilation),
            Activation::None,
        )?
    };
    let identity = if p.contains("downsample.0.weight") {
        // A 1x1 conv: dilation changes nothing, padding stays 0.
        net.conv(
            &p.name("downsample"),
            x,
            &p.pp("downsample.0"),
            Some((&p.pp("downsample.1"), BN_EPS)),
            ConvSpec::same().stride(stride).padding(0),
            Activation::None,
        )?
    } else {
        x.to_string()
    };
    let sum = net.b.add(&p.name("add"), &y, &identity);
    Ok(net.act(&sum, Activation::Relu))
}
