//! The classic UNet of milesial/Pytorch-UNet: `inc`, `down1..4` (max-pool 2 then DoubleConv), `up1..4`
//! (transposed 2x2 stride-2 convolution, or bilinear x2 with align_corners=True, then `cat([skip, up])` and a
//! DoubleConv), `outc` 1x1. Widths, class count, depth and the upsampling variant come from the keys.
//!
//! PyTorch pads the upsampled map to the skip's size (`F.pad`, the odd row and column at the bottom and right), so
//! any input size works; the padding is zero where every level's size is even (sides multiple of `2^depth`).

use super::{ConvSpec, Net};
use crate::error::{Error, Result};
use crate::graph::ConvWeightNames;
use crate::model::{InputSize, Model, ModelInfo, PreprocessSpec};
use crate::ops::{Activation, ChannelOrder, ConvTranspose2d, MaxPool2d, ResizeMode, ResizeTarget};
use crate::weights::{Prefixed, Weights};

const BN_EPS: f64 = 1e-5;

pub fn build(weights: Weights) -> Result<Model> {
    let root = weights.root();
    let depth = (1..)
        .take_while(|k| root.contains(&format!("down{k}.maxpool_conv.1.double_conv.0.weight")))
        .count();
    if depth == 0 {
        return Err(Error::Model(format!(
            "weight tensor \"down1.maxpool_conv.1.double_conv.0.weight\" is missing{}: not a milesial UNet",
            weights
                .path()
                .map_or(String::new(), |p| format!(" in {}", p.display()))
        )));
    }
    let mut model = {
        let mut net = Net::new();
        let channels = net.conv_shape(&root.pp("inc.double_conv.0"), "weight")?[1];
        let x = net.b.input("input", channels);
        let mut skips = vec![double_conv(&mut net, &root.pp("inc"), "inc", &x)?];
        for k in 1..=depth {
            let name = format!("down{k}");
            let pooled = net.b.max_pool2d(
                &format!("{name}.pool"),
                skips.last().expect("inc"),
                MaxPool2d::new([2, 2]),
            );
            let p = root.pp(&name).pp("maxpool_conv.1");
            skips.push(double_conv(&mut net, &p, &name, &pooled)?);
        }
        let mut y = skips.pop().expect("depth >= 1");
        for k in 1..=depth {
            let name = format!("up{k}");
            let p = root.pp(&name);
            let skip = skips.pop().expect("one skip per level");
            let up = if p.contains("up.weight") {
                let [cin, cout, kh, kw] = net.conv_shape(&p.pp("up"), "weight")?;
                let params = ConvTranspose2d::new(cin, cout, [kh, kw], [2, 2]);
                let weights = ConvWeightNames {
                    weight: p.name("up.weight"),
                    bias: Some(p.name("up.bias")),
                    batch_norm: None,
                };
                net.b
                    .conv_transpose2d_named(&format!("{name}.up"), &y, params, weights)
            } else {
                net.b.resize(
                    &format!("{name}.up"),
                    &y,
                    crate::ops::Resize {
                        mode: ResizeMode::Bilinear {
                            align_corners: true,
                        },
                        target: ResizeTarget::Scale([2.0, 2.0]),
                    },
                )
            };
            let up = net.b.pad_like(&format!("{name}.pad"), &up, &skip);
            let cat = net.b.concat(&format!("{name}.cat"), &[&skip, &up]);
            y = double_conv(&mut net, &p.pp("conv"), &format!("{name}.conv"), &cat)?;
        }
        net.conv(
            "out",
            &y,
            &root.pp("outc.conv"),
            None,
            ConvSpec::same().with_bias(),
            Activation::None,
        )?;
        net.finish("out")?
    };
    model.weights = weights;
    model.info = ModelInfo {
        architecture: Some("unet".into()),
        preprocess: Some(PreprocessSpec {
            mean: [0.0; 3],
            std: [1.0; 3],
            value_range: [0.0, 1.0],
            channel_order: ChannelOrder::Rgb,
            input_size: InputSize::Original { multiple_of: 1 },
            bands: None,
        }),
        labels: Vec::new(),
        palette: Vec::new(),
    };
    Ok(model)
}

/// `DoubleConv`: (3x3 conv, BN, ReLU) twice, keys `double_conv.{0,1,3,4}`.
fn double_conv(net: &mut Net, p: &Prefixed, name: &str, x: &str) -> Result<String> {
    let p = p.pp("double_conv");
    let y = net.conv(
        &format!("{name}.0"),
        x,
        &p.pp("0"),
        Some((&p.pp("1"), BN_EPS)),
        ConvSpec::same(),
        Activation::Relu,
    )?;
    net.conv(
        &format!("{name}.3"),
        &y,
        &p.pp("3"),
        Some((&p.pp("4"), BN_EPS)),
        ConvSpec::same(),
        Activation::Relu,
    )
}
