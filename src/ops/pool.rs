//! Pooling parameters with PyTorch's size rules.

use super::positive;
use crate::error::{Error, Result};
use crate::tensor::Shape;
use serde::{Deserialize, Serialize};

/// Output length of a pooling window along one axis, PyTorch's `pooling_output_shape`: in ceil mode the last window
/// must start inside the input or the left padding.
pub(crate) fn pool_out(
    op: &'static str,
    input: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    ceil_mode: bool,
) -> Result<usize> {
    super::bounded(op, "padding", &[pad])?;
    if pad * 2 > kernel {
        return Err(Error::params(
            op,
            format!("padding {pad} must be at most half the kernel {kernel}"),
        ));
    }
    let span = dilation * (kernel - 1) + 1;
    let numerator = (input + 2 * pad) as isize - span as isize
        + if ceil_mode { stride as isize - 1 } else { 0 };
    if numerator < 0 {
        return Err(Error::params(
            op,
            format!("window {span} (kernel {kernel}, dilation {dilation}) is larger than the padded input {}", input + 2 * pad),
        ));
    }
    let mut out = numerator as usize / stride + 1;
    if ceil_mode && (out - 1) * stride >= input + pad {
        out -= 1;
    }
    Ok(out)
}

fn check_input(op: &'static str, input: Shape) -> Result<()> {
    positive(op, "input size", &[input.n, input.c, input.h, input.w])
}

/// `torch.nn.MaxPool2d`. With `return_indices`, a second output holds the flat `h * w` index of each maximum within its
/// channel plane (PyTorch's convention, which `MaxUnpool2d` consumes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaxPool2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub ceil_mode: bool,
    pub return_indices: bool,
}

impl MaxPool2d {
    /// PyTorch's defaults: stride = kernel, no padding, no dilation, floor mode.
    pub fn new(kernel: [usize; 2]) -> Self {
        MaxPool2d {
            kernel,
            stride: kernel,
            padding: [0, 0],
            dilation: [1, 1],
            ceil_mode: false,
            return_indices: false,
        }
    }

    pub fn output_shape(&self, input: Shape) -> Result<Shape> {
        const OP: &str = "max_pool2d";
        positive(OP, "kernel", &self.kernel)?;
        positive(OP, "stride", &self.stride)?;
        positive(OP, "dilation", &self.dilation)?;
        check_input(OP, input)?;
        let h = pool_out(
            OP,
            input.h,
            self.kernel[0],
            self.stride[0],
            self.padding[0],
            self.dilation[0],
            self.ceil_mode,
        )?;
        let w = pool_out(
            OP,
            input.w,
            self.kernel[1],
            self.stride[1],
            self.padding[1],
            self.dilation[1],
            self.ceil_mode,
        )?;
        Ok(Shape::new(input.n, input.c, h, w))
    }
}

/// `torch.nn.AvgPool2d` (no divisor override).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvgPool2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub ceil_mode: bool,
    pub count_include_pad: bool,
}

impl AvgPool2d {
    /// PyTorch's defaults: stride = kernel, no padding, floor mode, padding counted.
    pub fn new(kernel: [usize; 2]) -> Self {
        AvgPool2d {
            kernel,
            stride: kernel,
            padding: [0, 0],
            ceil_mode: false,
            count_include_pad: true,
        }
    }

    pub fn output_shape(&self, input: Shape) -> Result<Shape> {
        const OP: &str = "avg_pool2d";
        positive(OP, "kernel", &self.kernel)?;
        positive(OP, "stride", &self.stride)?;
        check_input(OP, input)?;
        let h = pool_out(
            OP,
            input.h,
            self.kernel[0],
            self.stride[0],
            self.padding[0],
            1,
            self.ceil_mode,
        )?;
        let w = pool_out(
            OP,
            input.w,
            self.kernel[1],
            self.stride[1],
            self.padding[1],
            1,
            self.ceil_mode,
        )?;
        Ok(Shape::new(input.n, input.c, h, w))
    }
}

/// `torch.nn.AdaptiveAvgPool2d`: bin `i` covers `[floor(i * in / out), ceil((i + 1) * in / out))`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdaptiveAvgPool2d {
    /// (h, w)
    pub output: [usize; 2],
}

impl AdaptiveAvgPool2d {
    pub fn output_shape(&self, input: Shape) -> Result<Shape> {
        const OP: &str = "adaptive_avg_pool2d";
        positive(OP, "output size", &self.output)?;
        check_input(OP, input)?;
        Ok(Shape::new(input.n, input.c, self.output[0], self.output[1]))
    }

    /// The half-open input range of bin `i` of `out` bins over `input`.
    pub fn bin(i: usize, input: usize, out: usize) -> (usize, usize) {
        (i * input / out, ((i + 1) * input).div_ceil(out))
    }
}

/// `torch.nn.MaxUnpool2d`: scatters pooled values to the positions their indices name; the rest is zero.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaxUnpool2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    /// Explicit (h, w) of the output; otherwise `(in - 1) * stride - 2 * padding + kernel`.
    pub output_size: Option<[usize; 2]>,
}

impl MaxUnpool2d {
    pub fn new(kernel: [usize; 2]) -> Self {
        MaxUnpool2d {
            kernel,
            stride: kernel,
            padding: [0, 0],
            output_size: None,
        }
    }

    pub fn output_shape(&self, input: Shape) -> Result<Shape> {
        const OP: &str = "max_unpool2d";
        super::bounded(OP, "padding", &self.padding)?;
        positive(OP, "kernel", &self.kernel)?;
        positive(OP, "stride", &self.stride)?;
        check_input(OP, input)?;
        let default = |axis: usize, len: usize| {
            ((len - 1) * self.stride[axis] + self.kernel[axis])
                .checked_sub(2 * self.padding[axis])
                .filter(|&s| s > 0)
        };
        let (dh, dw) = match (default(0, input.h), default(1, input.w)) {
            (Some(h), Some(w)) => (h, w),
            _ => {
                return Err(Error::params(
                    OP,
                    format!(
                        "padding {:?} leaves no output for input {input}",
                        self.padding
                    ),
                ))
            }
        };
        let [h, w] = match self.output_size {
            None => [dh, dw],
            Some([h, w]) => {
                // PyTorch accepts sizes within one stride of the default.
                let ok = |size: usize, def: usize, s: usize| size + s > def && size < def + s;
                if !ok(h, dh, self.stride[0]) || !ok(w, dw, self.stride[1]) {
                    return Err(Error::params(
                        OP,
                        format!(
                            "output_size {:?} must be within one stride of the default {:?}",
                            [h, w],
                            [dh, dw]
                        ),
                    ));
                }
                [h, w]
            }
        };
        Ok(Shape::new(input.n, input.c, h, w))
    }
}
