//! Padding (shaders/pad.wgsl): zero padding to another tensor's size, and ONNX Slice / Pad as one gather.

use super::PAD;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Kernel, KernelSpec, Precision, Slot};
use crate::ops::{PadLike, PadMode, SlicePad};
use crate::tensor::Shape;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    planes: u32,
    h: u32,
    w: u32,
    out_h: u32,
    out_w: u32,
    top: u32,
    left: u32,
    pad: u32,
}

/// `input` zero-padded to the height and width of `like`. Outputs: `output` ([`PadLike::output_shape`]). Inputs:
/// `input`. Both are stored in `precision`.
pub fn pad_like(
    gpu: &Gpu,
    label: &str,
    input: Shape,
    like: Shape,
    precision: Precision,
) -> Result<Kernel> {
    let out = PadLike.output_shape(input, like)?;
    let (top, left) = PadLike.offsets(input, like);
    let u = |v: usize| v as u32;
    let params = Params {
        planes: u(input.n * input.c),
        h: u(input.h),
        w: u(input.w),
        out_h: u(out.h),
        out_w: u(out.w),
        top: u(top),
        left: u(left),
        pad: 0,
    };
    Kernel::new(
        gpu,
        KernelSpec {
            label: format!("{label} (pad to {}x{})", out.h, out.w),
            shader: PAD,
            precision,
            entry: "pad_like",
            constants: &[],
            uniforms: bytemuck::bytes_of(&params),
            dispatch: Dispatch::Linear(out.numel() as u64),
            outputs: vec![Slot::floats("output", out.numel(), precision)],
            inputs: vec![Slot::floats("input", input.numel(), precision)],
        },
    )
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SlicePadParams {
    in_dims: [u32; 4],
    out_dims: [u32; 4],
    start: [i32; 4],
    step: [i32; 4],
    mode: u32,
    value: f32,
    pad: [u32; 2],
}

/// ONNX Slice / Pad ([`SlicePad`]). Outputs: `output` ([`SlicePad::output_shape`]). Inputs: `input`. Both in
/// `precision` (a constant pad value is rounded to it).
pub fn slice_pad(
    gpu: &Gpu,
    label: &str,
    p: &SlicePad,
    input: Shape,
    precision: Precision,
) -> Result<Kernel> {
    let out = p.output_shape(input)?;
    // output_shape bounds every source index (and so start) by i32, and the output by 2^32 elements; a step
    // beyond i32 cannot occur with more than one output (its second index would be out of range).
    let i32_of = |v: i64| v.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
    let (mode, value) = match p.mode {
        PadMode::Constant { value } => (0, value),
        PadMode::Reflect => (1, 0.0),
        PadMode::Edge => (2, 0.0),
    };
    let params = SlicePadParams {
        in_dims: input.dims().map(|d| d as u32),
        out_dims: out.dims().map(|d| d as u32),
        start: p.start.map(i32_of),
        step: p.step.map(i32_of),
        mode,
        value,
        pad: [0; 2],
    };
    Kernel::new(
        gpu,
        KernelSpec {
            label: format!("{label} (slice_pad)"),
            shader: PAD,
            precision,
            entry: "slice_pad",
            constants: &[],
            uniforms: bytemuck::bytes_of(&params),
            dispatch: Dispatch::Linear(out.numel() as u64),
            outputs: vec![Slot::floats("output", out.numel(), precision)],
            inputs: vec![Slot::floats("input", input.numel(), precision)],
        },
    )
}
