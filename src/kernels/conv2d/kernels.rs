//! What every conv path shares: the dispatches of one conv ([`Conv2dKernels`]) and how they bind, the destination
//! and precision a kernel is built for ([`Target`]), and the uniforms every conv shader starts with
//! ([`TileGeometry`]).

use super::split_k::SplitK;
use super::winograd::{self, Winograd};
use crate::error::{Error, Result};
use crate::gpu::{BoundKernel, Gpu, Kernel, Precision, Shader, Slot};
use crate::ops::Conv2d;
use crate::tensor::Shape;

/// The dispatches of one conv, in recording order.
#[derive(Debug)]
pub enum Conv2dKernels {
    /// One kernel. Outputs: `output` (the destination, [`Conv2d::output_shape`]). Inputs: `input`, `weight`,
    /// `bias` (from [`upload_weights`](super::upload_weights)), `residual` (`N x out_channels x H x W`; bind
    /// [`Gpu::placeholder`] when `p.residual` is false or in place).
    Direct(Kernel),
    /// Partial sums into a scratch buffer, then their reduction with the epilogue; same buffers as `Direct` plus
    /// the scratch.
    SplitK(SplitK),
    /// Input transform, products and output transform with the epilogue, in one or more passes over chunks of tiles;
    /// same buffers as `Direct` (the weights from [`upload_weights_for`](super::upload_weights_for)) plus two scratch buffers.
    Winograd(Winograd),
}

impl Conv2dKernels {
    /// Records the conv's floating-point operations on its first kernel, for benchmark reports.
    pub fn with_flops(self, flops: u64) -> Self {
        match self {
            Conv2dKernels::Direct(k) => Conv2dKernels::Direct(k.with_flops(flops)),
            Conv2dKernels::SplitK(s) => Conv2dKernels::SplitK(SplitK {
                partial: s.partial.with_flops(flops),
                ..s
            }),
            // On the first pass's products, where a GPU timestamp report shows the work.
            Conv2dKernels::Winograd(mut w) => {
                let first = w.passes.remove(0);
                let gemm = first.gemm.with_flops(flops);
                w.passes.insert(0, winograd::Pass { gemm, ..first });
                Conv2dKernels::Winograd(w)
            }
        }
    }

    /// Bytes of each scratch buffer the conv needs between its dispatches (none, split-K's partial sums, or
    /// Winograd's transformed input and products), in the order [`Conv2dKernels::bind`] takes them.
    pub fn scratch_bytes(&self) -> Vec<u64> {
        match self {
            Conv2dKernels::Direct(_) => vec![],
            Conv2dKernels::SplitK(s) => vec![s.scratch_bytes()],
            Conv2dKernels::Winograd(w) => w.scratch_bytes().to_vec(),
        }
    }

    /// Binds `output` and `[input, weight, bias, residual]` (as for [`Conv2dKernels::Direct`]) and one buffer per
    /// [`Conv2dKernels::scratch_bytes`], which must not share a buffer with each other or with the tensors; returns
    /// the bound dispatches in recording order.
    pub fn bind(
        &self,
        gpu: &Gpu,
        output: wgpu::BufferBinding<'_>,
        [input, weight, bias, residual]: [wgpu::BufferBinding<'_>; 4],
        scratch: &[wgpu::BufferBinding<'_>],
    ) -> Result<Vec<BoundKernel>> {
        let want = self.scratch_bytes().len();
        if scratch.len() != want {
            return Err(Error::Gpu {
                context: self.first().label().to_string(),
                message: format!("needs {want} scratch buffers, got {}", scratch.len()),
            });
        }
        match self {
            Conv2dKernels::Direct(k) => Ok(vec![k.bind(
                gpu,
                &[output],
                &[input, weight, bias, residual],
            )?]),
            Conv2dKernels::SplitK(s) => Ok(vec![
                s.partial.bind(gpu, &scratch[..1], &[input, weight])?,
                s.reduce
                    .bind(gpu, &[output], &[scratch[0].clone(), bias, residual])?,
            ]),
            Conv2dKernels::Winograd(w) => {
                let mut bound = Vec::with_capacity(3 * w.passes.len());
                for pass in &w.passes {
                    bound.push(pass.input.bind(
                        gpu,
                        &scratch[..1],
                        std::slice::from_ref(&input),
                    )?);
                    let v = scratch[0].clone();
                    bound.push(pass.gemm.bind(gpu, &scratch[1..], &[v, weight.clone()])?);
                    let m = scratch[1].clone();
                    let inputs = [m, bias.clone(), residual.clone()];
                    bound.push(
                        pass.output
                            .bind(gpu, std::slice::from_ref(&output), &inputs)?,
                    );
                }
                Ok(bound)
            }
        }
    }

    /// Every dispatch, in recording order.
    pub fn kernels(&self) -> Vec<&Kernel> {
        match self {
            Conv2dKernels::Direct(k) => vec![k],
            Conv2dKernels::SplitK(s) => vec![&s.partial, &s.reduce],
            Conv2dKernels::Winograd(w) => w
                .passes
                .iter()
                .flat_map(|p| [&p.input, &p.gemm, &p.output])
                .collect(),
        }
    }

    /// Bytes of the buffers [`Conv2dKernels::bind`] takes, `[output, input, weight, bias, residual]`, from the
    /// kernels' own slots (each at least 4: empty bindings are invalid). For binding a conv alone, as a tuner
    /// timing its candidates does.
    pub fn binding_bytes(&self) -> [u64; 5] {
        let names = ["output", "input", "weight", "bias", "residual"];
        let mut bytes = [4u64; 5];
        for kernel in self.kernels() {
            for slot in kernel.outputs().iter().chain(kernel.inputs()) {
                if let Some(i) = names.iter().position(|&n| n == slot.name) {
                    bytes[i] = bytes[i].max(slot.bytes);
                }
            }
        }
        bytes
    }

    /// The first dispatch.
    fn first(&self) -> &Kernel {
        match self {
            Conv2dKernels::Direct(k) => k,
            Conv2dKernels::SplitK(s) => &s.partial,
            Conv2dKernels::Winograd(w) => &w.passes[0].input,
        }
    }
}

/// The destination shape, the storage precision of a conv kernel, and whether it multiplies in f16.
#[derive(Clone, Copy)]
pub(crate) struct Target {
    pub dest: Shape,
    pub precision: Precision,
    pub f16_math: bool,
}

impl Target {
    /// The program of a tiled family for this target's math: `f32_math`, or its `_f16` twin.
    pub fn program(self, f32_math: Shader, f16_math: Shader) -> Shader {
        if self.f16_math {
            f16_math
        } else {
            f32_math
        }
    }

    /// What a kernel label adds for this target's math: " f16 math", or nothing.
    pub fn math_label(self) -> &'static str {
        if self.f16_math {
            " f16 math"
        } else {
            ""
        }
    }
}

pub(super) fn slots(p: &Conv2d, input: Shape, k: Target, weights: usize) -> (Vec<Slot>, Vec<Slot>) {
    let result = k.dest.with_c(p.out_channels);
    let floats = |name, n| Slot::floats(name, n, k.precision);
    (
        vec![floats("output", k.dest.numel())],
        vec![
            floats("input", input.numel()),
            floats("weight", weights),
            Slot::elements("bias", p.out_channels),
            floats("residual", residual_elements(p, result)),
        ],
    )
}

/// Elements of the residual binding: none without one, or where it is read from the destination in place.
pub(crate) fn residual_elements(p: &Conv2d, result: Shape) -> usize {
    match p.residual_bound_apart() {
        true => result.numel(),
        false => 0,
    }
}

/// The uniforms every conv2d shader starts with, in their order (`Params`, `TParams` and `SParams` up to `c_out4`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct TileGeometry {
    n: u32,
    c_in: u32,
    h_in: u32,
    w_in: u32,
    c_out: u32,
    h_out: u32,
    w_out: u32,
    k_h: u32,
    k_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_top: u32,
    pad_left: u32,
    dil_h: u32,
    dil_w: u32,
    dest_c: u32,
    dest_offset: u32,
    activation: u32,
    has_residual: u32,
    c_out4: u32,
}

impl TileGeometry {
    pub(crate) fn new(p: &Conv2d, input: Shape, dest: Shape) -> Self {
        let u = |v: usize| v as u32;
        TileGeometry {
            n: u(input.n),
            c_in: u(input.c),
            h_in: u(input.h),
            w_in: u(input.w),
            c_out: u(p.out_channels),
            h_out: u(dest.h),
            w_out: u(dest.w),
            k_h: u(p.kernel[0]),
            k_w: u(p.kernel[1]),
            stride_h: u(p.stride[0]),
            stride_w: u(p.stride[1]),
            pad_top: u(p.padding.top),
            pad_left: u(p.padding.left),
            dil_h: u(p.dilation[0]),
            dil_w: u(p.dilation[1]),
            dest_c: u(dest.c),
            dest_offset: u(p.out_channel_offset),
            activation: p.activation.code(),
            has_residual: p.residual_code(),
            c_out4: u(p.out_channels.div_ceil(4)),
        }
    }
}
