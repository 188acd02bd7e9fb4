//! Reference resize: `torch.nn.functional.interpolate`, bilinear (both align_corners) and legacy nearest, following
//! PyTorch's CPU kernels (UpSample.h).

use crate::error::Result;
use crate::ops::{NearestRounding, OnnxAxis, Resize, ResizeMode};
use crate::tensor::{Shape, Tensor};

/// Source rows or columns `(i0, i1)` and weights `(l0, l1)` of output index `dst` along one axis, from the f32
/// `scale` of [`Resize::source_scales`]; PyTorch's `compute_source_index_and_lambda`. An axis of unchanged length
/// copies.
pub(crate) fn bilinear_taps(
    dst: usize,
    len_in: usize,
    len_out: usize,
    scale: f32,
    align_corners: bool,
) -> (usize, usize, f64, f64) {
    if len_in == len_out {
        return (dst, dst, 1.0, 0.0);
    }
    let scale = scale as f64;
    let src = if align_corners {
        scale * dst as f64
    } else {
        (scale * (dst as f64 + 0.5) - 0.5).max(0.0)
    };
    let i0 = (src.floor() as usize).min(len_in - 1);
    let i1 = if i0 < len_in - 1 { i0 + 1 } else { i0 };
    let l1 = (src - i0 as f64).clamp(0.0, 1.0);
    (i0, i1, 1.0 - l1, l1)
}

/// PyTorch's `nearest_idx`. The product is taken in f32 as PyTorch does: it decides which pixel is picked, and
/// rounding it in f64 instead can land on the other side of an integer. Unchanged and doubled lengths take
/// PyTorch's shortcuts, which differ from the formula when a scale factor rather than a size was given.
pub(crate) fn nearest_index(dst: usize, len_in: usize, len_out: usize, scale: f32) -> usize {
    if len_out == len_in {
        dst
    } else if len_out == 2 * len_in {
        dst >> 1
    } else {
        ((dst as f32 * scale).floor() as usize).min(len_in - 1)
    }
}

/// `interpolate(input, size or scale_factor, mode, align_corners)`.
pub fn resize(p: &Resize, input: &Tensor) -> Result<Tensor> {
    let s = input.shape;
    let o = p.output_shape(s)?;
    if let Some(axes) = p.onnx_axes(s, o) {
        return Ok(onnx_resize(p.mode, axes, input, o));
    }
    let [scale_h, scale_w] = p.source_scales(s, o);
    let mut out = Tensor::zeros(Shape::new(o.n, o.c, o.h, o.w));
    for n in 0..o.n {
        for c in 0..o.c {
            for oy in 0..o.h {
                for ox in 0..o.w {
                    let v = match p.mode {
                        ResizeMode::Nearest => {
                            let y = nearest_index(oy, s.h, o.h, scale_h);
                            let x = nearest_index(ox, s.w, o.w, scale_w);
                            input.at(n, c, y, x) as f64
                        }
                        ResizeMode::Linear { .. } | ResizeMode::NearestOnnx { .. } => {
                            unreachable!("ONNX modes return above")
                        }
                        ResizeMode::Bilinear { align_corners } => {
                            let (y0, y1, ly0, ly1) =
                                bilinear_taps(oy, s.h, o.h, scale_h, align_corners);
                            let (x0, x1, lx0, lx1) =
                                bilinear_taps(ox, s.w, o.w, scale_w, align_corners);
                            let at = |y, x| input.at(n, c, y, x) as f64;
                            ly0 * (lx0 * at(y0, x0) + lx1 * at(y0, x1))
                                + ly1 * (lx0 * at(y1, x0) + lx1 * at(y1, x1))
                        }
                    };
                    out.data[o.index(n, c, oy, ox)] = v as f32;
                }
            }
        }
    }
    Ok(out)
}

/// ONNX linear taps of output index `dst`: onnxruntime's `UpsampleBilinear` (and the ONNX reference's, whose
/// edge-padded neighbours give the same values): the f32 coordinate clamped to `[0, in - 1]`, its floor `i0`,
/// `i1 = min(i0 + 1, in - 1)`, weights `|x - i1|` and `|x - i0|` (1/2 each where `i0 == i1`).
pub(crate) fn onnx_linear_taps(
    axis: &OnnxAxis,
    dst: usize,
    len_in: usize,
) -> (usize, usize, f64, f64) {
    let x = axis.coordinate(dst).clamp(0.0, len_in as f32 - 1.0);
    // NaN (a NaN coordinate cannot come from validated parameters) reads index 0.
    let i0 = (x as usize).min(len_in - 1);
    let i1 = (i0 + 1).min(len_in - 1);
    if i0 == i1 {
        return (i0, i1, 0.5, 0.5);
    }
    let (x, a, b) = (x as f64, i0 as f64, i1 as f64);
    (i0, i1, (x - b).abs(), (x - a).abs())
}

/// ONNX nearest index of output index `dst`: the f32 coordinate rounded by `rounding`, clamped to `[0, in - 1]`.
pub(crate) fn onnx_nearest_index(
    axis: &OnnxAxis,
    rounding: NearestRounding,
    dst: usize,
    len_in: usize,
) -> usize {
    let r = rounding.round(axis.coordinate(dst));
    if r.is_nan() || r <= 0.0 {
        0
    } else {
        (r as usize).min(len_in - 1)
    }
}

fn onnx_resize(mode: ResizeMode, [ah, aw]: [OnnxAxis; 2], input: &Tensor, o: Shape) -> Tensor {
    let s = input.shape;
    let mut out = Tensor::zeros(o);
    for n in 0..o.n {
        for c in 0..o.c {
            let at = |y, x| input.at(n, c, y, x) as f64;
            for oy in 0..o.h {
                for ox in 0..o.w {
                    let v = match mode {
                        ResizeMode::NearestOnnx { rounding, .. } => at(
                            onnx_nearest_index(&ah, rounding, oy, s.h),
                            onnx_nearest_index(&aw, rounding, ox, s.w),
                        ),
                        _ => {
                            let (y0, y1, ly0, ly1) = onnx_linear_taps(&ah, oy, s.h);
                            let (x0, x1, lx0, lx1) = onnx_linear_taps(&aw, ox, s.w);
                            ly0 * (lx0 * at(y0, x0) + lx1 * at(y0, x1))
                                + ly1 * (lx0 * at(y1, x0) + lx1 * at(y1, x1))
                        }
                    };
                    out.data[o.index(n, c, oy, ox)] = v as f32;
                }
            }
        }
    }
    out
}
