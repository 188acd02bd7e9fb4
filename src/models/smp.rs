//! segmentation_models_pytorch (smp) on its ResNet and ResNeXt encoders (`encoder.conv1`, `encoder.layer1.0.conv1`, ...):
//! Unet, DeepLabV3, DeepLabV3Plus, Linknet, PSPNet and FPN ([`super::fpn`]),
//! `forward = segmentation_head(decoder(encoder(x)))`.
//!
//! smp's `save_pretrained` folders (`config.json` with `_model_class`, `model.safetensors`) are read by [`open_dir`];
//! a bare state_dict is built with smp's defaults for the class (see [`SmpConfig::defaults`]).

use super::resnet::{resnet_stages, Dilation};
use super::{ConvSpec, Net};
use crate::error::{Error, Result};
use crate::graph::ConvWeightNames;
use crate::model::{InputSize, Model, ModelInfo, PreprocessSpec};
use crate::ops::{Activation, ChannelOrder, ConvTranspose2d, Resize, ResizeMode, ResizeTarget};
use crate::weights::{Prefixed, Weights};
use std::path::Path;

const BN_EPS: f64 = 1e-5;

/// The smp ResNet and ResNeXt encoders atrous builds.
pub const ENCODERS: &[&str] = &[
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x4d",
    "resnext101_32x8d",
    "resnext101_32x16d",
    "resnext101_32x32d",
    "resnext101_32x48d",
];

/// smp's model classes (`_model_class`) and atrous's architecture names for them.
pub const CLASSES: &[(&str, &str)] = &[
    ("Unet", "smp_unet"),
    ("DeepLabV3", "smp_deeplabv3"),
    ("DeepLabV3Plus", "smp_deeplabv3plus"),
    ("Linknet", "smp_linknet"),
    ("PSPNet", "smp_pspnet"),
    ("FPN", "smp_fpn"),
];

const ALIGNED: ResizeMode = ResizeMode::Bilinear {
    align_corners: true,
};

/// What the graph needs from an smp `config.json` (smp's `__init__` arguments).
#[derive(Clone, Debug)]
pub struct SmpConfig {
    /// `_model_class`: `Unet`, `DeepLabV3`, ...
    pub class: String,
    /// `encoder_name`, when known.
    pub encoder: Option<String>,
    pub encoder_depth: usize,
    /// `encoder_output_stride` (DeepLabV3: 8, DeepLabV3Plus: 16); 32 for the others.
    pub output_stride: usize,
    pub atrous_rates: [usize; 3],
    /// `upsampling` of the segmentation head (1: none).
    pub upsampling: usize,
    /// `decoder_interpolation` (Unet's upsampling, FPN's top-down path).
    pub interpolation: String,
    /// FPN's `decoder_merge_policy`: `add` or `cat`.
    pub merge_policy: String,
}

impl SmpConfig {
    /// smp's defaults for `class`.
    pub fn defaults(class: &str) -> Result<Self> {
        let (depth, os, up) = match class {
            "Unet" | "Linknet" => (5, 32, 1),
            "DeepLabV3" => (5, 8, 8),
            "DeepLabV3Plus" => (5, 16, 4),
            "PSPNet" => (3, 32, 8),
            "FPN" => (5, 32, 4),
            other => {
                return Err(Error::Model(format!(
                    "smp model class {other:?} is not supported; supported: {}",
                    CLASSES.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
                )))
            }
        };
        Ok(SmpConfig {
            class: class.to_string(),
            encoder: None,
            encoder_depth: depth,
            output_stride: os,
            atrous_rates: [12, 24, 36],
            upsampling: up,
            interpolation: "nearest".into(),
            merge_policy: "add".into(),
        })
    }

    /// Reads a `config.json` written by smp's `save_pretrained`.
    pub fn from_json(text: &str) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::Model(format!("smp config.json: {e}")))?;
        let class = v
            .get("_model_class")
            .and_then(|c| c.as_str())
            .ok_or_else(|| Error::Model("smp config.json has no \"_model_class\" string".into()))?;
        let mut cfg = Self::defaults(class)?;
        let uint = |k: &str| v.get(k).and_then(|x| x.as_u64()).map(|x| x as usize);
        cfg.encoder = v
            .get("encoder_name")
            .and_then(|x| x.as_str())
            .map(str::to_string);
        if let Some(d) = uint("encoder_depth") {
            cfg.encoder_depth = d;
        }
        if let Some(os) = uint("encoder_output_stride") {
            cfg.output_stride = os;
        }
        if let Some(u) = uint("upsampling") {
            cfg.upsampling = u;
        } else if class == "DeepLabV3" {
            cfg.upsampling = cfg.output_stride;
        }
        if let Some(r) = v.get("decoder_atrous_rates").and_then(|r| r.as_array()) {
            let r: Vec<usize> = r
                .iter()
                .filter_map(|x| x.as_u64())
                .map(|x| x as usize)
                .collect();
            cfg.atrous_rates = r.try_into().map_err(|r| {
                Error::Model(format!(
                    "smp config.json: decoder_atrous_rates {r:?}: three rates expected"
                ))
            })?;
        }
        if let Some(i) = v.get("decoder_interpolation").and_then(|x| x.as_str()) {
            cfg.interpolation = i.to_string();
        }
        if let Some(m) = v.get("decoder_merge_policy").and_then(|x| x.as_str()) {
            cfg.merge_policy = m.to_string();
        }
        if let Some(a) = v.get("decoder_attention_type").filter(|a| !a.is_null()) {
            return Err(Error::Model(format!(
                "smp Unet with decoder_attention_type {a} is not supported (only null)"
            )));
        }
        // `aux_params` (a classification head) is not part of the segmentation output: ignored.
        Ok(cfg)
    }

    /// atrous's architecture name for this class.
    pub fn architecture(&self) -> &'static str {
        CLASSES
            .iter()
            .find(|c| c.0 == self.class)
            .map_or("smp", |c| c.1)
    }
}

/// smp's defaults for `class`, with the encoder depth of a Unet or Linknet read from its decoder's block count:
/// what a bare state_dict (no `config.json`) is built with.
pub fn config_from_keys(weights: &Weights, class: &str) -> Result<SmpConfig> {
    let mut cfg = SmpConfig::defaults(class)?;
    let block = match class {
        "Unet" => Some("conv1.0.weight"),
        "Linknet" => Some("block.0.0.weight"),
        _ => None,
    };
    if let Some(block) = block {
        let n = (0..)
            .take_while(|i| weights.contains(&format!("decoder.blocks.{i}.{block}")))
            .count();
        if n > 0 {
            cfg.encoder_depth = n;
        }
    }
    Ok(cfg)
}

/// The smp class for an atrous architecture name (`smp_unet` -> `Unet`).
pub fn class_of(arch: &str) -> Option<&'static str> {
    CLASSES.iter().find(|c| c.1 == arch).map(|c| c.0)
}

/// Opens an smp `save_pretrained` folder: `config.json` and `model.safetensors`.
pub fn open_dir(dir: &Path) -> Result<Model> {
    let config = dir.join("config.json");
    let text = std::fs::read_to_string(&config).map_err(|e| Error::File {
        path: config.clone(),
        message: format!(
            "{e} (an smp save_pretrained folder holds config.json and model.safetensors)"
        ),
    })?;
    let cfg = SmpConfig::from_json(&text).map_err(|e| Error::File {
        path: config.clone(),
        message: e.to_string(),
    })?;
    let weights = Weights::open(dir.join("model.safetensors"))?;
    build(weights, &cfg)
}

/// The smp class a state_dict's key names fit (`None`: not smp).
pub fn detect(weights: &Weights) -> Option<Result<String>> {
    let has = |n: &str| weights.contains(n);
    let class = if has("decoder.blocks.0.conv1.0.weight") {
        "Unet"
    } else if has("decoder.aspp.0.convs.0.0.weight") {
        "DeepLabV3Plus"
    } else if has("decoder.aspp.convs.0.0.weight") || has("decoder.0.convs.0.0.weight") {
        "DeepLabV3"
    } else if has("decoder.blocks.0.block.0.0.weight") {
        "Linknet"
    } else if has("decoder.psp.blocks.0.pool.1.0.weight") {
        "PSPNet"
    } else if has("decoder.p5.weight") {
        "FPN"
    } else {
        return None;
    };
    Some(SmpConfig::defaults(class).map(|c| c.architecture().to_string()))
}

/// Builds an smp model from its state_dict and configuration.
pub fn build(weights: Weights, cfg: &SmpConfig) -> Result<Model> {
    if let Some(e) = &cfg.encoder {
        if !ENCODERS.contains(&e.as_str()) {
            return Err(Error::Model(format!(
                "smp encoder {e:?} is not supported; atrous builds smp's ResNet and ResNeXt encoders: {}",
                ENCODERS.join(", ")
            )));
        }
    }
    let root = weights.root();
    let enc = root.pp("encoder");
    if !enc.contains("conv1.weight") || !enc.contains("layer1.0.conv1.weight") {
        return Err(Error::Model(format!(
            "weight tensor \"encoder.layer1.0.conv1.weight\" is missing{}: not an smp ResNet encoder (supported: {})",
            weights
                .path()
                .map_or(String::new(), |p| format!(" in {}", p.display())),
            ENCODERS.join(", ")
        )));
    }
    if !(3..=5).contains(&cfg.encoder_depth) && cfg.class != "Unet" && cfg.class != "Linknet" {
        return Err(Error::Model(format!(
            "smp {}: encoder_depth {} is not supported",
            cfg.class, cfg.encoder_depth
        )));
    }
    let depth = cfg.encoder_depth;
    let mut model = {
        let mut net = Net::new();
        let channels = net.conv_shape(&enc.pp("conv1"), "weight")?[1];
        let x = net.b.input("input", channels);
        let mut feats = vec![x.clone()];
        feats.extend(resnet_stages(
            &mut net,
            &enc,
            &x,
            Dilation::Smp {
                output_stride: cfg.output_stride,
            },
            depth,
        )?);
        let dec = root.pp("decoder");
        let y = match cfg.class.as_str() {
            "Unet" => unet(&mut net, &dec, &feats, &cfg.interpolation)?,
            "DeepLabV3" => deeplabv3(&mut net, &root, &feats, cfg)?,
            "DeepLabV3Plus" => deeplabv3plus(&mut net, &dec, &feats, cfg)?,
            "Linknet" => linknet(&mut net, &dec, &feats)?,
            "PSPNet" => pspnet(&mut net, &dec, &feats)?,
            "FPN" => super::fpn::decoder(
                &mut net,
                &dec,
                &feats,
                &cfg.merge_policy,
                &cfg.interpolation,
            )?,
            other => {
                return Err(SmpConfig::defaults(other)
                    .err()
                    .unwrap_or_else(|| Error::Model(format!("smp {other} is not supported"))))
            }
        };
        let head = root.pp("segmentation_head.0");
        let head_name = if cfg.upsampling > 1 {
            "segmentation_head"
        } else {
            "out"
        };
        let logits = net.conv(
            head_name,
            &y,
            &head,
            None,
            ConvSpec::same().with_bias(),
            Activation::None,
        )?;
        if cfg.upsampling > 1 {
            let f = cfg.upsampling as f64;
            net.b.resize(
                "out",
                &logits,
                Resize {
                    mode: ALIGNED,
                    target: ResizeTarget::Scale([f, f]),
                },
            );
        }
        net.finish("out")?
    };
    let multiple = (1usize << depth).min(cfg.output_stride);
    model.weights = weights;
    model.info = ModelInfo {
        architecture: Some(cfg.architecture().to_string()),
        preprocess: Some(PreprocessSpec {
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            value_range: [0.0, 1.0],
            channel_order: ChannelOrder::Rgb,
            input_size: InputSize::Original {
                multiple_of: multiple,
            },
        }),
        labels: Vec::new(),
        palette: Vec::new(),
    };
    Ok(model)
}

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
fn unet(net: &mut Net, dec: &Prefixed, feats: &[String], interpolation: &str) -> Result<String> {
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
fn deeplabv3(net: &mut Net, root: &Prefixed, feats: &[String], cfg: &SmpConfig) -> Result<String> {
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
fn deeplabv3plus(
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
fn linknet(net: &mut Net, dec: &Prefixed, feats: &[String]) -> Result<String> {
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
fn pspnet(net: &mut Net, dec: &Prefixed, feats: &[String]) -> Result<String> {
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
