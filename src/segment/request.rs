//! What a caller asks of one frame: where the frame comes from, which outputs to produce at which size, where each
//! goes (an application's texture or buffer, or a readback), and the checks that make a bad request an error
//! before anything is recorded.

use crate::error::{Error, Result};
use crate::ops::{Encoding, TexelEncoding};
use image::RgbaImage;

/// A rectangle of a texture, in texels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// Where a frame comes from.
#[derive(Clone, Copy, Debug)]
pub enum Frame<'a> {
    /// An 8-bit RGBA image in host memory: uploaded as it is, with no conversion on the host.
    Image(&'a RgbaImage),
    /// A texture on the segmenter's device, read in place by the preprocessing kernel: Rgba8Unorm, Rgba8UnormSrgb,
    /// Bgra8Unorm, Bgra8UnormSrgb or Rgba16Float, two-dimensional, single-sampled, with TEXTURE_BINDING usage.
    /// `region` (all of mip level 0 when `None`) is the part segmented; moving it from frame to frame costs an
    /// 8-byte write, while changing its size compiles a plan for the new size (once).
    Texture {
        texture: &'a wgpu::Texture,
        region: Option<Region>,
    },
    /// Raw band values in host memory, band-major (`channels x height x width` f32, e.g. a window of a
    /// multispectral scene): uploaded as they are and normalised per band on the GPU with the model's
    /// [`crate::model::PreprocessSpec::bands`] (none: the values as they are), then resized to the model's input
    /// size if its policy asks. `channels` must be the model's input channel count.
    Bands {
        data: &'a [f32],
        channels: usize,
        width: usize,
        height: usize,
    },
}

/// The size outputs are produced at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// The frame's (or its region's) size: logits resized bilinearly before softmax and argmax, as `segment` does.
    #[default]
    Frame,
    /// The model's output size, without resizing: cheaper, for callers that scale the mask themselves.
    Model,
}

/// Where an output goes.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// A two-dimensional texture of exactly the output's size with COPY_DST usage; its format chooses the
    /// encoding (see [`Request`]). Written to mip level 0.
    Texture(&'a wgpu::Texture),
    /// A buffer with COPY_DST usage, written from `offset` (a multiple of 4) on, rows tightly packed.
    Buffer {
        buffer: &'a wgpu::Buffer,
        offset: u64,
    },
}

/// The probability of one class as a soft mask (background blur or replacement).
#[derive(Clone, Copy, Debug)]
pub struct Mask<'a> {
    /// The class whose probability is written. For a one-channel model (a person or foreground probability), class
    /// 1 is that probability and class 0 its complement.
    pub class: usize,
    /// An R32Float or R16Float texture, or a buffer of one f32 per pixel.
    pub target: Target<'a>,
}

/// What to read back to the host, asynchronously.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Readback {
    /// The class map.
    Classes,
    /// The class map and every class's probability.
    ClassesAndProbabilities,
}

/// The outputs of one frame. Everything is produced on the GPU in the frame's one submission; nothing is read back
/// unless `readback` asks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Request<'a> {
    pub resolution: Resolution,
    /// The class map: an R8Uint texture (classes above 255 saturate) or an R32Uint one, or a buffer of one u32 per
    /// pixel.
    pub classes: Option<Target<'a>>,
    /// The class map in the segmenter's palette: an Rgba8Unorm, Rgba8UnormSrgb, Bgra8Unorm or Bgra8UnormSrgb
    /// texture (the palette's bytes as they are, alpha 255), or a buffer of one RGBA word per pixel.
    pub colours: Option<Target<'a>>,
    pub mask: Option<Mask<'a>>,
    pub readback: Option<Readback>,
}

/// Checks that band-major `data` holds `channels x height x width` values, none of the sizes zero.
pub(crate) fn check_bands(
    data: &[f32],
    channels: usize,
    width: usize,
    height: usize,
) -> Result<()> {
    let want = channels
        .checked_mul(width)
        .and_then(|n| n.checked_mul(height));
    if channels == 0 || width == 0 || height == 0 || want != Some(data.len()) {
        return Err(Error::Frame(format!(
            "a band frame of {channels} bands of {width}x{height} holds {} values, got {}",
            want.map_or("too many".to_string(), |n| n.to_string()),
            data.len()
        )));
    }
    Ok(())
}

/// The encoding of a frame texture, or an error naming the format.
pub(crate) fn texel_encoding(texture: &wgpu::Texture) -> Result<TexelEncoding> {
    use wgpu::TextureFormat as F;
    let encoding = match texture.format() {
        F::Rgba8Unorm | F::Bgra8Unorm => TexelEncoding::Unorm8,
        F::Rgba8UnormSrgb | F::Bgra8UnormSrgb => TexelEncoding::Srgb8,
        F::Rgba16Float => TexelEncoding::Float,
        other => {
            return Err(Error::Frame(format!(
                "a frame texture of format {other:?}: atrous reads Rgba8Unorm, Rgba8UnormSrgb, Bgra8Unorm, \
                 Bgra8UnormSrgb and Rgba16Float"
            )))
        }
    };
    if !texture
        .usage()
        .contains(wgpu::TextureUsages::TEXTURE_BINDING)
    {
        return Err(Error::Frame(format!(
            "the frame texture has usage {:?}; reading it needs TEXTURE_BINDING",
            texture.usage()
        )));
    }
    if texture.dimension() != wgpu::TextureDimension::D2 || texture.sample_count() != 1 {
        return Err(Error::Frame(format!(
            "the frame texture is {:?} with {} samples; atrous reads single-sampled 2D textures",
            texture.dimension(),
            texture.sample_count()
        )));
    }
    Ok(encoding)
}

/// The region of `texture` a frame covers, checked to lie inside it and to be non-empty.
pub(crate) fn texture_region(texture: &wgpu::Texture, region: Option<Region>) -> Result<Region> {
    let (w, h) = (texture.width(), texture.height());
    let r = region.unwrap_or(Region {
        x: 0,
        y: 0,
        width: w,
        height: h,
    });
    let inside = r.width > 0
        && r.height > 0
        && r.x.checked_add(r.width).is_some_and(|e| e <= w)
        && r.y.checked_add(r.height).is_some_and(|e| e <= h);
    match inside {
        true => Ok(r),
        false => Err(Error::Frame(format!(
            "region {}x{} at ({}, {}) is not a non-empty part of the {w}x{h} frame texture",
            r.width, r.height, r.x, r.y
        ))),
    }
}

/// Which output a target receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    Classes,
    Colours,
    Mask(usize),
}

/// How a target is filled: a copy of the class map as it is (a u32 buffer), or of an encoding, with rows padded for
/// a texture copy or packed for a buffer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Delivery {
    Classes,
    Encoded { encoding: Encoding, padded: bool },
}

/// The delivery of `output` into `target`, or an error naming what does not fit (format, usage, alignment).
pub(crate) fn delivery(
    output: Output,
    target: &Target<'_>,
    palette: &[[u8; 3]],
) -> Result<Delivery> {
    use wgpu::TextureFormat as F;
    let texture = match target {
        Target::Texture(t) => Some(t),
        Target::Buffer { buffer, offset } => {
            if !buffer.usage().contains(wgpu::BufferUsages::COPY_DST) || offset % 4 != 0 {
                return Err(Error::Frame(format!(
                    "a target buffer needs COPY_DST usage and an offset that is a multiple of 4, got {:?} at {offset}",
                    buffer.usage()
                )));
            }
            None
        }
    };
    let format = texture.map(|t| t.format());
    let encoding = match (output, format) {
        (Output::Classes, None) => return Ok(Delivery::Classes),
        (Output::Classes, Some(F::R8Uint)) => Encoding::ClassesU8,
        (Output::Classes, Some(F::R32Uint)) => Encoding::ClassesU32,
        (Output::Colours, None | Some(F::Rgba8Unorm | F::Rgba8UnormSrgb)) => Encoding::Colours {
            palette: palette.to_vec(),
            bgra: false,
        },
        (Output::Colours, Some(F::Bgra8Unorm | F::Bgra8UnormSrgb)) => Encoding::Colours {
            palette: palette.to_vec(),
            bgra: true,
        },
        (Output::Mask(class), None | Some(F::R32Float)) => Encoding::ProbabilityF32 { class },
        (Output::Mask(class), Some(F::R16Float)) => Encoding::ProbabilityF16 { class },
        (output, Some(format)) => {
            let allowed = match output {
                Output::Classes => "R8Uint or R32Uint",
                Output::Colours => "Rgba8Unorm, Rgba8UnormSrgb, Bgra8Unorm or Bgra8UnormSrgb",
                Output::Mask(_) => "R32Float or R16Float",
            };
            return Err(Error::Frame(format!(
                "a {output:?} target texture of format {format:?}: it takes {allowed}"
            )));
        }
    };
    Ok(Delivery::Encoded {
        encoding,
        padded: texture.is_some(),
    })
}

/// Checks that `target` can take a `width x height` output: a texture of that size, or a buffer with room for the
/// output's `bytes` (outputs copied to buffers are packed; a texture's copy has its own row layout).
pub(crate) fn check_target(
    target: &Target<'_>,
    (width, height): (usize, usize),
    bytes: u64,
) -> Result<()> {
    match target {
        Target::Texture(t) => {
            if !t.usage().contains(wgpu::TextureUsages::COPY_DST) {
                return Err(Error::Frame(format!(
                    "a target texture has usage {:?}; writing it needs COPY_DST",
                    t.usage()
                )));
            }
            if (t.width() as usize, t.height() as usize) != (width, height)
                || t.dimension() != wgpu::TextureDimension::D2
                || t.sample_count() != 1
            {
                return Err(Error::Frame(format!(
                    "a target texture is {}x{} ({:?}, {} samples); the output is a {width}x{height} 2D texture",
                    t.width(),
                    t.height(),
                    t.dimension(),
                    t.sample_count()
                )));
            }
        }
        Target::Buffer { buffer, offset } => {
            if offset
                .checked_add(bytes)
                .is_none_or(|end| end > buffer.size())
            {
                return Err(Error::Frame(format!(
                    "a target buffer of {} bytes cannot take {bytes} bytes at offset {offset}",
                    buffer.size()
                )));
            }
        }
    }
    Ok(())
}
