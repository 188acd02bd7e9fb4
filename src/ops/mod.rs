//! Op parameters and shape inference, shared by the CPU reference, the GPU kernels and the graph.
//! Nothing here touches wgpu.

mod conv;
mod elementwise;
mod encode;
mod norm;
mod pad;
mod pool;
mod preprocess;
mod resize;
mod softmax;

pub use conv::{BatchNorm, Conv2d, ConvTranspose2d, ConvWeights};
pub use elementwise::{Binary, BinaryOp, Concat, Pointwise, Unary};
pub use encode::{Encode, Encoding, MAX_PALETTE};
pub use norm::GroupNorm;
pub use pad::{PadLike, PadMode, SlicePad, SLICE_PAD_INDEX_LIMIT};
pub use pool::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d, MaxUnpool2d};
pub use preprocess::{
    ChannelOrder, ImageLayout, ImageSource, Normalize, Preprocess, TexelEncoding,
};
pub use resize::{
    CoordinateTransform, NearestRounding, OnnxAxis, Resize, ResizeMode, ResizeTarget,
    NEAREST_TIE_TOLERANCE,
};
pub use softmax::{Argmax, Softmax, Threshold};

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Activation applied in a kernel's epilogue, or standalone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    None,
    Relu,
    Relu6,
    Hardswish,
    Hardsigmoid,
    Sigmoid,
}

impl Activation {
    /// The code the shaders switch on (`apply_activation` in shaders/common.wgsl).
    pub fn code(self) -> u32 {
        match self {
            Activation::None => 0,
            Activation::Relu => 1,
            Activation::Relu6 => 2,
            Activation::Hardswish => 3,
            Activation::Hardsigmoid => 4,
            Activation::Sigmoid => 5,
        }
    }

    /// PyTorch's definition, in f64; a NaN stays NaN (Rust's `max` and `clamp` would drop or keep it unevenly).
    pub fn apply(self, x: f64) -> f64 {
        if x.is_nan() {
            return x;
        }
        let relu6 = |v: f64| v.clamp(0.0, 6.0);
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::Relu6 => relu6(x),
            Activation::Hardswish => x * relu6(x + 3.0) / 6.0,
            Activation::Hardsigmoid => relu6(x + 3.0) / 6.0,
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        }
    }

    pub const ALL: [Activation; 6] = [
        Activation::None,
        Activation::Relu,
        Activation::Relu6,
        Activation::Hardswish,
        Activation::Hardsigmoid,
        Activation::Sigmoid,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Activation::None => "none",
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
            Activation::Hardswish => "hardswish",
            Activation::Hardsigmoid => "hardsigmoid",
            Activation::Sigmoid => "sigmoid",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// Zero padding on each side of a 2-D map. PyTorch pads symmetrically; TensorFlow's "SAME" does not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Padding2d {
    pub top: usize,
    pub left: usize,
    pub bottom: usize,
    pub right: usize,
}

impl Padding2d {
    /// PyTorch's `padding=(ph, pw)`.
    pub const fn symmetric(ph: usize, pw: usize) -> Self {
        Padding2d {
            top: ph,
            left: pw,
            bottom: ph,
            right: pw,
        }
    }

    pub const fn uniform(p: usize) -> Self {
        Self::symmetric(p, p)
    }
}

/// Serde for f32 parameters that may be infinite or NaN (Clip's open bounds, a pad value of -inf), which JSON
/// numbers cannot hold: finite values as numbers, the others as the strings `"inf"`, `"-inf"` and `"nan"`.
pub(crate) mod any_f32 {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
        match *v {
            v if v.is_finite() => s.serialize_f32(v),
            v if v.is_nan() => s.serialize_str("nan"),
            v if v > 0.0 => s.serialize_str("inf"),
            _ => s.serialize_str("-inf"),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Number(f32),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Number(v) => Ok(v),
            Repr::Text(t) => match t.as_str() {
                "inf" | "+inf" | "infinity" => Ok(f32::INFINITY),
                "-inf" | "-infinity" => Ok(f32::NEG_INFINITY),
                "nan" => Ok(f32::NAN),
                _ => Err(de::Error::custom(format!(
                    "expected a number, \"inf\", \"-inf\" or \"nan\", got {t:?}"
                ))),
            },
        }
    }
}

pub(crate) fn ones() -> [usize; 2] {
    [1, 1]
}

pub(crate) fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// The largest size, channel count, kernel, stride, dilation, padding or group count any op accepts: beyond any
/// real network (a 16-million-pixel side), and small enough that the size arithmetic of every op fits in 64 bits,
/// so a hostile model file gets an error instead of an overflow, a wrapped value or a loop over its number.
pub const MAX_EXTENT: usize = 1 << 24;

/// Checks that every value is at most [`MAX_EXTENT`].
pub(crate) fn bounded(op: &'static str, what: &str, values: &[usize]) -> Result<()> {
    if let Some(v) = values.iter().find(|&&v| v > MAX_EXTENT) {
        return Err(Error::params(
            op,
            format!("{what} {values:?}: {v} is over the limit of {MAX_EXTENT}"),
        ));
    }
    Ok(())
}

/// Checks that every value is at least 1 (and at most [`MAX_EXTENT`]).
pub(crate) fn positive(op: &'static str, what: &str, values: &[usize]) -> Result<()> {
    if values.contains(&0) {
        return Err(Error::params(
            op,
            format!("{what} must be >= 1, got {values:?}"),
        ));
    }
    bounded(op, what, values)
}

/// Output length of a sliding window (conv, pool) along one axis, floor mode.
/// Errors when the dilated window is larger than the padded input.
pub(crate) fn window_out(
    op: &'static str,
    axis: &str,
    input: usize,
    pad_total: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
) -> Result<usize> {
    let span = dilation * (kernel - 1) + 1;
    let padded = input + pad_total;
    if span > padded {
        return Err(Error::params(
            op,
            format!(
                "{axis}: kernel {kernel} with dilation {dilation} spans {span}, larger than the padded input {padded} (input {input} + padding {pad_total})"
            ),
        ));
    }
    Ok((padded - span) / stride + 1)
}
