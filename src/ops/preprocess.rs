//! Image preprocessing: 8-bit RGB or RGBA pixels, resized (bilinear, align_corners=False) and normalised into an f32
//! NCHW tensor of batch 1.

use super::{positive, Resize, ResizeMode, ResizeTarget};
use crate::error::{Error, Result};
use crate::tensor::Shape;
use serde::{Deserialize, Serialize};

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
        // Saturates so absurd layouts fail size checks instead of overflowing.
        self.width
            .saturating_mul(self.height)
            .saturating_mul(self.channels)
    }

    /// Checks that `bytes` holds exactly the pixels of this image.
    pub fn check_bytes(&self, bytes: &[u8]) -> Result<()> {
        if bytes.len() != self.bytes() {
            return Err(Error::shape(
                "preprocess",
                format!(
                    "a {}x{} image with {} channels has {} bytes, got {}",
                    self.width,
                    self.height,
                    self.channels,
                    self.bytes(),
                    bytes.len()
                ),
            ));
        }
        Ok(())
    }
}

/// Channel order of the model's input tensor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelOrder {
    #[default]
    Rgb,
    Bgr,
}

/// `out[c] = (pixel[c] * value_scale - mean[c]) / std[c]`, after resizing to `size`.
/// torchvision's presets: `value_scale = 1/255`, ImageNet mean and std.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

    /// The f32 source-coordinate scales (h, w) of the bilinear, align_corners=False resize from `image` to `size`.
    pub fn source_scales(&self, image: ImageLayout) -> [f32; 2] {
        let resize = Resize {
            mode: ResizeMode::Bilinear {
                align_corners: false,
            },
            target: ResizeTarget::Size(self.size),
        };
        resize.source_scales(
            Shape::new(1, 3, image.height, image.width),
            Shape::new(1, 3, self.size[0], self.size[1]),
        )
    }
}

/// Where a [`Preprocess`] node reads its image from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImageSource {
    /// Its one input: 8-bit RGBA pixels packed one to a u32 word (red in the low byte), a `1 x 1 x H x W` u32
    /// tensor. Alpha is ignored.
    Pixels,
    /// A texture bound when the plan runs (no input tensor): a `width x height` region of it, whose origin is given
    /// per run.
    Texture {
        width: usize,
        height: usize,
        texels: TexelEncoding,
    },
}

/// How a texture's texels map to the 0..255 values a model's normalisation expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TexelEncoding {
    /// 8-bit unorm (Rgba8Unorm, Bgra8Unorm): the stored byte.
    Unorm8,
    /// 8-bit sRGB (Rgba8UnormSrgb, Bgra8UnormSrgb): the shader reads linear values, re-encoded to the stored byte,
    /// so the model sees the same values as from the same pixels in a PNG.
    Srgb8,
    /// Float texels (Rgba16Float) taken as display values in [0, 1] and scaled by 255, unrounded.
    Float,
}

impl ImageSource {
    /// The image's layout given the node's input shapes (`[1 x 1 x H x W]` for pixels, none for a texture).
    pub fn layout(&self, inputs: &[Shape]) -> Result<ImageLayout> {
        const OP: &str = "preprocess";
        let (width, height) = match (self, inputs) {
            (ImageSource::Pixels, [s]) if s.n == 1 && s.c == 1 => (s.w, s.h),
            (ImageSource::Pixels, _) => {
                return Err(Error::params(
                    OP,
                    format!(
                        "pixels come as one 1 x 1 x H x W tensor of RGBA words, got {inputs:?}"
                    ),
                ))
            }
            (ImageSource::Texture { width, height, .. }, []) => (*width, *height),
            (ImageSource::Texture { .. }, _) => {
                return Err(Error::params(OP, "a texture source takes no input tensor"))
            }
        };
        Ok(ImageLayout {
            width,
            height,
            channels: 4,
        })
    }
}

/// Per-band normalisation of raw band values: `out[c] = (v[c] - mean[c]) / std[c]`, for any number of bands.
/// Its input is a `1 x C x H x W` u32 tensor of f32 bit patterns (an [`crate::graph::InputKind::Bands`] graph
/// input), so raw values such as 16-bit reflectances keep full f32 precision whatever the plan's precision; the
/// arithmetic runs in f32 and only the result is stored in the plan's precision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalize {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalize {
    /// The output shape for an input of `input`'s shape: the same, checked against the band count.
    pub fn output_shape(&self, input: Shape) -> Result<Shape> {
        const OP: &str = "normalize";
        positive(OP, "input size", &input.dims())?;
        if self.mean.len() != input.c || self.std.len() != input.c {
            return Err(Error::params(
                OP,
                format!(
                    "{} bands need {0} means and {0} standard deviations, got {} and {}",
                    input.c,
                    self.mean.len(),
                    self.std.len()
                ),
            ));
        }
        if self.std.iter().any(|s| *s == 0.0 || !s.is_finite())
            || self.mean.iter().any(|m| !m.is_finite())
        {
            return Err(Error::params(
                OP,
                format!(
                    "mean must be finite and std finite and non-zero, got {:?} and {:?}",
                    self.mean, self.std
                ),
            ));
        }
        Ok(input)
    }

    /// The identity for `bands` bands (mean 0, std 1).
    pub fn identity(bands: usize) -> Self {
        Normalize {
            mean: vec![0.0; bands],
            std: vec![1.0; bands],
        }
    }
}
