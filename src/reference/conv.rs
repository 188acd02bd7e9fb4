//! Reference convolution and transposed convolution.

use crate::error::{Error, Result};
use crate::ops::{Conv2d, ConvTranspose2d, ConvWeights};
use crate::tensor::{Shape, Tensor};

/// `act(bn(conv2d(x) + bias) + residual)`, returning the `N x out_channels x H x W` result (the channel offset of
/// `p` is the caller's business; see [`super::place_channels`]).
pub fn conv2d(
    p: &Conv2d,
    input: &Tensor,
    w: &ConvWeights,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    let dest = p.output_shape(input.shape)?;
    w.check("conv2d", p.weight_shape(), p.out_channels)?;
    let out_shape = Shape::new(dest.n, p.out_channels, dest.h, dest.w);
    if p.residual != residual.is_some() || residual.is_some_and(|r| r.shape != out_shape) {
        return Err(Error::shape(
            "conv2d",
            format!("residual must be given exactly when enabled, of shape {out_shape}"),
        ));
    }
    let s = input.shape;
    let [_, cin_g, kh, kw] = p.weight_shape();
    let cout_g = p.out_channels / p.groups;
    let mut out = Tensor::zeros(out_shape);
    for n in 0..out_shape.n {
        for co in 0..p.out_channels {
            let g = co / cout_g;
            let bias = w.bias.as_ref().map_or(0.0, |b| b[co] as f64);
            for oy in 0..out_shape.h {
                for ox in 0..out_shape.w {
                    let mut acc = 0.0f64;
                    for ci in 0..cin_g {
                        for ky in 0..kh {
                            let y = (oy * p.stride[0] + ky * p.dilation[0]) as isize
                                - p.padding.top as isize;
                            if y < 0 || y >= s.h as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let x = (ox * p.stride[1] + kx * p.dilation[1]) as isize
                                    - p.padding.left as isize;
                                if x < 0 || x >= s.w as isize {
                                    continue;
                                }
                                let xv = input.at(n, g * cin_g + ci, y as usize, x as usize) as f64;
                                let wv = w.weight[((co * cin_g + ci) * kh + ky) * kw + kx] as f64;
                                acc += xv * wv;
                            }
                        }
                    }
                    let mut v = acc + bias;
                    if let Some(bn) = &w.batch_norm {
                        v = (v - bn.running_mean[co] as f64)
                            / (bn.running_var[co] as f64 + bn.eps).sqrt()
                            * bn.weight[co] as f64
                            + bn.bias[co] as f64;
                    }
                    if let Some(r) = residual {
                        v += r.at(n, co, oy, ox) as f64;
                    }
                    let i = out_shape.index(n, co, oy, ox);
                    out.data[i] = p.activation.apply(v) as f32;
                }
            }
        }
    }
    Ok(out)
}

/// `act(bn(conv_transpose2d(x) + bias))` in the textbook scatter form: every input element adds its value times the
/// kernel into the outputs it reaches, at `iy * stride - padding + ky * dilation` (taps cropped by the padding or
/// beyond the output are dropped). Deliberately unlike the GPU's gather form, so the two check each other. Returns
/// the `N x out_channels x H x W` result; a channel offset into a larger destination is the caller's to apply.
pub fn conv_transpose2d(p: &ConvTranspose2d, input: &Tensor, w: &ConvWeights) -> Result<Tensor> {
    let out_shape = p.output_shape(input.shape)?.with_c(p.out_channels);
    w.check("conv_transpose2d", p.weight_shape(), p.out_channels)?;
    let s = input.shape;
    let [_, cout_g, kh, kw] = p.weight_shape();
    let cin_g = p.in_channels / p.groups;
    let mut acc = vec![0.0f64; out_shape.numel()];
    for n in 0..s.n {
        for ci in 0..s.c {
            let g = ci / cin_g;
            for iy in 0..s.h {
                for ix in 0..s.w {
                    let xv = input.at(n, ci, iy, ix) as f64;
                    for col in 0..cout_g {
                        let co = g * cout_g + col;
                        for ky in 0..kh {
                            let oy = (iy * p.stride[0] + ky * p.dilation[0]) as isize
                                - p.padding[0] as isize;
                            if oy < 0 || oy >= out_shape.h as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ox = (ix * p.stride[1] + kx * p.dilation[1]) as isize
                                    - p.padding[1] as isize;
                                if ox < 0 || ox >= out_shape.w as isize {
                                    continue;
                                }
                                let wv = w.weight[((ci * cout_g + col) * kh + ky) * kw + kx] as f64;
                                acc[out_shape.index(n, co, oy as usize, ox as usize)] += xv * wv;
                            }
                        }
                    }
                }
            }
        }
    }
    let mut out = Tensor::zeros(out_shape);
    for n in 0..out_shape.n {
        for co in 0..out_shape.c {
            let bias = w.bias.as_ref().map_or(0.0, |b| b[co] as f64);
            for y in 0..out_shape.h {
                for x in 0..out_shape.w {
                    let i = out_shape.index(n, co, y, x);
                    let mut v = acc[i] + bias;
                    if let Some(bn) = &w.batch_norm {
                        v = (v - bn.running_mean[co] as f64)
                            / (bn.running_var[co] as f64 + bn.eps).sqrt()
                            * bn.weight[co] as f64
                            + bn.bias[co] as f64;
                    }
                    out.data[i] = p.activation.apply(v) as f32;
                }
            }
        }
    }
    Ok(out)
}
