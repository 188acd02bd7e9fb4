//! softmax and argmax over channels (shaders/softmax.wgsl).

use super::SOFTMAX;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Kernel, KernelSpec, Precision, Slot};
use crate::ops::{Argmax, Softmax, Threshold};
use crate::tensor::Shape;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c: u32,
    plane: u32,
    threshold: f32,
}

fn params(input: Shape) -> Params {
    Params {
        n: input.n as u32,
        c: input.c as u32,
        plane: input.plane() as u32,
        threshold: 0.0,
    }
}

/// Softmax over the channels of `input`. Outputs: `output` (same shape as `input`). Inputs: `input`.
pub fn softmax(
    gpu: &Gpu,
    label: &str,
    p: &Softmax,
    input: Shape,
    precision: Precision,
) -> Result<Kernel> {
    let output = p.output_shape(input)?;
    Kernel::new(
        gpu,
        KernelSpec {
            label: format!("{label} (softmax)"),
            shader: SOFTMAX,
            precision,
            entry: "softmax",
            constants: &[],
            uniforms: bytemuck::bytes_of(&params(input)),
            dispatch: Dispatch::Linear((input.n * input.plane()) as u64),
            outputs: vec![Slot::floats("output", output.numel(), precision)],
            inputs: vec![Slot::floats("input", input.numel(), precision)],
        },
    )
}

/// Argmax over the channels of `input`, ties to the first channel. Outputs: `classes` (u32, `N x 1 x H x W`).
/// Inputs: `input`.
pub fn argmax(
    gpu: &Gpu,
    label: &str,
    p: &Argmax,
    input: Shape,
    precision: Precision,
) -> Result<Kernel> {
    let output = p.output_shape(input)?;
    Kernel::new(
        gpu,
        KernelSpec {
            label: format!("{label} (argmax)"),
            shader: SOFTMAX,
            precision,
            entry: "argmax",
            constants: &[],
            uniforms: bytemuck::bytes_of(&params(input)),
            dispatch: Dispatch::Linear(output.numel() as u64),
            outputs: vec![Slot::elements("classes", output.numel())],
            inputs: vec![Slot::floats("input", input.numel(), precision)],
        },
    )
}

/// The class map of a one-channel probability map: 1 where `p > threshold`, else 0. Outputs: `classes` (u32,
/// `N x 1 x H x W`). Inputs: `input` (`N x 1 x H x W`).
pub fn threshold(
    gpu: &Gpu,
    label: &str,
    p: &Threshold,
    input: Shape,
    precision: Precision,
) -> Result<Kernel> {
    let output = p.output_shape(input)?;
    let threshold = p.value;
    Kernel::new(
        gpu,
        KernelSpec {
            label: format!("{label} (threshold)"),
            shader: SOFTMAX,
            precision,
            entry: "threshold",
            constants: &[],
            uniforms: bytemuck::bytes_of(&Params {
                threshold,
                ..params(input)
            }),
            dispatch: Dispatch::Linear(output.numel() as u64),
            outputs: vec![Slot::elements("classes", output.numel())],
            inputs: vec![Slot::floats("input", input.numel(), precision)],
        },
    )
}
