//! torchvision's MobileNetV3-Large `features`, dilated as in its segmentation models (`backbone.0` ...
//! `backbone.16`). Widths, kernel sizes, expansion and squeeze-excitation come from the keys; strides, activations
//! and dilations are the fixed MobileNetV3-Large table (any `width_mult`).

use super::{ConvSpec, Net};
use crate::error::{Error, Result};
use crate::ops::Activation;
use crate::weights::Prefixed;

const BN_EPS: f64 = 1e-3;

/// Stride of inverted-residual blocks 1..=15 in MobileNetV3-Large.
const STRIDES: [usize; 15] = [1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1];
/// Blocks 1..=6 use ReLU, the rest Hardswish.
const FIRST_HARDSWISH: usize = 7;
/// Blocks 13..=15 are dilated (2) in the segmentation backbone; block 13's stride 2 becomes 1.
const FIRST_DILATED: usize = 13;

/// The taps: `low` = `features[4]` (stride 8), `high` = `features[16]` (stride 16).
pub struct MobileNetV3Features {
    pub low: String,
    pub high: String,
}

pub fn mobilenet_v3_large(net: &mut Net, p: &Prefixed, x: &str) -> Result<MobileNetV3Features> {
    if !p.contains("16.0.weight") || p.contains("17.0.weight") || p.contains("17.block.0.0.weight")
    {
        return Err(Error::Model(format!(
            "expected MobileNetV3-Large features {}0 .. {}16 (17 stages): weight tensor {:?} {}",
            p.name(""),
            p.name(""),
            p.name("16.0.weight"),
            if p.contains("16.0.weight") {
                "is followed by more stages"
            } else {
                "is missing"
            }
        )));
    }
    let hs = Activation::Hardswish;
    let mut y = net.conv(
        &p.name("0"),
        x,
        &p.pp("0.0"),
        Some((&p.pp("0.1"), BN_EPS)),
        ConvSpec::same().stride(2),
        hs,
    )?;
    let mut channels = net.conv_shape(&p.pp("0.0"), "weight")?[0];
    let mut low = None;
    for i in 1..=15 {
        let act = if i < FIRST_HARDSWISH {
            Activation::Relu
        } else {
            hs
        };
        let dilation = if i >= FIRST_DILATED { 2 } else { 1 };
        let stride = STRIDES[i - 1];
        let (out, c) = inverted_residual(
            net,
            &p.pp(i).pp("block"),
            &p.name(&i.to_string()),
            &y,
            channels,
            stride,
            dilation,
            act,
        )?;
        y = out;
        channels = c;
        if i == 4 {
            low = Some(y.clone());
        }
    }
    let high = net.conv(
        &p.name("16"),
        &y,
        &p.pp("16.0"),
        Some((&p.pp("16.1"), BN_EPS)),
        ConvSpec::same(),
        hs,
    )?;
    Ok(MobileNetV3Features {
        low: low.expect("block 4 ran"),
        high,
    })
}

/// One InvertedResidual: optional 1x1 expand, depthwise kxk, optional squeeze-excitation, 1x1 project, and the
/// residual when the (configured) stride is 1 and the widths match. Returns the output and its channel count.
#[allow(clippy::too_many_arguments)]
fn inverted_residual(
    net: &mut Net,
    p: &Prefixed,
    name: &str,
    x: &str,
    in_channels: usize,
    stride: usize,
    dilation: usize,
    act: Activation,
) -> Result<(String, usize)> {
    let mut j = 0;
    let mut y = x.to_string();
    let layer = |j: usize| p.pp(j);
    if net.conv_shape(&layer(0).pp("0"), "weight")?[2..] == [1, 1] {
        y = net.conv(
            &format!("{name}.expand"),
            &y,
            &layer(0).pp("0"),
            Some((&layer(0).pp("1"), BN_EPS)),
            ConvSpec::same(),
            act,
        )?;
        j += 1;
    }
    let dw_stride = if dilation > 1 { 1 } else { stride };
    y = net.conv(
        &format!("{name}.depthwise"),
        &y,
        &layer(j).pp("0"),
        Some((&layer(j).pp("1"), BN_EPS)),
        ConvSpec::same()
            .stride(dw_stride)
            .dilation(dilation)
            .depthwise(),
        act,
    )?;
    j += 1;
    if layer(j).contains("fc1.weight") {
        let se = layer(j);
        let pooled = net
            .b
            .adaptive_avg_pool2d(&format!("{name}.se.pool"), &y, [1, 1]);
        let s = net.conv(
            &format!("{name}.se.fc1"),
            &pooled,
            &se.pp("fc1"),
            None,
            ConvSpec::same().with_bias(),
            Activation::Relu,
        )?;
        let s = net.conv(
            &format!("{name}.se.fc2"),
            &s,
            &se.pp("fc2"),
            None,
            ConvSpec::same().with_bias(),
            Activation::Hardsigmoid,
        )?;
        y = net.b.mul(&format!("{name}.se.scale"), &y, &s);
        j += 1;
    }
    let out_channels = net.conv_shape(&layer(j).pp("0"), "weight")?[0];
    y = net.conv(
        &format!("{name}.project"),
        &y,
        &layer(j).pp("0"),
        Some((&layer(j).pp("1"), BN_EPS)),
        ConvSpec::same(),
        Activation::None,
    )?;
    if stride == 1 && in_channels == out_channels {
        y = net.b.add(&format!("{name}.add"), &y, x);
    }
    Ok((y, out_channels))
}
