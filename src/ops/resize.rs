//! `torch.nn.functional.interpolate` for 2-D maps: bilinear (both align_corners) and legacy nearest; ONNX Resize's
//! linear and nearest modes with its coordinate transforms and rounding modes.

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
    /// ONNX Resize `mode="linear"` (opset 11-21, no antialias): the source coordinate from `transform`, clamped to
    /// `[0, in - 1]`, interpolated between its floor and the next index.
    Linear {
        transform: CoordinateTransform,
    },
    /// ONNX Resize `mode="nearest"`: the source coordinate from `transform`, rounded by `rounding`, clamped to
    /// `[0, in - 1]`. Coordinates are computed in f32 in onnxruntime's order of operations ([`OnnxAxis`]); the
    /// kernel matches the reference exactly where the adapter's f32 division is correctly rounded (lavapipe,
    /// llvmpipe), while WGSL allows 2.5 ulp, which on some GPUs may move a coordinate within an ulp of a rounding
    /// boundary (beyond [`NEAREST_TIE_TOLERANCE`] of a tie) to the neighbouring pixel.
    NearestOnnx {
        transform: CoordinateTransform,
        rounding: NearestRounding,
    },
}

/// ONNX Resize's `coordinate_transformation_mode`: how output index `x` maps to a source coordinate along an axis
/// of `input` elements resized to `output` with scale `s` (the given factor, or `output / input`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoordinateTransform {
    /// `(x + 0.5) / s - 0.5`.
    HalfPixel,
    /// `output > 1 ? (x + 0.5) / s - 0.5 : 0`.
    PytorchHalfPixel,
    /// `output > 1 ? x * (input - 1) / (output - 1) : 0`.
    AlignCorners,
    /// `x / s`.
    Asymmetric,
    /// `(x + 0.5) / s`.
    TfHalfPixelForNearest,
}

/// How close to one half (absolutely) the fraction of an ONNX nearest coordinate rounds as a tie: onnxruntime 1.23
/// rounds fractions 0.5 +- 9.5e-7 as ties and 0.5 +- 1.43e-6 as not (measured on its CPU provider).
pub const NEAREST_TIE_TOLERANCE: f32 = 1e-6;

/// ONNX Resize's `nearest_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NearestRounding {
    /// Round to nearest, halfway cases down.
    RoundPreferFloor,
    /// Round to nearest, halfway cases up.
    RoundPreferCeil,
    Floor,
    Ceil,
}

impl NearestRounding {
    /// The code the shader switches on.
    pub fn code(self) -> u32 {
        match self {
            NearestRounding::RoundPreferFloor => 0,
            NearestRounding::RoundPreferCeil => 1,
            NearestRounding::Floor => 2,
            NearestRounding::Ceil => 3,
        }
    }

    /// `x` rounded to an integer by this mode, in f32 (exact: `x - floor(x)` loses nothing). As onnxruntime (1.23,
    /// measured), a fraction within [`NEAREST_TIE_TOLERANCE`] of one half counts as halfway, so a coordinate that
    /// f32 division leaves an ulp or two short of (or past) a tie rounds as the tie.
    pub fn round(self, x: f32) -> f32 {
        let f = x.floor();
        let d = x - f;
        let tie = (d - 0.5).abs() < NEAREST_TIE_TOLERANCE;
        let up = match self {
            NearestRounding::RoundPreferFloor => !tie && d > 0.5,
            NearestRounding::RoundPreferCeil => tie || d > 0.5,
            NearestRounding::Floor => false,
            NearestRounding::Ceil => d > 0.0,
        };
        f + if up { 1.0 } else { 0.0 }
    }
}

/// The source coordinate along one axis of an ONNX resize, in f32 in onnxruntime's order of operations:
/// `((x + offset) * multiplier) / divisor + shift`, each step rounded to f32 (multiplying by 1 and adding 0 are
/// exact, so each transform's formula is evaluated exactly as onnxruntime writes it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OnnxAxis {
    pub offset: f32,
    pub multiplier: f32,
    pub divisor: f32,
    pub shift: f32,
}

impl OnnxAxis {
    /// The coordinate of output index `x` (before clamping or rounding).
    pub fn coordinate(&self, x: usize) -> f32 {
        ((x as f32 + self.offset) * self.multiplier) / self.divisor + self.shift
    }
}

impl CoordinateTransform {
    /// The axis map for `len_in -> len_out` with scale `scale` (f32, as onnxruntime keeps its scales).
    pub fn axis(self, len_in: usize, len_out: usize, scale: f32) -> OnnxAxis {
        let zero = OnnxAxis {
            offset: 0.0,
            multiplier: 0.0,
            divisor: 1.0,
            shift: 0.0,
        };
        let scaled = |offset, shift| OnnxAxis {
            offset,
            multiplier: 1.0,
            divisor: scale,
            shift,
        };
        match self {
            CoordinateTransform::HalfPixel => scaled(0.5, -0.5),
            CoordinateTransform::PytorchHalfPixel if len_out > 1 => scaled(0.5, -0.5),
            CoordinateTransform::PytorchHalfPixel => zero,
            CoordinateTransform::AlignCorners if len_out > 1 => OnnxAxis {
                offset: 0.0,
                multiplier: len_in as f32 - 1.0,
                divisor: len_out as f32 - 1.0,
                shift: 0.0,
            },
            CoordinateTransform::AlignCorners => zero,
            CoordinateTransform::Asymmetric => scaled(0.0, 0.0),
            CoordinateTransform::TfHalfPixelForNearest => scaled(0.5, 0.0),
        }
    }
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
                if self.is_onnx() {
                    // onnxruntime: the f32 product, truncated.
                    [
                        (input.h as f32 * factors[0] as f32) as usize,
                        (input.w as f32 * factors[1] as f32) as usize,
                    ]
                } else {
                    [
                        (input.h as f64 * factors[0]).floor() as usize,
                        (input.w as f64 * factors[1]).floor() as usize,
                    ]
                }
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

    /// Whether the mode is one of ONNX's ([`ResizeMode::Linear`], [`ResizeMode::NearestOnnx`]).
    pub fn is_onnx(&self) -> bool {
        matches!(
            self.mode,
            ResizeMode::Linear { .. } | ResizeMode::NearestOnnx { .. }
        )
    }

    /// The ONNX coordinate maps (h, w) of a [`ResizeMode::Linear`] or [`ResizeMode::NearestOnnx`] resize, with
    /// onnxruntime's f32 scales: the given factor, else `output / input`. `None` for PyTorch's modes.
    pub fn onnx_axes(&self, input: Shape, output: Shape) -> Option<[OnnxAxis; 2]> {
        let transform = match self.mode {
            ResizeMode::Linear { transform } | ResizeMode::NearestOnnx { transform, .. } => {
                transform
            }
            _ => return None,
        };
        let nearest = matches!(self.mode, ResizeMode::NearestOnnx { .. });
        let axis = |i: usize, len_in: usize, len_out: usize| {
            let scale = match self.target {
                ResizeTarget::Scale(f) => f[i] as f32,
                _ => len_out as f32 / len_in as f32,
            };
            // onnxruntime maps nearest axes of scale 1 one to one, whatever the transform (only
            // tf_half_pixel_for_nearest's x + 0.5 would differ).
            match nearest && scale == 1.0 {
                true => OnnxAxis {
                    offset: 0.0,
                    multiplier: 1.0,
                    divisor: 1.0,
                    shift: 0.0,
                },
                false => transform.axis(len_in, len_out, scale),
            }
        };
        Some([axis(0, input.h, output.h), axis(1, input.w, output.w)])
    }
}
