//! Reference group normalisation.

use crate::error::{Error, Result};
use crate::ops::GroupNorm;
use crate::tensor::Tensor;

/// `F.group_norm(x, groups, weight, bias, eps)` followed by `p.activation`: two-pass mean and biased variance in
/// f64 over each group of every image.
pub fn group_norm(p: &GroupNorm, x: &Tensor, weight: &[f32], bias: &[f32]) -> Result<Tensor> {
    let s = p.output_shape(x.shape)?;
    if weight.len() != p.channels || bias.len() != p.channels {
        return Err(Error::shape(
            "group_norm",
            format!(
                "weight and bias need {} values, got {} and {}",
                p.channels,
                weight.len(),
                bias.len()
            ),
        ));
    }
    let span = p.channels_per_group() * s.plane();
    let mut out = Tensor::zeros(s);
    for (g, (src, dst)) in x
        .data
        .chunks(span)
        .zip(out.data.chunks_mut(span))
        .enumerate()
    {
        let mean = src.iter().map(|&v| v as f64).sum::<f64>() / span as f64;
        let var = src.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / span as f64;
        let inv = 1.0 / (var + p.eps).sqrt();
        let first = (g % p.groups) * p.channels_per_group();
        for (i, (&v, o)) in src.iter().zip(dst.iter_mut()).enumerate() {
            let c = first + i / s.plane();
            let y = (v as f64 - mean) * inv * weight[c] as f64 + bias[c] as f64;
            *o = p.activation.apply(y) as f32;
        }
    }
    Ok(out)
}
