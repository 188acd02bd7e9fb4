//! The model zoo: graphs built from PyTorch state_dicts (safetensors) by their key names, with channel widths and
//! class counts read from the tensors' shapes.
//!
//! - torchvision: `deeplabv3_resnet50`, `deeplabv3_resnet101`, `deeplabv3_mobilenet_v3_large`, `fcn_resnet50`,
//!   `fcn_resnet101`, `lraspp_mobilenet_v3_large` ([`torchvision`], on the [`resnet`] and [`mobilenetv3`]
//!   backbones). Auxiliary heads are ignored.
//! - milesial/Pytorch-UNet: `unet`, transposed or bilinear upsampling, told apart by its keys ([`unet`]).
//! - segmentation_models_pytorch on ResNet encoders: `smp_unet`, `smp_deeplabv3`, `smp_deeplabv3plus`,
//!   `smp_linknet`, `smp_pspnet`, `smp_fpn` ([`smp`], [`fpn`]); `save_pretrained` folders open with [`open`].
//!
//! Every graph has one input `input` (NCHW) and one output `out`: the logits at the input's resolution.
//! Block counts are read from the keys too, so shallow variants (as in the test fixtures) build with the same code.

pub mod fpn;
pub mod mobilenetv3;
pub mod resnet;
pub mod smp;
mod smp_decoders;
pub mod torchvision;
pub mod unet;

use crate::error::{Error, Result};
use crate::graph::{BatchNormNames, ConvWeightNames, GraphBuilder};
use crate::model::Model;
use crate::ops::{Activation, Conv2d, GroupNorm, Padding2d};
use crate::weights::{Prefixed, Weights};

/// One architecture of the zoo: its name (`--arch`, the metadata key `architecture`) and how its graph is built from
/// a state_dict.
pub struct Architecture {
    pub name: &'static str,
    build: fn(Weights, &str) -> Result<Model>,
}

fn build_smp(weights: Weights, arch: &str) -> Result<Model> {
    let class = smp::class_of(arch).expect("registered smp architectures have a class");
    let cfg = smp::config_from_keys(&weights, class)?;
    smp::build(weights, &cfg)
}

/// The registry of the zoo: every architecture [`build`] knows, in one place. Detection from key names is
/// [`detect`]; ONNX files, portable models and smp folders need no architecture ([`open`]).
pub const REGISTRY: &[Architecture] = &[
    Architecture {
        name: "deeplabv3_resnet50",
        build: torchvision::build,
    },
    Architecture {
        name: "deeplabv3_resnet101",
        build: torchvision::build,
    },
    Architecture {
        name: "deeplabv3_mobilenet_v3_large",
        build: torchvision::build,
    },
    Architecture {
        name: "fcn_resnet50",
        build: torchvision::build,
    },
    Architecture {
        name: "fcn_resnet101",
        build: torchvision::build,
    },
    Architecture {
        name: "lraspp_mobilenet_v3_large",
        build: torchvision::build,
    },
    Architecture {
        name: "unet",
        build: |w, _| unet::build(w),
    },
    Architecture {
        name: "smp_unet",
        build: build_smp,
    },
    Architecture {
        name: "smp_deeplabv3",
        build: build_smp,
    },
    Architecture {
        name: "smp_deeplabv3plus",
        build: build_smp,
    },
    Architecture {
        name: "smp_linknet",
        build: build_smp,
    },
    Architecture {
        name: "smp_pspnet",
        build: build_smp,
    },
    Architecture {
        name: "smp_fpn",
        build: build_smp,
    },
];

/// The names of the architectures [`build`] knows, in registry order.
pub fn architectures() -> Vec<&'static str> {
    REGISTRY.iter().map(|a| a.name).collect()
}

/// The one front door for model files: opens `path` once and picks the reader. An smp `save_pretrained` folder
/// (`config.json` names the class; `arch` must not contradict it), an ONNX file (`.onnx`; its graph is in the file,
/// so `arch` is refused), a model in atrous's portable format (`arch`, if given, must be the one it was built as),
/// or a PyTorch state_dict built with [`build`]. Errors name the file.
pub fn open(path: &std::path::Path, arch: Option<&str>) -> Result<Model> {
    let in_file = |e: Error| match e {
        Error::File { .. } => e,
        other => Error::File {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    };
    if path.is_dir() {
        let model = smp::open_dir(path).map_err(in_file)?;
        model.check_weights().map_err(in_file)?;
        return Ok(model);
    }
    if crate::onnx::is_onnx_path(path) {
        if let Some(arch) = arch {
            return Err(in_file(Error::Model(format!(
                "--arch {arch}: an ONNX file carries its own graph; omit --arch"
            ))));
        }
        return crate::onnx::load(path);
    }
    let weights = Weights::open(path)?;
    if weights
        .metadata()
        .is_some_and(|m| m.contains_key(crate::model::METADATA_KEY))
    {
        let model = Model::from_portable(path, weights)?;
        if let (Some(arch), Some(built)) = (arch, model.info.architecture.as_deref()) {
            if arch != built {
                return Err(in_file(Error::Model(format!(
                    "--arch {arch}: this atrous model was built as {built}; omit --arch"
                ))));
            }
        }
        return Ok(model);
    }
    build(weights, arch).map_err(in_file)
}

/// The safetensors metadata key naming the architecture (written by tools/export.py).
pub const ARCHITECTURE_KEY: &str = "architecture";

/// Builds a model from a state_dict: the architecture is `arch`, else the file's metadata `architecture`, else
/// detected from the key names. Labels in the metadata (`labels`, a JSON list) are kept.
pub fn build(weights: Weights, arch: Option<&str>) -> Result<Model> {
    let from_metadata = weights
        .metadata()
        .and_then(|m| m.get(ARCHITECTURE_KEY))
        .cloned();
    let arch = match arch.map(str::to_string).or(from_metadata) {
        Some(a) => a,
        None => detect(&weights)?,
    };
    let labels: Vec<String> = weights
        .metadata()
        .and_then(|m| m.get("labels"))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_default();
    let entry = REGISTRY.iter().find(|a| a.name == arch).ok_or_else(|| {
        Error::Model(format!(
            "unknown architecture {arch:?}; supported: {}",
            architectures().join(", ")
        ))
    })?;
    let mut model = (entry.build)(weights, &arch)?;
    if !labels.is_empty() {
        model.info.labels = labels;
    }
    model.check_weights()?;
    Ok(model)
}

/// The architecture a state_dict's key names fit, or an error listing the supported ones and what was found.
pub fn detect(weights: &Weights) -> Result<String> {
    let has = |name: &str| weights.contains(name);
    let resnet_depth = || {
        let blocks = (0..)
            .take_while(|i| has(&format!("backbone.layer3.{i}.conv1.weight")))
            .count();
        if blocks >= 23 {
            "resnet101"
        } else {
            "resnet50"
        }
    };
    if has("encoder.conv1.weight") || weights.names().iter().any(|n| n.starts_with("encoder.")) {
        if let Some(arch) = smp::detect(weights) {
            return arch;
        }
    }
    let arch = if has("backbone.conv1.weight") && has("classifier.0.convs.0.0.weight") {
        format!("deeplabv3_{}", resnet_depth())
    } else if has("backbone.conv1.weight") && has("classifier.0.weight") {
        format!("fcn_{}", resnet_depth())
    } else if has("backbone.0.0.weight") && has("classifier.0.convs.0.0.weight") {
        "deeplabv3_mobilenet_v3_large".into()
    } else if has("backbone.0.0.weight") && has("classifier.cbr.0.weight") {
        "lraspp_mobilenet_v3_large".into()
    } else if has("inc.double_conv.0.weight") && has("outc.conv.weight") {
        "unet".into()
    } else {
        let names = weights.names();
        let shown: Vec<&str> = names.iter().take(8).map(String::as_str).collect();
        return Err(Error::Model(format!(
            "cannot tell the architecture from the tensor names (found {} tensors: {}{}); supported: {}. Name it \
             with --arch, or in the safetensors metadata key {ARCHITECTURE_KEY:?}",
            names.len(),
            shown.join(", "),
            if names.len() > shown.len() { ", ..." } else { "" },
            architectures().join(", ")
        )));
    };
    Ok(arch)
}

/// A graph under construction from a state_dict, with helpers that read shapes from its key names.
#[derive(Default)]
pub struct Net {
    pub b: GraphBuilder,
}

/// How a convolution is applied: stride, padding, dilation, groups.
#[derive(Clone, Copy, Debug)]
pub struct ConvSpec {
    pub stride: usize,
    /// Symmetric padding; `usize::MAX` (the default) means `(k - 1) / 2 * dilation`, PyTorch's "same" for odd k.
    pub padding: usize,
    pub dilation: usize,
    /// Depthwise: groups = output channels = input channels.
    pub depthwise: bool,
    /// Groups of a grouped (not depthwise) convolution, e.g. ResNeXt's 3x3; 1 for a plain one.
    pub groups: usize,
    /// The architecture has a bias here: `<conv>.bias` must exist (without this flag it is used when present).
    pub bias: bool,
}

impl ConvSpec {
    /// Stride 1, "same" padding for the kernel read from the weights, no dilation.
    pub const fn same() -> Self {
        ConvSpec {
            stride: 1,
            padding: usize::MAX,
            dilation: 1,
            depthwise: false,
            groups: 1,
            bias: false,
        }
    }

    pub const fn with_bias(mut self) -> Self {
        self.bias = true;
        self
    }

    pub const fn stride(mut self, s: usize) -> Self {
        self.stride = s;
        self
    }

    pub const fn dilation(mut self, d: usize) -> Self {
        self.dilation = d;
        self
    }

    pub const fn padding(mut self, p: usize) -> Self {
        self.padding = p;
        self
    }

    pub const fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }

    pub const fn depthwise(mut self) -> Self {
        self.depthwise = true;
        self
    }
}

impl Net {
    pub fn new() -> Self {
        Self::default()
    }

    /// A 4-D conv weight's shape `[out, in/groups, kh, kw]`; errors name the tensor.
    pub fn conv_shape(&self, p: &Prefixed, what: &str) -> Result<[usize; 4]> {
        let shape = p.shape(what)?;
        match shape[..] {
            [o, i, kh, kw] => Ok([o, i, kh, kw]),
            _ => Err(Error::Model(format!(
                "weight tensor {:?} has shape {shape:?}; expected a 4-D convolution weight",
                p.name(what)
            ))),
        }
    }

    /// A convolution whose weight is `conv.weight` (and `conv.bias` when present), followed by the batch-norm under
    /// `bn` (folded into the conv), then `act` as a separate node (the plan fuses it). Returns the output tensor.
    pub fn conv(
        &mut self,
        name: &str,
        x: &str,
        conv: &Prefixed,
        bn: Option<(&Prefixed, f64)>,
        spec: ConvSpec,
        act: Activation,
    ) -> Result<String> {
        let [out, in_per_group, kh, kw] = self.conv_shape(conv, "weight")?;
        let groups = if spec.depthwise { out } else { spec.groups };
        if groups == 0 || out % groups != 0 {
            return Err(Error::Model(format!(
                "weight tensor {:?} has shape {:?}: {out} output channels do not split into {groups} groups",
                conv.name("weight"),
                [out, in_per_group, kh, kw]
            )));
        }
        if spec.depthwise && in_per_group != 1 {
            return Err(Error::Model(format!(
                "weight tensor {:?} has shape {:?}; a depthwise convolution needs [C, 1, kh, kw]",
                conv.name("weight"),
                [out, in_per_group, kh, kw]
            )));
        }
        let padding = if spec.padding == usize::MAX {
            Padding2d::symmetric((kh - 1) / 2 * spec.dilation, (kw - 1) / 2 * spec.dilation)
        } else {
            Padding2d::uniform(spec.padding)
        };
        let params = Conv2d {
            stride: [spec.stride; 2],
            padding,
            dilation: [spec.dilation; 2],
            groups,
            ..Conv2d::new(in_per_group * groups, out, [kh, kw])
        };
        let weights = ConvWeightNames {
            weight: conv.name("weight"),
            bias: (spec.bias || conv.contains("bias")).then(|| conv.name("bias")),
            batch_norm: bn.map(|(p, eps)| BatchNormNames::torch(&bare(p), eps)),
        };
        let y = self.b.conv2d_named(name, x, None, params, weights);
        Ok(self.act(&y, act))
    }

    /// PyTorch's `GroupNorm(groups, C)` under `norm` (`weight`, `bias`; C read from the weight), then `act` (fused
    /// by the plan).
    pub fn group_norm(
        &mut self,
        name: &str,
        x: &str,
        norm: &Prefixed,
        groups: usize,
        act: Activation,
    ) -> Result<String> {
        let channels = match norm.shape("weight")?[..] {
            [c] if c % groups == 0 => c,
            ref shape => {
                return Err(Error::Model(format!(
                    "weight tensor {:?} has shape {shape:?}; expected [C] with C a multiple of {groups} groups",
                    norm.name("weight")
                )))
            }
        };
        let y = self.b.group_norm_named(
            name,
            x,
            GroupNorm::new(groups, channels),
            &norm.name("weight"),
            &norm.name("bias"),
        );
        Ok(self.act(&y, act))
    }

    /// `act(x)` as a separate node named `<x>.<act>`, or `x` itself for no activation.
    pub fn act(&mut self, x: &str, act: Activation) -> String {
        match act {
            Activation::None => x.to_string(),
            a => self.b.activation(&format!("{x}.{}", a.name()), x, a),
        }
    }

    /// The graph with output `out`, without weights: the caller moves in the weights this net borrowed.
    pub fn finish(self, out: &str) -> Result<Model> {
        self.b.finish(&[out])
    }
}

/// `Prefixed::name("")` yields `prefix.`; batch-norm names want the bare prefix.
pub fn bare(p: &Prefixed) -> String {
    p.name("").trim_end_matches('.').to_string()
}
