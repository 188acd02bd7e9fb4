//! elementwise kernels: broadcasting binary ops, standalone activations, pointwise functions with parameters,
//! concatenation along channels and plain copies (shaders/elementwise.wgsl).

use super::ELEMENTWISE;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Kernel, KernelSpec, Precision, Slot};
use crate::ops::{Binary, Concat, Pointwise, Unary};
use crate::tensor::Shape;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct BinaryParams {
    a: [u32; 4],
    b: [u32; 4],
    out: [u32; 4],
    op: u32,
    activation: u32,
}

fn dims(s: Shape) -> [u32; 4] {
    s.dims().map(|d| d as u32)
}

/// Outputs of a run: how many consecutive elements of a row one thread of the binary and resize kernels computes
/// (`RUN` in their shaders).
pub(crate) const RUN: usize = 4;

/// Threads of a kernel computing `shape` in runs of [`RUN`] along its rows.
pub(crate) fn row_runs(shape: Shape) -> u64 {
    (shape.n * shape.c * shape.h) as u64 * shape.w.div_ceil(RUN) as u64
}

/// `act(a op b)` with broadcasting. Outputs: `output` ([`Binary::output_shape`]). Inputs: `a`, `b`.
pub fn binary(
    gpu: &Gpu,
    label: &str,
    p: &Binary,
    a: Shape,
    b: Shape,
    precision: Precision,
) -> Result<Kernel> {
    let out = p.output_shape(a, b)?;
    let params = BinaryParams {
        a: dims(a),
        b: dims(b),
        out: dims(out),
        op: p.op.code(),
        activation: p.activation.code(),
    };
    Kernel::new(
        gpu,
        KernelSpec {
            label: format!("{label} (binary)"),
            shader: ELEMENTWISE,
            precision,
            entry: "binary",
            constants: &[],
            uniforms: bytemuck::bytes_of(&params),
            dispatch: Dispatch::Linear(row_runs(out)),
            outputs: vec![Slot::floats("output", out.numel(), precision)],
            inputs: vec![
                Slot::floats("a", a.numel(), precision),
                Slot::floats("b", b.numel(), precision),
            ],
        },
    )
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ActivationParams {
    total: u32,
    activation: u32,
}

/// A standalone activation. Outputs: `output` (the input's shape). Inputs: `input`.
pub fn activation(
    gpu: &Gpu,
    label: &str,
    p: &Unary,
    input: Shape,
    precision: Precision,
) -> Result<Kernel> {
    let out = p.output_shape(input)?;
    let params = ActivationParams {
        total: out.numel() as u32,
        activation: p.activation.code(),
    };
    Kernel::new(
        gpu,
        KernelSpec {
            label: format!("{label} (activation)"),
            shader: ELEMENTWISE,
            precision,
            entry: "activation",
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
struct PointwiseParams {
    total: u32,
    function: u32,
    p0: f32,
    p1: f32,
}

/// An elementwise function with parameters, in f32. Outputs: `output` (the input's shape). Inputs: `input`.
pub fn pointwise(
    gpu: &Gpu,
    label: &str,
    p: &Pointwise,
    input: Shape,
    precision: Precision,
) -> Result<Kernel> {
    let out = p.output_shape(input)?;
    let [p0, p1] = p.params();
    let params = PointwiseParams {
        total: out.numel() as u32,
        function: p.code(),
        p0,
        p1,
    };
    Kernel::new(
        gpu,
        KernelSpec {
            label: format!("{label} ({})", p.name()),
            shader: ELEMENTWISE,
            precision,
            entry: "pointwise",
            constants: &[],
            uniforms: bytemuck::bytes_of(&params),
            dispatch: Dispatch::Linear(out.numel() as u64),
            outputs: vec![Slot::floats("output", out.numel(), precision)],
            inputs: vec![Slot::floats("input", input.numel(), precision)],
        },
    )
}

/// A plain copy of a tensor of `shape` (a constant node copies its uploaded values into its activation).
/// Outputs: `output`. Inputs: `input`. Both in `precision`.
pub fn copy(gpu: &Gpu, label: &str, shape: Shape, precision: Precision) -> Result<Kernel> {
    crate::ops::positive("copy", "size", &shape.dims())?;
    let numel = u32::try_from(shape.numel())
        .map_err(|_| Error::params("copy", format!("{shape} has more than 2^32 elements")))?;
    let params = CopyParams {
        n: 1,
        c: 1,
        plane: numel,
        dest_c: 1,
        offset: 0,
    };
    Kernel::new(
        gpu,
        KernelSpec {
            label: format!("{label} (copy)"),
            shader: ELEMENTWISE,
            precision,
            entry: "copy_channels",
            constants: &[],
            uniforms: bytemuck::bytes_of(&params),
            dispatch: Dispatch::Linear(shape.numel() as u64),
            outputs: vec![Slot::floats("output", shape.numel(), precision)],
            inputs: vec![Slot::floats("input", shape.numel(), precision)],
        },
    )
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CopyParams {
    n: u32,
    c: u32,
    plane: u32,
    dest_c: u32,
    offset: u32,
}

/// Copies `input` into channels `channel_offset..channel_offset + input.c` of a `dest` tensor: one part of a
/// concatenation. Outputs: `output` (`dest`; its other channels are left alone). Inputs: `input`.
pub fn concat_part(
    gpu: &Gpu,
    label: &str,
    input: Shape,
    dest: Shape,
    channel_offset: usize,
    precision: Precision,
) -> Result<Kernel> {
    const OP: &str = "concat";
    Concat.output_shape(&[input])?;
    Concat.output_shape(&[dest])?;
    if (input.n, input.h, input.w) != (dest.n, dest.h, dest.w) {
        return Err(Error::shape(
            OP,
            format!("input {input} and destination {dest} differ outside the channel axis"),
        ));
    }
    if channel_offset + input.c > dest.c {
        return Err(Error::params(
            OP,
            format!(
                "writing {} channels at offset {channel_offset} overflows a destination of {} channels",
                input.c, dest.c
            ),
        ));
    }
    let u = |v: usize| v as u32;
    let params = CopyParams {
        n: u(input.n),
        c: u(input.c),
        plane: u(input.plane()),
        dest_c: u(dest.c),
        offset: u(channel_offset),
    };
    Kernel::new(
        gpu,
        KernelSpec {
            label: format!("{label} (concat at channel {channel_offset})"),
            shader: ELEMENTWISE,
            precision,
            entry: "copy_channels",
            constants: &[],
            uniforms: bytemuck::bytes_of(&params),
            dispatch: Dispatch::Linear(
                (input.n * (input.numel() / input.n.max(1)).div_ceil(RUN)) as u64,
            ),
            outputs: vec![Slot::floats("output", dest.numel(), precision)],
            inputs: vec![Slot::floats("input", input.numel(), precision)],
        },
    )
}

/// `torch.cat(inputs, dim=1)` as one [`concat_part`] kernel per input, in order, all writing the same destination
/// ([`Concat::output_shape`]). Bind the destination as each kernel's output and input `i` as kernel `i`'s input.
pub fn concat(
    gpu: &Gpu,
    label: &str,
    inputs: &[Shape],
    precision: Precision,
) -> Result<Vec<Kernel>> {
    let dest = Concat.output_shape(inputs)?;
    let mut offset = 0;
    inputs
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let kernel = concat_part(gpu, &format!("{label}[{i}]"), s, dest, offset, precision);
            offset += s.c;
            kernel
        })
        .collect()
}
