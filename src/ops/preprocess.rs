//! Image preprocessing: 8-bit RGB or RGBA pixels, resized (bilinear, align_corners=False) and normalised into an f32
//! NCHW tensor of batch 1.

use super::positive;
use crate::error::{Error, Result};
use crate::tensor::Shape;

/// The layout of the 8-bit source image: rows of `width * channels` bytes, no row padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLayout {
    pub width: usize,
    pub height: usize,
    /// 3 (RGB) or 4 (RGBA; alpha is ignored).
    pub channels: usize,
}

impl ImageLayout {
    pub fn bytes(&self) -> usize {
        self.width * self.height * self.channels
    }
}

/// Channel order of the model's input tensor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChannelOrder {
    #[default]
    Rgb,
    Bgr,
}

/// `out[c] = (pixel[c] * value_scale - mean[c]) / std[c]`, after resizing to `size`.
/// torchvision's presets: `value_scale = 1/255`, ImageNet mean and std.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    /// Output (h, w).
    pub size: [usize; 2],
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Multiplies the 8-bit value: 1/255 for inputs in [0, 1], 1 for [0, 255].
    pub value_scale: f32,
    pub channel_order: ChannelOrder,
}

impl Preprocess {
    pub fn output_shape(&self, image: ImageLayout) -> Result<Shape> {
        const OP: &str = "preprocess";
        positive(OP, "image size", &[image.width, image.height])?;
        positive(OP, "output size", &self.size)?;
        if image.channels != 3 && image.channels != 4 {
            return Err(Error::params(
                OP,
                format!("image must have 3 or 4 channels, got {}", image.channels),
            ));
        }
        if self.std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            return Err(Error::params(
                OP,
                format!("std must be finite and non-zero, got {:?}", self.std),
            ));
        }
        Ok(Shape::new(1, 3, self.size[0], self.size[1]))
    }
}
