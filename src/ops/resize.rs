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
    /// The (h, w) of the node's second input (`"like"`): upsampling logits to the input's size, or one feature map
    /// to another's, whatever size the graph is run at. Resolved with [`Resize::resolve`] once shapes are known.
    Like,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resize {
    pub mode: ResizeMode,
    pub target: ResizeTarget,
}

impl Resize {
    /// How many inputs a resize node takes: two (the map and the tensor whose size it takes) for
    /// [`ResizeTarget::Like`], else one.
    pub fn inputs(&self) -> usize {
        match self.target {
            ResizeTarget::Like => 2,
            _ => 1,
        }
    }

    /// This resize with a [`ResizeTarget::Like`] target replaced by the size of `like`; other targets unchanged.
    pub fn resolve(&self, like: Option<Shape>) -> Result<Resize> {
        match (self.target, like) {
            (ResizeTarget::Like, Some(s)) => Ok(Resize {
                mode: self.mode,
                target: ResizeTarget::Size([s.h, s.w]),
            }),
            (ResizeTarget::Like, None) => Err(Error::params(
                "resize",
                "target \"like\" needs a second input whose size to take",
            )),
            _ => Ok(*self),
        }
    }

    pub fn output_shape(&self, input: Shape) -> Result<Shape> {
        const OP: &str = "resize";
        positive(OP, "input size", &[input.n, input.c, input.h, input.w])?;
        let [h, w] = match self.target {
            ResizeTarget::Size(size) => size,
            ResizeTarget::Like => {
                return Err(Error::params(
                    OP,
                    "target \"like\" takes its size from a second input; resolve it first",
                ))
            }
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
                (_, ResizeTarget::Size(_) | ResizeTarget::Like) => len_in as f32 / len_out as f32,
            }
        };
        [axis(0, input.h, output.h), axis(1, input.w, output.w)]
    }
}
