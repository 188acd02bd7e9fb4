//! resize: `torch.nn.functional.interpolate`, bilinear and legacy nearest (shaders/resize.wgsl).

use super::RESIZE;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Kernel, KernelSpec, Precision, Slot};
use crate::ops::{Resize, ResizeMode};
use crate::tensor::Shape;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    planes: u32,
    h_in: u32,
    w_in: u32,
    h_out: u32,
    w_out: u32,
    mode: u32,
    scale_h: f32,
    scale_w: f32,
}

/// The resize kernel for `input`. Outputs: `output` ([`Resize::output_shape`]). Inputs: `input`.
pub fn resize(
    gpu: &Gpu,
    label: &str,
    p: &Resize,
    input: Shape,
    precision: Precision,
) -> Result<Kernel> {
    let output = p.output_shape(input)?;
    let [scale_h, scale_w] = p.source_scales(input, output);
    let u = |v: usize| v as u32;
    let params = Params {
        planes: u(input.n * input.c),
        h_in: u(input.h),
        w_in: u(input.w),
        h_out: u(output.h),
        w_out: u(output.w),
        mode: match p.mode {
            ResizeMode::Bilinear {
                align_corners: false,
            } => 0,
            ResizeMode::Bilinear {
                align_corners: true,
            } => 1,
            ResizeMode::Nearest => 2,
            ResizeMode::Linear { .. } | ResizeMode::NearestOnnx { .. } => {
                return Err(crate::error::Error::params(
                    "resize",
                    format!("{:?} is not yet implemented on the GPU", p.mode),
                ))
            }
        },
        scale_h,
        scale_w,
    };
    Kernel::new(
        gpu,
        KernelSpec {
            label: format!("{label} (resize)"),
            shader: RESIZE,
            precision,
            entry: "resize",
            constants: &[],
            uniforms: bytemuck::bytes_of(&params),
            dispatch: Dispatch::Linear(output.numel() as u64),
            outputs: vec![Slot::floats("output", output.numel(), precision)],
            inputs: vec![Slot::floats("input", input.numel(), precision)],
        },
    )
}
