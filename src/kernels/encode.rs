//! encode: class maps and probabilities as texel rows for copies into an application's textures
//! (shaders/encode.wgsl for class maps and colours, shaders/encode_probability.wgsl for probabilities).

use super::{ENCODE, ENCODE_PROBABILITY};
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Kernel, KernelSpec, Precision, Slot};
use crate::ops::{Encode, Encoding};
use crate::tensor::Shape;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    h: u32,
    w: u32,
    c: u32,
    row_words: u32,
    class: u32,
    palette_len: u32,
    bgra: u32,
    pad: u32,
}

/// The palette of [`Encoding::Colours`] as the kernel's `palette` input: one little-endian RGBA word per colour,
/// alpha 255.
pub fn palette_words(palette: &[[u8; 3]]) -> Vec<u32> {
    palette
        .iter()
        .map(|&[r, g, b]| u32::from_le_bytes([r, g, b, 255]))
        .collect()
}

/// The encode kernel for `input` (a class map, or probabilities in `precision`). Outputs: `output` (u32,
/// `1 x 1 x H x row_words`). Inputs: `classes` and, for colours, `palette` ([`palette_words`]); or
/// `probabilities`.
pub fn encode(
    gpu: &Gpu,
    label: &str,
    e: &Encode,
    input: Shape,
    precision: Precision,
) -> Result<Kernel> {
    let output = e.output_shape(input)?;
    let u = |v: usize| v as u32;
    let (entry, class, palette_len, bgra) = match &e.encoding {
        Encoding::ClassesU8 => ("classes_u8", 0, 0, false),
        Encoding::ClassesU32 => ("classes_u32", 0, 0, false),
        Encoding::Colours { palette, bgra } => ("colours", 0, palette.len(), *bgra),
        Encoding::ProbabilityF32 { class } => ("probability_f32", *class, 0, false),
        Encoding::ProbabilityF16 { class } => ("probability_f16", *class, 0, false),
    };
    let params = Params {
        h: u(input.h),
        w: u(input.w),
        c: u(input.c),
        row_words: u(e.row_words),
        class: u(class),
        palette_len: u(palette_len),
        bgra: bgra as u32,
        pad: 0,
    };
    let (shader, inputs) = match e.encoding.reads_classes() {
        true => {
            let mut inputs = vec![Slot::elements("classes", input.numel())];
            if palette_len > 0 {
                inputs.push(Slot::elements("palette", palette_len));
            }
            (ENCODE, inputs)
        }
        false => (
            ENCODE_PROBABILITY,
            vec![Slot::floats("probabilities", input.numel(), precision)],
        ),
    };
    Kernel::new(
        gpu,
        KernelSpec {
            label: format!("{label} (encode {entry})"),
            shader,
            precision,
            entry,
            constants: &[],
            uniforms: bytemuck::bytes_of(&params),
            dispatch: Dispatch::Linear(output.numel() as u64),
            outputs: vec![Slot::elements("output", output.numel())],
            inputs,
        },
    )
}
