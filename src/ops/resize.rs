//! `torch.nn.functional.interpolate` for 2-D maps: bilinear (both align_corners) and legacy nearest.

use super::positive;
use crate::error::{Error, Result};
use crate::tensor::Shape;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    Bilinear {
        align_corners: bool,
    },
    /// PyTorch's legacy `mode="nearest"`: `src = min(floor(dst * scale), in - 1)`.
    Nearest,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeTarget {
    /// Output (h, w).
    Size([usize; 2]),
    /// Scale factors (h, w): the output is `floor(in * factor)` and, as in PyTorch with
    /// `recompute_scale_factor=None`, the source coordinate uses `1 / factor`.
    Scale([f64; 2]),
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resize {
    pub mode: ResizeMode,
    pub target: ResizeTarget,
}

impl Resize {
    pub fn output_shape(&self, input: Shape) -> Result<Shape> {
        const OP: &str = "resize";
        positive(OP, "input size", &[input.n, input.c, input.h, input.w])?;
        let [h, w] = match self.target {
            ResizeTarget::Size(size) => size,
            ResizeTarget::Scale(factors) => {
                if factors.iter().any(|f| !f.is_finite() || *f <= 0.0) {
                    return Err(Error::params(
                        OP,
                        format!("scale factors must be finite and positive, got {factors:?}"),
                    ));
                }
                [
                    (input.h as f64 * factors[0]).floor() as usize,
                    (input.w as f64 * factors[1]).floor() as usize,
                ]
            }
        };
        positive(OP, "output size", &[h, w])?;
        Ok(Shape::new(input.n, input.c, h, w))
    }

    /// The source-coordinate scale along each axis (h, w), PyTorch's `area_pixel_compute_scale` /
    /// `compute_scales_value`, computed in f32 as PyTorch does for f32 tensors.
    pub fn source_scales(&self, input: Shape, output: Shape) -> [f32; 2] {
        let axis = |i: usize, len_in: usize, len_out: usize| -> f32 {
            match (self.mode, self.target) {
                (
                    ResizeMode::Bilinear {
                        align_corners: true,
                    },
                    _,
                ) => {
                    if len_out > 1 {
                        (len_in as f32 - 1.0) / (len_out as f32 - 1.0)
                    } else {
                        0.0
                    }
                }
                (_, ResizeTarget::Scale(f)) => (1.0 / f[i]) as f32,
                (_, ResizeTarget::Size(_)) => len_in as f32 / len_out as f32,
            }
        };
        [axis(0, input.h, output.h), axis(1, input.w, output.w)]
    }
}
