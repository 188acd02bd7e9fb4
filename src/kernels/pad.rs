//! Zero padding to another tensor's size (shaders/pad.wgsl).

use super::PAD;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Kernel, KernelSpec, Precision, Slot};
use crate::ops::PadLike;
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
