//! The decoders of segmentation_models_pytorch's Unet, DeepLabV3, DeepLabV3Plus, Linknet and PSPNet, on the features
//! of an smp encoder ([`super::smp`] builds the encoder and the head; FPN's decoder is [`super::fpn`]).

use super::smp::{SmpConfig, ALIGNED, BN_EPS};
use super::{ConvSpec, Net};
use crate::error::{Error, Result};
use crate::graph::ConvWeightNames;
use crate::ops::{Activation, ConvTranspose2d, Resize, ResizeMode, ResizeTarget};
use crate::weights::Prefixed;

/// `Conv2dReLU`: conv `.0` (bias only without norm), BN `.1` when present, ReLU.
fn conv_relu(net: &mut Net, p: &Prefixed, x: &str) -> Result<String> {
    let bn = p.pp("1");
    let has_bn = bn.contains("running_mean");
    net.conv(
        &super::bare(p),
        x,
        &p.pp("0"),
        has_bn.then_some((&bn, BN_EPS)),
        ConvSpec::same(),
        Activation::Relu,
    )
}

/// `SeparableConv2d` under `p` (`.0` depthwise, `.1` pointwise), then the BN `bn` and ReLU.
fn separable(
    net: &mut Net,
    p: &Prefixed,
    bn: &Prefixed,
    x: &str,
    dilation: usize,
) -> Result<String> {
    let name = super::bare(p);
    let y = net.conv(
        &format!("{name}.depthwise"),
        x,
        &p.pp("0"),
        None,
        ConvSpec::same().dilation(dilation).depthwise(),
        Activation::None,
    )?;
    net.conv(
        &name,
        &y,
        &p.pp("1"),
        Some((bn, BN_EPS)),
        ConvSpec::same(),
        Activation::Relu,
    )
}

/// The resize of smp's `decoder_interpolation` for `class`: PyTorch's `F.interpolate` modes atrous has.
pub(super) fn decoder_interpolation(class: &str, mode: &str) -> Result<ResizeMode> {
    match mode {
        "nearest" => Ok(ResizeMode::Nearest),
        "bilinear" => Ok(ResizeMode::Bilinear {
            align_corners: false,
        }),
        other => Err(Error::Model(format!(
            "smp {class} decoder_interpolation {other:?} is not supported (nearest, bilinear)"
        ))),
    }
}

/// Unet: each block resizes to the next feature's size, concatenates `[up, skip]`, then conv1, conv2.
pub(super) fn unet(
    net: &mut Net,
    dec: &Prefixed,
    feats: &[String],
    interpolation: &str,
) -> Result<String> {
    let mode = decoder_interpolation("Unet", interpolation)?;
    let d = feats.len() - 1;
    let blocks = (0..)
        .take_while(|i| dec.contains(&format!("blocks.{i}.conv1.0.weight")))
        .count();
    if blocks != d {
        return Err(Error::Model(format!(
            "smp Unet: {blocks} decoder blocks (decoder.blocks.*) for encoder depth {d}"
        )));
    }
    let mut y = feats[d].clone();
    if dec.contains("center.0.0.weight") {
        y = conv_relu(net, &dec.pp("center.0"), &y)?;
        y = conv_relu(net, &dec.pp("center.1"), &y)?;
    }
    for i in 0..blocks {
        let bp = dec.pp(format!("blocks.{i}"));
        let target = &feats[d - 1 - i];
        let up = net.b.resize_like(&bp.name("up"), &y, target, mode);
        let x = if i + 1 < d {
            net.b.concat(&bp.name("cat"), &[&up, target])
        } else {
            up
        };
        let x = conv_relu(net, &bp.pp("conv1"), &x)?;
        y = conv_relu(net, &bp.pp("conv2"), &x)?;
    }
    Ok(y)
}

/// smp's ASPP: `convs.0` 1x1, `convs.1..=3` (separable or plain) 3x3 at the rates, `convs.4` image pooling
/// (broadcast back), concatenated, `project` 1x1 + BN + ReLU.
fn aspp(net: &mut Net, p: &Prefixed, x: &str, rates: [usize; 3]) -> Result<String> {
    let mut outs = vec![conv_relu(net, &p.pp("convs.0"), x)?];
    for (i, rate) in rates.into_iter().enumerate() {
        let c = p.pp(format!("convs.{}", i + 1));
        outs.push(if c.contains("0.0.weight") {
            separable(net, &c.pp("0"), &c.pp("1"), x, rate)?
        } else {
            net.conv(
                &super::bare(&c),
                x,
                &c.pp("0"),
                Some((&c.pp("1"), BN_EPS)),
                ConvSpec::same().dilation(rate),
                Activation::Relu,
            )?
        });
    }
    let pool = p.pp("convs.4");
    let pooled = net.b.adaptive_avg_pool2d(&pool.name("pool"), x, [1, 1]);
    let pooled = net.conv(
        &super::bare(&pool),
        &pooled,
        &pool.pp("1"),
        Some((&pool.pp("2"), BN_EPS)),
        ConvSpec::same(),
        Activation::Relu,
    )?;
    outs.push(net.b.resize_like(
        &pool.name("upsample"),
        &pooled,
        x,
        ResizeMode::Bilinear {
            align_corners: false,
        },
    ));
    let refs: Vec<&str> = outs.iter().map(String::as_str).collect();
    let cat = net.b.concat(&p.name("cat"), &refs);
    conv_relu(net, &p.pp("project"), &cat)
}

/// DeepLabV3: ASPP, 3x3 conv + BN + ReLU (`decoder.aspp/conv/bn`, or v0.4's `decoder.0/1/2`).
pub(super) fn deeplabv3(
    net: &mut Net,
    root: &Prefixed,
    feats: &[String],
    cfg: &SmpConfig,
) -> Result<String> {
    let x = feats.last().expect("features");
    let (a, c, b) = if root.contains("decoder.aspp.convs.0.0.weight") {
        ("decoder.aspp", "decoder.conv", "decoder.bn")
    } else {
        ("decoder.0", "decoder.1", "decoder.2")
    };
    let y = aspp(net, &root.pp(a), x, cfg.atrous_rates)?;
    net.conv(
        "decoder.conv",
        &y,
        &root.pp(c),
        Some((&root.pp(b), BN_EPS)),
        ConvSpec::same(),
        Activation::Relu,
    )
}

/// DeepLabV3Plus: `aspp` = [ASPP, separable 3x3, BN, ReLU], bilinear up (align_corners=True); `block1` 1x1 on the
/// stride-4 features; `cat [aspp, highres]`; `block2` = [separable 3x3, BN, ReLU].
pub(super) fn deeplabv3plus(
    net: &mut Net,
    dec: &Prefixed,
    feats: &[String],
    cfg: &SmpConfig,
) -> Result<String> {
    let x = feats.last().expect("features");
    let y = aspp(net, &dec.pp("aspp.0"), x, cfg.atrous_rates)?;
    let y = separable(net, &dec.pp("aspp.1"), &dec.pp("aspp.2"), &y, 1)?;
    let f = if cfg.output_stride == 16 && cfg.encoder_depth > 3 {
        4.0
    } else {
        2.0
    };
    let up = net.b.resize(
        "decoder.up",
        &y,
        Resize {
            mode: ALIGNED,
            target: ResizeTarget::Scale([f, f]),
        },
    );
    let high = net.conv(
        "decoder.block1",
        &feats[2],
        &dec.pp("block1.0"),
        Some((&dec.pp("block1.1"), BN_EPS)),
        ConvSpec::same(),
        Activation::Relu,
    )?;
    let cat = net.b.concat("decoder.cat", &[&up, &high]);
    separable(net, &dec.pp("block2.0"), &dec.pp("block2.1"), &cat, 1)
}

/// Linknet: blocks of [1x1 Conv2dReLU, ConvTranspose2d(4, s2, p1) + BN + ReLU, 1x1 Conv2dReLU], plus the skip.
pub(super) fn linknet(net: &mut Net, dec: &Prefixed, feats: &[String]) -> Result<String> {
    let d = feats.len() - 1;
    let blocks = (0..)
        .take_while(|i| dec.contains(&format!("blocks.{i}.block.0.0.weight")))
        .count();
    let mut y = feats[d].clone();
    for i in 0..blocks {
        let bp = dec.pp(format!("blocks.{i}.block"));
        let x = conv_relu(net, &bp.pp("0"), &y)?;
        let t = bp.pp("1");
        let [cin, cout, kh, kw] = net.conv_shape(&t.pp("0"), "weight")?;
        let params = ConvTranspose2d {
            padding: [1, 1],
            ..ConvTranspose2d::new(cin, cout, [kh, kw], [2, 2])
        };
        let bn = t.pp("1");
        let names = ConvWeightNames {
            weight: t.name("0.weight"),
            bias: t.contains("0.bias").then(|| t.name("0.bias")),
            batch_norm: bn
                .contains("running_mean")
                .then(|| crate::graph::BatchNormNames::torch(&super::bare(&bn), BN_EPS)),
        };
        let x = net
            .b
            .conv_transpose2d_named(&super::bare(&t), &x, params, names);
        let x = net.act(&x, Activation::Relu);
        let x = conv_relu(net, &bp.pp("2"), &x)?;
        y = if i + 1 < d {
            net.b
                .add(&dec.name(&format!("blocks.{i}.add")), &x, &feats[d - 1 - i])
        } else {
            x
        };
    }
    Ok(y)
}

/// PSPNet: pyramid pooling (1, 2, 3, 6 bins, 1x1 Conv2dReLU each, bilinear back with align_corners=True),
/// `cat [p1, p2, p3, p6, x]`, `decoder.conv` 1x1 Conv2dReLU.
pub(super) fn pspnet(net: &mut Net, dec: &Prefixed, feats: &[String]) -> Result<String> {
    let x = feats.last().expect("features");
    let mut outs = Vec::new();
    for (i, size) in [1usize, 2, 3, 6].into_iter().enumerate() {
        let bp = dec.pp(format!("psp.blocks.{i}.pool"));
        let pooled = net.b.adaptive_avg_pool2d(&bp.name("avg"), x, [size, size]);
        let y = conv_relu(net, &bp.pp("1"), &pooled)?;
        outs.push(net.b.resize_like(&bp.name("up"), &y, x, ALIGNED));
    }
    outs.push(x.clone());
    let refs: Vec<&str> = outs.iter().map(String::as_str).collect();
    let cat = net.b.concat("decoder.psp.cat", &refs);
    conv_relu(net, &dec.pp("conv"), &cat)
}
