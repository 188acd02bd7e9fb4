//! preprocess: 8-bit RGB/RGBA pixels to a normalised f32 NCHW tensor (shaders/preprocess.wgsl).

use super::{NORMALIZE, PREPROCESS};
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, GpuTensor, Kernel, KernelSpec, Precision, Slot, TensorData};
use crate::ops::{ChannelOrder, ImageLayout, Normalize, Preprocess, TexelEncoding};
use crate::tensor::Shape;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    w_in: u32,
    h_in: u32,
    channels: u32,
    h_out: u32,
    w_out: u32,
    bgr: u32,
    scale_h: f32,
    scale_w: f32,
    value_scale: f32,
    mean: [f32; 3],
    std: [f32; 3],
    texels: u32,
}

/// Packs pixel bytes four to a little-endian u32 word, zero-padding the last word: storage buffers hold 4-byte
/// elements and WGSL has no 8-bit type, so the shader unpacks bytes with shifts.
pub fn pack_bytes(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|chunk| {
            let mut word = [0u8; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            u32::from_le_bytes(word)
        })
        .collect()
}

/// The number of u32 words the packed bytes of `image` take.
pub fn image_words(image: ImageLayout) -> usize {
    image.bytes().div_ceil(4)
}

/// Checks, packs and uploads the pixel bytes of `image` as the kernel's `image` input (a `1 x 1 x 1 x words` u32
/// tensor).
pub fn upload_image(gpu: &Gpu, label: &str, image: ImageLayout, bytes: &[u8]) -> Result<GpuTensor> {
    image.check_bytes(bytes)?;
    let words = pack_bytes(bytes);
    gpu.upload(
        label,
        Shape::new(1, 1, 1, words.len()),
        TensorData::U32(&words),
    )
}

/// The preprocess kernel for `image`. Outputs: `output` (`1 x 3 x size[0] x size[1]`, floats in `precision`). Inputs: `image` (the
/// packed bytes, [`upload_image`] or [`pack_bytes`]).
/// The normalisation runs in f32; only the stored result is in `precision`.
pub fn preprocess(
    gpu: &Gpu,
    label: &str,
    p: &Preprocess,
    image: ImageLayout,
    precision: Precision,
) -> Result<Kernel> {
    kernel(gpu, label, p, image, None, precision)
}

/// The preprocess kernel reading a `width x height` region of a texture whose texels are `texels`. Outputs:
/// `output`. Inputs: `origin` (two u32: the region's x and y in the texture, set per run) and `frame` (the
/// texture, `texture_2d<f32>`).
pub fn preprocess_texture(
    gpu: &Gpu,
    label: &str,
    p: &Preprocess,
    (width, height): (usize, usize),
    texels: TexelEncoding,
    precision: Precision,
) -> Result<Kernel> {
    let image = ImageLayout {
        width,
        height,
        channels: 4,
    };
    kernel(gpu, label, p, image, Some(texels), precision)
}

fn kernel(
    gpu: &Gpu,
    label: &str,
    p: &Preprocess,
    image: ImageLayout,
    texels: Option<TexelEncoding>,
    precision: Precision,
) -> Result<Kernel> {
    let output = p.output_shape(image)?;
    let [scale_h, scale_w] = p.source_scales(image);
    let u = |v: usize| v as u32;
    let params = Params {
        w_in: u(image.width),
        h_in: u(image.height),
        channels: u(image.channels),
        h_out: u(output.h),
        w_out: u(output.w),
        bgr: (p.channel_order == ChannelOrder::Bgr) as u32,
        scale_h,
        scale_w,
        value_scale: p.value_scale,
        mean: p.mean,
        std: p.std,
        texels: match texels {
            None | Some(TexelEncoding::Unorm8) => 0,
            Some(TexelEncoding::Srgb8) => 1,
            Some(TexelEncoding::Float) => 2,
        },
    };
    let (entry, inputs) = match texels {
        None => (
            "preprocess",
            vec![Slot::elements("image", image_words(image))],
        ),
        Some(_) => (
            "preprocess_texture",
            vec![Slot::elements("origin", 2), Slot::texture("frame")],
        ),
    };
    Kernel::new(
        gpu,
        KernelSpec {
            label: format!("{label} (preprocess)"),
            shader: PREPROCESS,
            precision,
            entry,
            constants: &[],
            uniforms: bytemuck::bytes_of(&params),
            dispatch: Dispatch::Linear(output.numel() as u64),
            outputs: vec![Slot::floats("output", output.numel(), precision)],
            inputs,
        },
    )
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct NormalizeParams {
    total: u32,
    plane: u32,
    channels: u32,
}

/// The per-band normalisation kernel for raw bands of `input`'s shape (shaders/normalize.wgsl). Outputs: `output`
/// (floats in `precision`). Inputs: `bands` (u32 words holding f32 bits) and `stats` (f32: the means, then the
/// standard deviations; [`normalize_stats`]).
pub fn normalize(
    gpu: &Gpu,
    label: &str,
    p: &Normalize,
    input: Shape,
    precision: Precision,
) -> Result<Kernel> {
    let output = p.output_shape(input)?;
    let numel = u32::try_from(output.numel()).map_err(|_| {
        crate::error::Error::params("normalize", format!("{output} has more than 2^32 elements"))
    })?;
    let params = NormalizeParams {
        total: numel,
        plane: (output.h * output.w) as u32,
        channels: output.c as u32,
    };
    Kernel::new(
        gpu,
        KernelSpec {
            label: format!("{label} (normalize)"),
            shader: NORMALIZE,
            precision,
            entry: "normalize",
            constants: &[],
            uniforms: bytemuck::bytes_of(&params),
            dispatch: Dispatch::Linear(output.numel() as u64),
            outputs: vec![Slot::floats("output", output.numel(), precision)],
            inputs: vec![
                Slot::elements("bands", output.numel()),
                Slot::elements("stats", 2 * output.c),
            ],
        },
    )
}

/// The `stats` input of [`normalize`]: the means, then the standard deviations.
pub fn normalize_stats(p: &Normalize) -> Vec<f32> {
    p.mean.iter().chain(&p.std).copied().collect()
}
