//! Convolution and transposed convolution parameters.

use super::{is_default, ones, positive, window_out, Activation, Padding2d};

fn one() -> usize {
    1
}
use crate::error::{Error, Result};
use crate::tensor::Shape;
use serde::{Deserialize, Serialize};

/// `torch.nn.Conv2d` plus a fused epilogue: bias, folded batch-norm, residual add, activation, and writing at a
/// channel offset of a larger output (concatenation without a copy).
///
/// Epilogue order: `act(bn(conv(x) + bias) + residual)`, as ResNet and MobileNet blocks compute it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conv2d {
    pub in_channels: usize,
    pub out_channels: usize,
    /// (kh, kw)
    pub kernel: [usize; 2],
    #[serde(default = "ones")]
    pub stride: [usize; 2],
    #[serde(default, skip_serializing_if = "is_default")]
    pub padding: Padding2d,
    #[serde(default = "ones")]
    pub dilation: [usize; 2],
    #[serde(default = "one")]
    pub groups: usize,
    #[serde(default, skip_serializing_if = "is_default")]
    pub activation: Activation,
    /// Add a tensor of the output's shape before the activation.
    #[serde(default, skip_serializing_if = "is_default")]
    pub residual: bool,
    /// Set by the planner, never stored: the residual lives in the destination itself (the conv was its last
    /// reader), so each output is read as the residual and overwritten. Needs `residual` and no channel offset.
    #[serde(skip)]
    pub residual_in_place: bool,
    /// Write channel `c` of the result to channel `c + out_channel_offset` of the destination.
    #[serde(default, skip_serializing_if = "is_default")]
    pub out_channel_offset: usize,
    /// Channels of the destination tensor; `None` means `out_channels`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_channels_total: Option<usize>,
}

impl Conv2d {
    /// A plain convolution: stride 1, no padding, no dilation, one group, no epilogue.
    pub fn new(in_channels: usize, out_channels: usize, kernel: [usize; 2]) -> Self {
        Conv2d {
            in_channels,
            out_channels,
            kernel,
            stride: [1, 1],
            padding: Padding2d::default(),
            dilation: [1, 1],
            groups: 1,
            activation: Activation::None,
            residual: false,
            residual_in_place: false,
            out_channel_offset: 0,
            out_channels_total: None,
        }
    }

    pub fn dest_channels(&self) -> usize {
        self.out_channels_total.unwrap_or(self.out_channels)
    }

    /// One filter per channel: `groups == in_channels == out_channels`.
    pub fn is_depthwise(&self) -> bool {
        self.groups == self.in_channels && self.groups == self.out_channels
    }

    /// Whether a kernel reads the residual through a binding of its own (not at all without one, or from the
    /// destination when it is in place).
    pub fn residual_bound_apart(&self) -> bool {
        self.residual && !self.residual_in_place
    }

    /// The conv shaders' `has_residual`: 0 none, 1 a tensor of its own, 2 the destination itself (in place).
    pub fn residual_code(&self) -> u32 {
        match (self.residual, self.residual_in_place) {
            (false, _) => 0,
            (true, false) => 1,
            (true, true) => 2,
        }
    }

    /// PyTorch's weight shape `[out, in / groups, kh, kw]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.in_channels / self.groups.max(1),
            self.kernel[0],
            self.kernel[1],
        ]
    }

    /// Multiply-adds count two: `2 * N * out * H_out * W_out * in / groups * kh * kw`.
    pub fn flops(&self, input: Shape) -> u64 {
        let out = self.output_shape(input).map_or(0, |s| s.n * s.h * s.w) as u64;
        2 * out
            * self.out_channels as u64
            * self.weight_shape()[1..].iter().product::<usize>() as u64
    }

    /// Validates the parameters against `input` and returns the shape of the destination tensor.
    pub fn output_shape(&self, input: Shape) -> Result<Shape> {
        const OP: &str = "conv2d";
        positive(OP, "kernel", &self.kernel)?;
        positive(OP, "stride", &self.stride)?;
        positive(OP, "dilation", &self.dilation)?;
        positive(OP, "groups", &[self.groups])?;
        positive(OP, "channels", &[self.in_channels, self.out_channels])?;
        if self.in_channels % self.groups != 0 || self.out_channels % self.groups != 0 {
            return Err(Error::params(
                OP,
                format!(
                    "groups {} must divide in_channels {} and out_channels {}",
                    self.groups, self.in_channels, self.out_channels
                ),
            ));
        }
        if input.c != self.in_channels {
            return Err(Error::shape(
                OP,
                format!(
                    "expects {} input channels, input is {input}",
                    self.in_channels
                ),
            ));
        }
        positive(OP, "input size", &[input.n, input.h, input.w])?;
        let p = self.padding;
        super::bounded(OP, "padding", &[p.top, p.left, p.bottom, p.right])?;
        let h = window_out(
            OP,
            "height",
            input.h,
            p.top + p.bottom,
            self.kernel[0],
            self.stride[0],
            self.dilation[0],
        )?;
        let w = window_out(
            OP,
            "width",
            input.w,
            p.left + p.right,
            self.kernel[1],
            self.stride[1],
            self.dilation[1],
        )?;
        let total = self.dest_channels();
        if self.residual_in_place && (!self.residual || total != self.out_channels) {
            return Err(Error::params(
                OP,
                "an in-place residual needs a residual and a destination of the output's own channels",
            ));
        }
        if self.out_channel_offset + self.out_channels > total {
            return Err(Error::params(
                OP,
                format!(
                    "writing {} channels at offset {} overflows a destination of {total} channels",
                    self.out_channels, self.out_channel_offset
                ),
            ));
        }
        Ok(Shape::new(input.n, total, h, w))
    }
}

/// Eval-mode batch normalisation: `(x - mean) / sqrt(var + eps) * weight + bias`.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub running_mean: Vec<f32>,
    pub running_var: Vec<f32>,
    pub eps: f64,
}

impl BatchNorm {
    /// Per-channel (scale, shift) such that `bn(x) = x * scale + shift`, in f64.
    pub fn scale_shift(&self, c: usize) -> (f64, f64) {
        let scale = self.weight[c] as f64 / (self.running_var[c] as f64 + self.eps).sqrt();
        (
            scale,
            self.bias[c] as f64 - self.running_mean[c] as f64 * scale,
        )
    }

    pub fn check(&self, op: &'static str, channels: usize) -> Result<()> {
        for (name, v) in [
            ("weight", &self.weight),
            ("bias", &self.bias),
            ("running_mean", &self.running_mean),
            ("running_var", &self.running_var),
        ] {
            if v.len() != channels {
                return Err(Error::shape(
                    op,
                    format!(
                        "batch-norm {name} has {} values, expected {channels}",
                        v.len()
                    ),
                ));
            }
        }
        // var + eps must be positive: a negative variance or epsilon would fold to NaN or an infinity and run on
        // silently. NaN in the data itself is left to propagate, as in PyTorch.
        if !(self.eps >= 0.0 && self.eps.is_finite()) {
            return Err(Error::params(
                op,
                format!("batch-norm eps must be >= 0, got {}", self.eps),
            ));
        }
        if let Some((c, v)) = self.running_var.iter().enumerate().find(|(_, v)| {
            let d = **v as f64 + self.eps;
            d <= 0.0 || d.is_infinite()
        }) {
            return Err(Error::params(
                op,
                format!(
                    "batch-norm running_var[{c}] = {v} with eps {}: var + eps must be positive",
                    self.eps
                ),
            ));
        }
        Ok(())
    }
}

/// The learned tensors of a convolution, in PyTorch's layout, as host data.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvWeights {
    /// Conv2d: `[out, in / groups, kh, kw]`; ConvTranspose2d: `[in, out / groups, kh, kw]`.
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
    pub batch_norm: Option<BatchNorm>,
}

impl ConvWeights {
    /// Checks the tensor sizes against the expected weight shape and channel count.
    pub fn check(
        &self,
        op: &'static str,
        weight_shape: [usize; 4],
        out_channels: usize,
    ) -> Result<()> {
        let expected: usize = weight_shape.iter().product();
        if self.weight.len() != expected {
            return Err(Error::shape(
                op,
                format!(
                    "weight has {} values, expected {weight_shape:?} = {expected}",
                    self.weight.len()
                ),
            ));
        }
        if let Some(bias) = &self.bias {
            if bias.len() != out_channels {
                return Err(Error::shape(
                    op,
                    format!("bias has {} values, expected {out_channels}", bias.len()),
                ));
            }
        }
        if let Some(bn) = &self.batch_norm {
            bn.check(op, out_channels)?;
        }
        Ok(())
    }

    /// The epilogue folded to `acc * scale[c] + shift[c]` in f64: bias then batch-norm.
    pub fn folded_affine(&self, out_channels: usize) -> Vec<(f64, f64)> {
        (0..out_channels)
            .map(|c| {
                let bias = self.bias.as_ref().map_or(0.0, |b| b[c] as f64);
                match &self.batch_norm {
                    Some(bn) => {
                        let (scale, shift) = bn.scale_shift(c);
                        (scale, bias * scale + shift)
                    }
                    None => (1.0, bias),
                }
            })
            .collect()
    }
}

/// `torch.nn.ConvTranspose2d` with the same epilogue as [`Conv2d`] (bias, folded batch-norm, activation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvTranspose2d {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: [usize; 2],
    #[serde(default = "ones")]
    pub stride: [usize; 2],
    /// PyTorch's symmetric `padding`, which crops the output.
    #[serde(default)]
    pub padding: [usize; 2],
    #[serde(default)]
    pub output_padding: [usize; 2],
    #[serde(default = "ones")]
    pub dilation: [usize; 2],
    #[serde(default = "one")]
    pub groups: usize,
    #[serde(default, skip_serializing_if = "is_default")]
    pub activation: Activation,
    /// Write channel `c` of the result to channel `c + out_channel_offset` of the destination (as in [`Conv2d`]).
    #[serde(default, skip_serializing_if = "is_default")]
    pub out_channel_offset: usize,
    /// Channels of the destination tensor; `None` means `out_channels`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_channels_total: Option<usize>,
}

impl ConvTranspose2d {
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
    ) -> Self {
        ConvTranspose2d {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding: [0, 0],
            output_padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
            activation: Activation::None,
            out_channel_offset: 0,
            out_channels_total: None,
        }
    }

    pub fn dest_channels(&self) -> usize {
        self.out_channels_total.unwrap_or(self.out_channels)
    }

    /// PyTorch's weight shape `[in, out / groups, kh, kw]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        [
            self.in_channels,
            self.out_channels / self.groups.max(1),
            self.kernel[0],
            self.kernel[1],
        ]
    }

    /// Useful multiply-adds of the gather form, counted per input element: `2 * N * in * H * W * out / groups * kh * kw`.
    pub fn flops(&self, input: Shape) -> u64 {
        let per_input = (self.out_channels / self.groups.max(1)) * self.kernel[0] * self.kernel[1];
        2 * input.numel() as u64 * per_input as u64
    }

    /// Validates the parameters against `input` and returns the shape of the destination tensor.
    pub fn output_shape(&self, input: Shape) -> Result<Shape> {
        const OP: &str = "conv_transpose2d";
        positive(OP, "kernel", &self.kernel)?;
        positive(OP, "stride", &self.stride)?;
        positive(OP, "dilation", &self.dilation)?;
        positive(OP, "groups", &[self.groups])?;
        positive(OP, "channels", &[self.in_channels, self.out_channels])?;
        if self.in_channels % self.groups != 0 || self.out_channels % self.groups != 0 {
            return Err(Error::params(
                OP,
                format!(
                    "groups {} must divide in_channels {} and out_channels {}",
                    self.groups, self.in_channels, self.out_channels
                ),
            ));
        }
        for axis in 0..2 {
            // PyTorch: output_padding must be smaller than either stride or dilation.
            if self.output_padding[axis] >= self.stride[axis].max(self.dilation[axis]) {
                return Err(Error::params(
                    OP,
                    format!(
                        "output_padding {:?} must be smaller than stride {:?} or dilation {:?}",
                        self.output_padding, self.stride, self.dilation
                    ),
                ));
            }
        }
        if input.c != self.in_channels {
            return Err(Error::shape(
                OP,
                format!(
                    "expects {} input channels, input is {input}",
                    self.in_channels
                ),
            ));
        }
        positive(OP, "input size", &[input.n, input.h, input.w])?;
        super::bounded(OP, "padding", &self.padding)?;
        let size = |axis: usize, len: usize| -> Result<usize> {
            let full = (len - 1) * self.stride[axis]
                + self.dilation[axis] * (self.kernel[axis] - 1)
                + self.output_padding[axis]
                + 1;
            full.checked_sub(2 * self.padding[axis])
                .filter(|&s| s > 0)
                .ok_or_else(|| {
                    Error::params(
                        OP,
                        format!(
                            "padding {:?} crops the whole output of input {input}",
                            self.padding
                        ),
                    )
                })
        };
        let total = self.dest_channels();
        if self.out_channel_offset + self.out_channels > total {
            return Err(Error::params(
                OP,
                format!(
                    "writing {} channels at offset {} overflows a destination of {total} channels",
                    self.out_channels, self.out_channel_offset
                ),
            ));
        }
        Ok(Shape::new(
            input.n,
            total,
            size(0, input.h)?,
            size(1, input.w)?,
        ))
    }
}
