//! resize: `torch.nn.functional.interpolate`, bilinear and legacy nearest; ONNX Resize linear and nearest
//! (shaders/resize.wgsl).

use super::RESIZE;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Kernel, KernelSpec, Precision, Slot};
use crate::ops::{NearestRounding, OnnxAxis, Resize, ResizeMode};
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
    rounding: u32,
    pad: [u32; 3],
    axis_h: [f32; 4],
    axis_w: [f32; 4],
}

fn axis_uniform(a: &OnnxAxis) -> [f32; 4] {
    [a.offset, a.multiplier, a.divisor, a.shift]
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
    let unused = OnnxAxis {
        offset: 0.0,
        multiplier: 0.0,
        divisor: 1.0,
        shift: 0.0,
    };
    let [axis_h, axis_w] = p.onnx_axes(input, output).unwrap_or([unused; 2]);
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
            ResizeMode::Linear { .. } => 3,
            ResizeMode::NearestOnnx { .. } => 4,
        },
        scale_h,
        scale_w,
        rounding: match p.mode {
            ResizeMode::NearestOnnx { rounding, .. } => rounding.code(),
            _ => NearestRounding::RoundPreferFloor.code(),
        },
        pad: [0; 3],
        axis_h: axis_uniform(&axis_h),
        axis_w: axis_uniform(&axis_w),
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
            dispatch: Dispatch::Linear(super::elementwise::row_runs(output)),
            outputs: vec![Slot::floats("output", output.numel(), precision)],
            inputs: vec![Slot::floats("input", input.numel(), precision)],
        },
    )
}
