//! segmentation_models_pytorch (smp) on its ResNet and ResNeXt encoders (`encoder.conv1`, `encoder.layer1.0.conv1`, ...):
//! Unet, DeepLabV3, DeepLabV3Plus, Linknet, PSPNet ([`super::smp_decoders`]) and FPN ([`super::fpn`]),
//! `forward = segmentation_head(decoder(encoder(x)))`.
//!
//! smp's `save_pretrained` folders (`config.json` with `_model_class`, `model.safetensors`) are read by [`open_dir`];
//! a bare state_dict is built with smp's defaults for the class (see [`SmpConfig::defaults`]).

use super::resnet::{resnet_stages, Dilation};
use super::smp_decoders as decoders;
use super::{ConvSpec, Net};
use crate::error::{Error, Result};
use crate::model::{InputSize, Model, ModelInfo, PreprocessSpec};
use crate::ops::{Activation, ChannelOrder, Resize, ResizeMode, ResizeTarget};
use crate::weights::Weights;
use std::path::Path;

pub(super) const BN_EPS: f64 = 1e-5;

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

pub(super) const ALIGNED: ResizeMode = ResizeMode::Bilinear {
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
            "Unet" => decoders::unet(&mut net, &dec, &feats, &cfg.interpolation)?,
            "DeepLabV3" => decoders::deeplabv3(&mut net, &root, &feats, cfg)?,
            "DeepLabV3Plus" => decoders::deeplabv3plus(&mut net, &dec, &feats, cfg)?,
            "Linknet" => decoders::linknet(&mut net, &dec, &feats)?,
            "PSPNet" => decoders::pspnet(&mut net, &dec, &feats)?,
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
            bands: None,
        }),
        labels: Vec::new(),
        palette: Vec::new(),
    };
    Ok(model)
}
