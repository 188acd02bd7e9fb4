//! conv_transpose2d: transposed convolution in gather form with a fused epilogue (shaders/conv_transpose2d.wgsl).

use super::FoldedWeights;
use super::CONV_TRANSPOSE2D;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Kernel, KernelSpec, Precision, Slot};
use crate::ops::{ConvTranspose2d, ConvWeights};
use crate::tensor::Shape;

/// Folds bias and batch-norm into `(weight, bias)` in f64, so the kernel's epilogue is `acc + bias`.
///
/// The weight is `[in, out / groups, kh, kw]`: the output channel of a row depends on both the input channel's
/// group and the row's position within it, unlike conv2d where it is the leading index.
pub fn fold(p: &ConvTranspose2d, w: &ConvWeights) -> Result<(Vec<f32>, Vec<f32>)> {
    let shape = p.weight_shape();
    w.check("conv_transpose2d", shape, p.out_channels)?;
    let affine = w.folded_affine(p.out_channels);
    let [_, cout_g, kh, kw] = shape;
    let cin_g = p.in_channels / p.groups;
    let taps = kh * kw;
    let weight = w
        .weight
        .chunks(taps)
        .enumerate()
        .flat_map(|(row, taps)| {
            let (ci, co_local) = (row / cout_g, row % cout_g);
            let co = (ci / cin_g) * cout_g + co_local;
            let scale = affine[co].0;
            taps.iter().map(move |&v| (v as f64 * scale) as f32)
        })
        .collect();
    let bias = affine.iter().map(|&(_, shift)| shift as f32).collect();
    Ok((weight, bias))
}

/// Folds and uploads transposed-conv weights, the weight in `precision`.
pub fn upload_weights(
    gpu: &Gpu,
    label: &str,
    p: &ConvTranspose2d,
    w: &ConvWeights,
    precision: Precision,
) -> Result<FoldedWeights> {
    super::upload_folded(gpu, label, fold(p, w)?, precision)
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
    pad_h: u32,
    pad_w: u32,
    dil_h: u32,
    dil_w: u32,
    activation: u32,
}

/// The conv_transpose2d kernel for `input`. Outputs: `output` ([`ConvTranspose2d::output_shape`]). Inputs:
/// `input`, `weight`, `bias` (from [`upload_weights`]). All but the bias (f32) are stored in `precision`.
pub fn conv_transpose2d(
    gpu: &Gpu,
    label: &str,
    p: &ConvTranspose2d,
    input: Shape,
    precision: Precision,
) -> Result<Kernel> {
    let out = p.output_shape(input)?;
    let u = |v: usize| v as u32;
    let params = Params {
        n: u(input.n),
        c_in: u(input.c),
        h_in: u(input.h),
        w_in: u(input.w),
        c_out: u(out.c),
        h_out: u(out.h),
        w_out: u(out.w),
        groups: u(p.groups),
        k_h: u(p.kernel[0]),
        k_w: u(p.kernel[1]),
        stride_h: u(p.stride[0]),
        stride_w: u(p.stride[1]),
        pad_h: u(p.padding[0]),
        pad_w: u(p.padding[1]),
        dil_h: u(p.dilation[0]),
        dil_w: u(p.dilation[1]),
        activation: p.activation.code(),
    };
    let weights: usize = p.weight_shape().iter().product();
    Kernel::new(
        gpu,
        KernelSpec {
            label: format!("{label} (conv_transpose2d)"),
            shader: CONV_TRANSPOSE2D,
            precision,
            entry: "conv_transpose2d",
            constants: &[],
            uniforms: bytemuck::bytes_of(&params),
            dispatch: Dispatch::Linear(out.numel() as u64),
            outputs: vec![Slot::floats("output", out.numel(), precision)],
            inputs: vec![
                Slot::floats("input", input.numel(), precision),
                Slot::floats("weight", weights, precision),
                Slot::elements("bias", p.out_channels),
            ],
        },
    )
}
