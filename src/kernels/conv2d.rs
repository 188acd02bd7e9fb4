//! conv2d: direct convolution with a fused epilogue (shaders/conv2d.wgsl).

use super::CONV2D;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Kernel, KernelSpec, Slot};
use crate::ops::{Conv2d, ConvWeights};
use crate::tensor::Shape;

/// Conv weights as the kernel reads them: batch-norm folded in.
#[derive(Debug)]
pub struct Conv2dWeights {
    pub weight: wgpu::Buffer,
    pub bias: wgpu::Buffer,
}

/// Folds bias and batch-norm into `(weight, bias)` in f64, so the kernel's epilogue is `acc + bias`.
pub fn fold(p: &Conv2d, w: &ConvWeights) -> Result<(Vec<f32>, Vec<f32>)> {
    w.check("conv2d", p.weight_shape(), p.out_channels)?;
    let affine = w.folded_affine(p.out_channels);
    let per_out = w.weight.len() / p.out_channels;
    let weight = w
        .weight
        .chunks(per_out)
        .zip(&affine)
        .flat_map(|(row, &(scale, _))| row.iter().map(move |&v| (v as f64 * scale) as f32))
        .collect();
    let bias = affine.iter().map(|&(_, shift)| shift as f32).collect();
    Ok((weight, bias))
}

/// Folds and uploads conv weights.
pub fn upload_weights(
    gpu: &Gpu,
    label: &str,
    p: &Conv2d,
    w: &ConvWeights,
) -> Result<Conv2dWeights> {
    let (weight, bias) = fold(p, w)?;
    Ok(Conv2dWeights {
        weight: gpu.upload_f32(&format!("{label}.weight"), &weight)?,
        bias: gpu.upload_f32(&format!("{label}.bias"), &bias)?,
    })
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c_in: u32,
    h_in: u32,
    w_in: u32,
    c_out: u32,
    h_out: u32,
    w_out: u32,
    groups: u32,
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
}

/// The conv2d kernel for `input`. Outputs: `output` (the destination, [`Conv2d::output_shape`]). Inputs: `input`,
/// `weight`, `bias` (from [`upload_weights`]), `residual` (`N x out_channels x H x W`; bind
/// [`Gpu::placeholder`] when `p.residual` is false).
pub fn conv2d(gpu: &Gpu, label: &str, p: &Conv2d, input: Shape) -> Result<Kernel> {
    let dest = p.output_shape(input)?;
    let result = dest.with_c(p.out_channels);
    let u = |v: usize| v as u32;
    let params = Params {
        n: u(input.n),
        c_in: u(input.c),
        h_in: u(input.h),
        w_in: u(input.w),
        c_out: u(p.out_channels),
        h_out: u(dest.h),
        w_out: u(dest.w),
        groups: u(p.groups),
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
        has_residual: p.residual as u32,
    };
    let weights: usize = p.weight_shape().iter().product();
    Kernel::new(
        gpu,
        KernelSpec {
            label: format!("{label} (conv2d)"),
            shader: CONV2D,
            entry: "conv2d",
            constants: &[],
            uniforms: bytemuck::bytes_of(&params),
            dispatch: Dispatch::Linear(result.numel() as u64),
            outputs: vec![Slot::elements("output", dest.numel())],
            inputs: vec![
                Slot::elements("input", input.numel()),
                Slot::elements("weight", weights),
                Slot::elements("bias", p.out_channels),
                Slot::elements("residual", if p.residual { result.numel() } else { 0 }),
            ],
        },
    )
}
