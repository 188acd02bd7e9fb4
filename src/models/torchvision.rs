//! torchvision's segmentation models: DeepLabV3 and FCN on ResNet-50/101, DeepLabV3 and LR-ASPP on
//! MobileNetV3-Large. `out = interpolate(classifier(backbone(x)), size=input, bilinear, align_corners=False)`;
//! `aux_classifier.*` is ignored.

use super::mobilenetv3::mobilenet_v3_large;
use super::resnet::resnet;
use super::{ConvSpec, Net};
use crate::error::{Error, Result};
use crate::model::{InputSize, Model, ModelInfo, PreprocessSpec};
use crate::ops::{Activation, ChannelOrder, ResizeMode};
use crate::weights::{Prefixed, Weights};

const HEAD_BN_EPS: f64 = 1e-5;
/// torchvision's ASPP rates for every DeepLabV3 it builds.
const ASPP_RATES: [usize; 3] = [12, 24, 36];

/// The 21 Pascal VOC classes of torchvision's pretrained segmentation weights.
pub const VOC_LABELS: [&str; 21] = [
    "__background__",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
];

/// torchvision's `SemanticSegmentation(resize_size=520)` preset.
pub fn preprocess() -> PreprocessSpec {
    PreprocessSpec {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        value_range: [0.0, 1.0],
        channel_order: ChannelOrder::Rgb,
        input_size: InputSize::ShorterSide { size: 520 },
        bands: None,
    }
}

const BILINEAR: ResizeMode = ResizeMode::Bilinear {
    align_corners: false,
};

/// Builds one of the six torchvision architectures from its state_dict.
pub fn build(weights: Weights, arch: &str) -> Result<Model> {
    let (kind, trunk) = arch
        .split_once('_')
        .ok_or_else(|| Error::Model(format!("unknown torchvision architecture {arch:?}")))?;
    let mut model = {
        let mut net = Net::new();
        let root = weights.root();
        let bb = root.pp("backbone");
        let cls = root.pp("classifier");
        let (x, logits) = match (kind, trunk) {
            ("deeplabv3" | "fcn", "resnet50" | "resnet101") => {
                let x = input(&mut net, &bb.pp("conv1"))?;
                // layer3 feeds only the ignored aux head.
                let layer4 = resnet(&mut net, &bb, &x, [false, true, true])?.layer4;
                let logits = if kind == "deeplabv3" {
                    deeplab_head(&mut net, &cls, &layer4)?
                } else {
                    fcn_head(&mut net, &cls, &layer4)?
                };
                (x, logits)
            }
            ("deeplabv3" | "lraspp", "mobilenet_v3_large") => {
                let x = input(&mut net, &bb.pp("0.0"))?;
                let f = mobilenet_v3_large(&mut net, &bb, &x)?;
                let logits = if kind == "deeplabv3" {
                    deeplab_head(&mut net, &cls, &f.high)?
                } else {
                    lraspp_head(&mut net, &cls, &f.low, &f.high)?
                };
                (x, logits)
            }
            _ => {
                return Err(Error::Model(format!(
                    "unknown torchvision architecture {arch:?}"
                )))
            }
        };
        net.b.resize_like("out", &logits, &x, BILINEAR);
        net.finish("out")?
    };
    let classes = model
        .graph
        .nodes
        .iter()
        .rev()
        .find_map(|n| match &n.op {
            crate::graph::Op::Conv2d { params, .. } => Some(params.out_channels),
            _ => None,
        })
        .unwrap_or(0);
    model.weights = weights;
    model.info = ModelInfo {
        architecture: Some(arch.to_string()),
        preprocess: Some(preprocess()),
        labels: if classes == VOC_LABELS.len() {
            VOC_LABELS.iter().map(|s| s.to_string()).collect()
        } else {
            Vec::new()
        },
        palette: Vec::new(),
    };
    Ok(model)
}

/// The graph input, with the channel count of the first convolution.
fn input(net: &mut Net, first_conv: &Prefixed) -> Result<String> {
    let channels = net.conv_shape(first_conv, "weight")?[1];
    Ok(net.b.input("input", channels))
}

/// `DeepLabHead`: ASPP (`0`), 3x3 conv (`1`) + BN (`2`) + ReLU, 1x1 classifier (`4`).
fn deeplab_head(net: &mut Net, p: &Prefixed, x: &str) -> Result<String> {
    let y = aspp(net, &p.pp("0"), x)?;
    let y = net.conv(
        &p.name("1"),
        &y,
        &p.pp("1"),
        Some((&p.pp("2"), HEAD_BN_EPS)),
        ConvSpec::same(),
        Activation::Relu,
    )?;
    net.conv(
        &p.name("4"),
        &y,
        &p.pp("4"),
        None,
        ConvSpec::same().with_bias(),
        Activation::None,
    )
}

/// `ASPP`: `convs.0` 1x1, `convs.1..=3` 3x3 dilated by the rates, `convs.4` image pooling; concatenated, then
/// `project` 1x1 + BN + ReLU (its dropout is the identity at inference).
fn aspp(net: &mut Net, p: &Prefixed, x: &str) -> Result<String> {
    let branches = (0..)
        .take_while(|i| {
            p.contains(&format!("convs.{i}.0.weight")) || p.contains(&format!("convs.{i}.1.weight"))
        })
        .count();
    if branches != ASPP_RATES.len() + 2 {
        return Err(Error::Model(format!(
            "ASPP {:?} has {branches} branches ({:?} ...); torchvision's has {} (1x1, rates {ASPP_RATES:?}, pooling)",
            super::bare(p),
            p.name("convs.0.0.weight"),
            ASPP_RATES.len() + 2
        )));
    }
    let bn = |i: usize| p.pp(format!("convs.{i}.1"));
    let mut outs = vec![net.conv(
        &p.name("convs.0"),
        x,
        &p.pp("convs.0.0"),
        Some((&bn(0), HEAD_BN_EPS)),
        ConvSpec::same(),
        Activation::Relu,
    )?];
    for (i, rate) in ASPP_RATES.into_iter().enumerate() {
        let i = i + 1;
        outs.push(net.conv(
            &p.name(&format!("convs.{i}")),
            x,
            &p.pp(format!("convs.{i}.0")),
            Some((&bn(i), HEAD_BN_EPS)),
            ConvSpec::same().dilation(rate),
            Activation::Relu,
        )?);
    }
    let pool = p.pp(format!("convs.{}", branches - 1));
    let pooled = net.b.adaptive_avg_pool2d(&pool.name("pool"), x, [1, 1]);
    let pooled = net.conv(
        &super::bare(&pool),
        &pooled,
        &pool.pp("1"),
        Some((&pool.pp("2"), HEAD_BN_EPS)),
        ConvSpec::same(),
        Activation::Relu,
    )?;
    outs.push(
        net.b
            .resize_like(&pool.name("upsample"), &pooled, x, BILINEAR),
    );
    let refs: Vec<&str> = outs.iter().map(String::as_str).collect();
    let cat = net.b.concat(&p.name("cat"), &refs);
    net.conv(
        &p.name("project"),
        &cat,
        &p.pp("project.0"),
        Some((&p.pp("project.1"), HEAD_BN_EPS)),
        ConvSpec::same(),
        Activation::Relu,
    )
}

/// `FCNHead`: 3x3 conv (`0`) + BN (`1`) + ReLU, dropout, 1x1 classifier (`4`).
fn fcn_head(net: &mut Net, p: &Prefixed, x: &str) -> Result<String> {
    let y = net.conv(
        &p.name("0"),
        x,
        &p.pp("0"),
        Some((&p.pp("1"), HEAD_BN_EPS)),
        ConvSpec::same(),
        Activation::Relu,
    )?;
    net.conv(
        &p.name("4"),
        &y,
        &p.pp("4"),
        None,
        ConvSpec::same().with_bias(),
        Activation::None,
    )
}

/// `LRASPPHead`: `cbr(high) * scale(high)`, bilinear to `low`'s size, then
/// `low_classifier(low) + high_classifier(x)`.
fn lraspp_head(net: &mut Net, p: &Prefixed, low: &str, high: &str) -> Result<String> {
    let x = net.conv(
        &p.name("cbr"),
        high,
        &p.pp("cbr.0"),
        Some((&p.pp("cbr.1"), HEAD_BN_EPS)),
        ConvSpec::same(),
        Activation::Relu,
    )?;
    let pooled = net
        .b
        .adaptive_avg_pool2d(&p.name("scale.pool"), high, [1, 1]);
    let s = net.conv(
        &p.name("scale"),
        &pooled,
        &p.pp("scale.1"),
        None,
        ConvSpec::same(),
        Activation::Sigmoid,
    )?;
    let x = net.b.mul(&p.name("mul"), &x, &s);
    let x = net.b.resize_like(&p.name("upsample"), &x, low, BILINEAR);
    let l = net.conv(
        &p.name("low_classifier"),
        low,
        &p.pp("low_classifier"),
        None,
        ConvSpec::same().with_bias(),
        Activation::None,
    )?;
    let h = net.conv(
        &p.name("high_classifier"),
        &x,
        &p.pp("high_classifier"),
        None,
        ConvSpec::same().with_bias(),
        Activation::None,
    )?;
    Ok(net.b.add(&p.name("add"), &l, &h))
}
