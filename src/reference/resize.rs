//! Reference resize: `torch.nn.functional.interpolate`, bilinear (both align_corners) and legacy nearest, following
//! PyTorch's CPU kernels (UpSample.h).

use crate::error::Result;
use crate::ops::{Resize, ResizeMode};
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
