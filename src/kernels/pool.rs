//! pool kernels (shaders/pool.wgsl): max_pool2d (with or without indices), avg_pool2d, adaptive_avg_pool2d and
//! max_unpool2d.

use super::POOL;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Kernel, KernelSpec, Precision, Slot};
use crate::ops::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d, MaxUnpool2d};
use crate::tensor::Shape;

/// Mirrors `Params` in shaders/pool.wgsl; shared by every entry point, each reading the fields it needs.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c: u32,
    h_in: u32,
    w_in: u32,
    h_out: u32,
    w_out: u32,
    k_h: u32,
    k_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_h: u32,
    pad_w: u32,
    dil_h: u32,
    dil_w: u32,
    count_include_pad: u32,
    total: u32,
}

fn u(v: usize) -> u32 {
    v as u32
}

/// The shape part of the parameters; `total` is the output element count.
fn params(input: Shape, output: Shape) -> Params {
    Params {
        n: u(input.n),
        c: u(input.c),
        h_in: u(input.h),
        w_in: u(input.w),
        h_out: u(output.h),
        w_out: u(output.w),
        total: u(output.numel()),
        ..Params::default()
    }
}

fn kernel(
    gpu: &Gpu,
    label: String,
    entry: &'static str,
    params: &Params,
    outputs: Vec<Slot>,
    inputs: Vec<Slot>,
    precision: Precision,
) -> Result<Kernel> {
    Kernel::new(
        gpu,
        KernelSpec {
            label,
            shader: POOL,
            precision,
            entry,
            constants: &[],
            uniforms: bytemuck::bytes_of(params),
            dispatch: Dispatch::Linear(params.total as u64),
            outputs,
            inputs,
        },
    )
}

/// The max_pool2d kernel for `input`. Outputs: `output` ([`MaxPool2d::output_shape`]), then, only when
/// `p.return_indices`, `indices` (u32, same shape: the flat `h * w` index of each maximum in its input plane; ties
/// keep the first in scan order, as PyTorch's CPU kernel). Inputs: `input`.
pub fn max_pool2d(
    gpu: &Gpu,
    label: &str,
    p: &MaxPool2d,
    input: Shape,
    precision: Precision,
) -> Result<Kernel> {
    let out = p.output_shape(input)?;
    let params = Params {
        k_h: u(p.kernel[0]),
        k_w: u(p.kernel[1]),
        stride_h: u(p.stride[0]),
        stride_w: u(p.stride[1]),
        pad_h: u(p.padding[0]),
        pad_w: u(p.padding[1]),
        dil_h: u(p.dilation[0]),
        dil_w: u(p.dilation[1]),
        ..params(input, out)
    };
    let mut outputs = vec![Slot::floats("output", out.numel(), precision)];
    // A separate entry point, so pooling without indices binds no indices buffer.
    let entry = if p.return_indices {
        outputs.push(Slot::elements("indices", out.numel()));
        "max_pool2d_indices"
    } else {
        "max_pool2d"
    };
    kernel(
        gpu,
        format!("{label} (max_pool2d)"),
        entry,
        &params,
        outputs,
        vec![Slot::floats("input", input.numel(), precision)],
        precision,
    )
}

/// The avg_pool2d kernel for `input`. Outputs: `output` ([`AvgPool2d::output_shape`]). Inputs: `input`.
pub fn avg_pool2d(
    gpu: &Gpu,
    label: &str,
    p: &AvgPool2d,
    input: Shape,
    precision: Precision,
) -> Result<Kernel> {
    let out = p.output_shape(input)?;
    let params = Params {
        k_h: u(p.kernel[0]),
        k_w: u(p.kernel[1]),
        stride_h: u(p.stride[0]),
        stride_w: u(p.stride[1]),
        pad_h: u(p.padding[0]),
        pad_w: u(p.padding[1]),
        count_include_pad: p.count_include_pad as u32,
        ..params(input, out)
    };
    kernel(
        gpu,
        format!("{label} (avg_pool2d)"),
        "avg_pool2d",
        &params,
        vec![Slot::floats("output", out.numel(), precision)],
        vec![Slot::floats("input", input.numel(), precision)],
        precision,
    )
}

/// The adaptive_avg_pool2d kernel for `input`. Outputs: `output` ([`AdaptiveAvgPool2d::output_shape`]).
/// Inputs: `input`.
pub fn adaptive_avg_pool2d(
    gpu: &Gpu,
    label: &str,
    p: &AdaptiveAvgPool2d,
    input: Shape,
    precision: Precision,
) -> Result<Kernel> {
    let out = p.output_shape(input)?;
    kernel(
        gpu,
        format!("{label} (adaptive_avg_pool2d)"),
        "adaptive_avg_pool2d",
        &params(input, out),
        vec![Slot::floats("output", out.numel(), precision)],
        vec![Slot::floats("input", input.numel(), precision)],
        precision,
    )
}

/// The two dispatches of max_unpool2d. A scatter cannot clear the positions no index names, so `zero` clears the
/// whole output first; record `zero` then `scatter`, in that order (in one pass or in order across passes: WebGPU
/// makes the first dispatch's writes visible to the second).
#[derive(Debug)]
pub struct MaxUnpool2dKernels {
    /// Outputs: `output` ([`MaxUnpool2d::output_shape`]). Inputs: none.
    pub zero: Kernel,
    /// Outputs: `output` (the same buffer as `zero`'s). Inputs: `values` (the pooled tensor, shape `input`),
    /// `indices` (u32, shape `input`, flat `h * w` indices within each output plane, as max_pool2d returns them).
    /// Out-of-plane indices are skipped; where several values name one position, which one lands is unspecified.
    pub scatter: Kernel,
}

/// The max_unpool2d kernels for pooled `input` of that shape.
pub fn max_unpool2d(
    gpu: &Gpu,
    label: &str,
    p: &MaxUnpool2d,
    input: Shape,
    precision: Precision,
) -> Result<MaxUnpool2dKernels> {
    let out = p.output_shape(input)?;
    let zero = kernel(
        gpu,
        format!("{label} (max_unpool2d zero)"),
        "max_unpool2d_zero",
        &params(input, out),
        vec![Slot::floats("output", out.numel(), precision)],
        vec![],
        precision,
    )?;
    let scatter = kernel(
        gpu,
        format!("{label} (max_unpool2d scatter)"),
        "max_unpool2d_scatter",
        &Params {
            total: u(input.numel()),
            ..params(input, out)
        },
        vec![Slot::floats("output", out.numel(), precision)],
        vec![
            Slot::floats("values", input.numel(), precision),
            Slot::elements("indices", input.numel()),
        ],
        precision,
    )?;
    Ok(MaxUnpool2dKernels { zero, scatter })
}
