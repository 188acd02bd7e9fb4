//! Reference pooling, following PyTorch's CPU kernels (`cpu_max_pool`, `cpu_avg_pool`, `adaptive_avg_pool2d`,
//! `max_unpool2d`) line by line.

use crate::error::{Error, Result};
use crate::ops::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d, MaxUnpool2d};
use crate::tensor::Tensor;

/// The first in-bounds tap and the exclusive end of a dilated max window along one axis.
fn max_taps(
    o: usize,
    stride: usize,
    pad: usize,
    k: usize,
    dil: usize,
    len: usize,
) -> (isize, isize) {
    let mut start = (o * stride) as isize - pad as isize;
    let end = (start + ((k - 1) * dil + 1) as isize).min(len as isize);
    while start < 0 {
        start += dil as isize;
    }
    (start, end)
}

/// `max_pool2d`, and with `p.return_indices` the flat `h * w` index of each maximum in its input plane. A strictly
/// larger value or a NaN takes over, so ties keep the first maximum in scan order.
pub fn max_pool2d(p: &MaxPool2d, x: &Tensor) -> Result<(Tensor, Option<Vec<u32>>)> {
    let s = x.shape;
    let os = p.output_shape(s)?;
    let mut out = Tensor::zeros(os);
    let mut indices = vec![0u32; os.numel()];
    for n in 0..os.n {
        for c in 0..os.c {
            let plane = &x.data[s.index(n, c, 0, 0)..][..s.plane()];
            for oy in 0..os.h {
                let (y0, y1) = max_taps(
                    oy,
                    p.stride[0],
                    p.padding[0],
                    p.kernel[0],
                    p.dilation[0],
                    s.h,
                );
                for ox in 0..os.w {
                    let (x0, x1) = max_taps(
                        ox,
                        p.stride[1],
                        p.padding[1],
                        p.kernel[1],
                        p.dilation[1],
                        s.w,
                    );
                    let mut best = f64::NEG_INFINITY;
                    let mut best_index = y0 * s.w as isize + x0;
                    for y in (y0..y1).step_by(p.dilation[0]) {
                        for xx in (x0..x1).step_by(p.dilation[1]) {
                            let index = y * s.w as isize + xx;
                            let v = plane[index as usize] as f64;
                            if v > best || v.is_nan() {
                                best = v;
                                best_index = index;
                            }
                        }
                    }
                    let i = os.index(n, c, oy, ox);
                    out.data[i] = best as f32;
                    indices[i] = best_index as u32;
                }
            }
        }
    }
    Ok((out, p.return_indices.then_some(indices)))
}

/// `avg_pool2d` with PyTorch's divisors: with `count_include_pad` the window clipped to input + padding, otherwise
/// the window clipped to the input.
pub fn avg_pool2d(p: &AvgPool2d, x: &Tensor) -> Result<Tensor> {
    let s = x.shape;
    let os = p.output_shape(s)?;
    // (clipped start, clipped end, divisor with padding) along one axis.
    let window = |o: usize, axis: usize, len: usize| {
        let pad = p.padding[axis] as isize;
        let start = (o * p.stride[axis]) as isize - pad;
        let end = (start + p.kernel[axis] as isize).min(len as isize + pad);
        let padded = end - start;
        (
            start.max(0) as usize,
            end.min(len as isize).max(0) as usize,
            padded,
        )
    };
    let mut out = Tensor::zeros(os);
    for n in 0..os.n {
        for c in 0..os.c {
            for oy in 0..os.h {
                let (y0, y1, ph) = window(oy, 0, s.h);
                for ox in 0..os.w {
                    let (x0, x1, pw) = window(ox, 1, s.w);
                    let i = os.index(n, c, oy, ox);
                    if y0 >= y1 || x0 >= x1 {
                        continue;
                    }
                    let mut sum = 0.0f64;
                    for y in y0..y1 {
                        for xx in x0..x1 {
                            sum += x.at(n, c, y, xx) as f64;
                        }
                    }
                    let divisor = if p.count_include_pad {
                        (ph * pw) as f64
                    } else {
                        ((y1 - y0) * (x1 - x0)) as f64
                    };
                    out.data[i] = (sum / divisor) as f32;
                }
            }
        }
    }
    Ok(out)
}

/// `adaptive_avg_pool2d`: each output averages its bin ([`AdaptiveAvgPool2d::bin`]) over the bin's real size.
pub fn adaptive_avg_pool2d(p: &AdaptiveAvgPool2d, x: &Tensor) -> Result<Tensor> {
    let s = x.shape;
    let os = p.output_shape(s)?;
    let mut out = Tensor::zeros(os);
    for n in 0..os.n {
        for c in 0..os.c {
            for oy in 0..os.h {
                let (y0, y1) = AdaptiveAvgPool2d::bin(oy, s.h, os.h);
                for ox in 0..os.w {
                    let (x0, x1) = AdaptiveAvgPool2d::bin(ox, s.w, os.w);
                    let mut sum = 0.0f64;
                    for y in y0..y1 {
                        for xx in x0..x1 {
                            sum += x.at(n, c, y, xx) as f64;
                        }
                    }
                    out.data[os.index(n, c, oy, ox)] =
                        (sum / ((y1 - y0) * (x1 - x0)) as f64) as f32;
                }
            }
        }
    }
    Ok(out)
}

/// `max_unpool2d`: each value lands at its flat `h * w` index within its own output plane, the rest is zero. Where
/// several values name one position the last in scan order wins (PyTorch's serial CPU loop). An index outside the
/// plane is an error, as in PyTorch.
pub fn max_unpool2d(p: &MaxUnpool2d, values: &Tensor, indices: &[u32]) -> Result<Tensor> {
    const OP: &str = "max_unpool2d";
    let s = values.shape;
    let os = p.output_shape(s)?;
    if indices.len() != s.numel() {
        return Err(Error::shape(
            OP,
            format!(
                "{} indices for values of shape {s} ({} elements)",
                indices.len(),
                s.numel()
            ),
        ));
    }
    let mut out = Tensor::zeros(os);
    let plane = os.plane();
    for (i, (&v, &index)) in values.data.iter().zip(indices).enumerate() {
        let index = index as usize;
        if index >= plane {
            return Err(Error::params(
                OP,
                format!(
                    "index {index} at element {i} is outside the {}x{} output plane",
                    os.h, os.w
                ),
            ));
        }
        out.data[(i / s.plane()) * plane + index] = v;
    }
    Ok(out)
}
