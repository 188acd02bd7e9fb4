//! Reference preprocess: 8-bit pixels resized bilinearly (align_corners=False) and normalised.

use super::resize::bilinear_taps;
use crate::error::Result;
use crate::ops::{ChannelOrder, ImageLayout, Normalize, Preprocess};
use crate::tensor::Shape;
use crate::tensor::Tensor;

/// Interpolates the raw 0..255 values of `bytes` (rows of `width * channels`, no padding; alpha ignored) to
/// `p.size`, then `(v * value_scale - mean[c]) / std[c]`, giving a `1 x 3 x H x W` tensor in `p.channel_order`.
pub fn preprocess(p: &Preprocess, image: ImageLayout, bytes: &[u8]) -> Result<Tensor> {
    let o = p.output_shape(image)?;
    image.check_bytes(bytes)?;
    let [scale_h, scale_w] = p.source_scales(image);
    let pixel =
        |y: usize, x: usize, ch: usize| bytes[(y * image.width + x) * image.channels + ch] as f64;
    let mut out = Tensor::zeros(o);
    for c in 0..3 {
        let ch = match p.channel_order {
            ChannelOrder::Rgb => c,
            ChannelOrder::Bgr => 2 - c,
        };
        for oy in 0..o.h {
            let (y0, y1, ly0, ly1) = bilinear_taps(oy, image.height, o.h, scale_h, false);
            for ox in 0..o.w {
                let (x0, x1, lx0, lx1) = bilinear_taps(ox, image.width, o.w, scale_w, false);
                let v = ly0 * (lx0 * pixel(y0, x0, ch) + lx1 * pixel(y0, x1, ch))
                    + ly1 * (lx0 * pixel(y1, x0, ch) + lx1 * pixel(y1, x1, ch));
                let normalised = (v * p.value_scale as f64 - p.mean[c] as f64) / p.std[c] as f64;
                out.data[o.index(0, c, oy, ox)] = normalised as f32;
            }
        }
    }
    Ok(out)
}

/// Reference per-band normalisation: `(v - mean[c]) / std[c]` in f64 over raw values `raw` of `shape` (NCHW).
pub fn normalize(p: &Normalize, shape: Shape, raw: &[f32]) -> Result<Tensor> {
    let o = p.output_shape(shape)?;
    if raw.len() != o.numel() {
        return Err(crate::error::Error::shape(
            "normalize",
            format!("{o} holds {} values, got {}", o.numel(), raw.len()),
        ));
    }
    let plane = o.h * o.w;
    let data = raw
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / plane) % o.c;
            ((v as f64 - p.mean[c] as f64) / p.std[c] as f64) as f32
        })
        .collect();
    Ok(Tensor { shape: o, data })
}
