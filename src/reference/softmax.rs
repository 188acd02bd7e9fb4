//! Reference softmax and argmax over channels.

use crate::error::Result;
use crate::ops::{Argmax, Softmax};
use crate::tensor::Tensor;

/// `torch.softmax(x, dim=1)`: `exp(x - max) / sum(exp(x - max))` per pixel.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    let s = Softmax.output_shape(x.shape)?;
    let mut out = Tensor::zeros(s);
    for n in 0..s.n {
        for y in 0..s.h {
            for xx in 0..s.w {
                let values: Vec<f64> = (0..s.c).map(|c| x.at(n, c, y, xx) as f64).collect();
                let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = values.iter().map(|v| (v - max).exp()).collect();
                let sum: f64 = exps.iter().sum();
                for (c, e) in exps.iter().enumerate() {
                    out.data[s.index(n, c, y, xx)] = (e / sum) as f32;
                }
            }
        }
    }
    Ok(out)
}

/// `torch.argmax(x, dim=1, keepdim=True)`: the class map `N x 1 x H x W` in NCHW order; ties pick the first channel.
pub fn argmax(x: &Tensor) -> Result<Vec<u32>> {
    let o = Argmax.output_shape(x.shape)?;
    let mut out = vec![0u32; o.numel()];
    for n in 0..o.n {
        for y in 0..o.h {
            for xx in 0..o.w {
                let mut best = 0;
                for c in 1..x.shape.c {
                    if x.at(n, c, y, xx) > x.at(n, best, y, xx) {
                        best = c;
                    }
                }
                out[o.index(n, 0, y, xx)] = best as u32;
            }
        }
    }
    Ok(out)
}

/// The class map of a one-channel probability map: 1 where `p > threshold`.
pub fn threshold(x: &Tensor, threshold: f32) -> Result<Vec<u32>> {
    Argmax.output_shape(x.shape)?;
    if x.shape.c != 1 {
        return Err(crate::Error::params(
            "threshold",
            format!("needs one channel, got {}", x.shape),
        ));
    }
    Ok(x.data.iter().map(|&p| u32::from(p > threshold)).collect())
}
