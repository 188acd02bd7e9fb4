//! conv_transpose2d: transposed convolution in gather form with a fused epilogue (shaders/conv_transpose2d.wgsl):
//! register-tiled by output phase for `groups == 1`, one thread per output otherwise.

use super::FoldedWeights;
use super::CONV_TRANSPOSE2D;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Kernel, KernelSpec, Precision, Slot};
use crate::ops::{ConvTranspose2d, ConvWeights};
use crate::tensor::Shape;

/// Which kernel runs a transposed conv. [`conv_transpose2d`] picks one by `groups`; [`conv_transpose2d_on`] runs a
/// given one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// One thread per output element, any groups; PyTorch's `[in, out / groups, kh, kw]` weights.
    Gather,
    /// 8 output channels of 4 phase-sharing outputs of a row per thread (`groups == 1`); weights packed as vec4
    /// over output channels, `[ceil(out / 4)][kh][kw][in][4]`.
    Tiled,
}

/// Output channels and outputs of one thread of [`Path::Tiled`].
const TILE_CHANNELS: usize = 8;
const TILE_COLUMNS: usize = 4;

/// The path [`conv_transpose2d`] takes for `p`: it and [`fold`]'s layout depend on `p` only.
pub fn choose(p: &ConvTranspose2d) -> Path {
    match p.groups {
        1 => Path::Tiled,
        _ => Path::Gather,
    }
}

/// Folds bias and batch-norm into `(weight, bias)` in f64, so the kernel's epilogue is `acc + bias`, in the layout
/// of [`choose`]'s path.
pub fn fold(p: &ConvTranspose2d, w: &ConvWeights) -> Result<(Vec<f32>, Vec<f32>)> {
    fold_for(p, w, choose(p))
}

/// [`fold`] for a given path (tests and benchmarks compare paths).
///
/// PyTorch's weight is `[in, out / groups, kh, kw]`: the output channel of a row depends on both the input channel's
/// group and the row's position within it, unlike conv2d where it is the leading index.
pub fn fold_for(p: &ConvTranspose2d, w: &ConvWeights, path: Path) -> Result<(Vec<f32>, Vec<f32>)> {
    let shape = p.weight_shape();
    w.check("conv_transpose2d", shape, p.out_channels)?;
    let affine = w.folded_affine(p.out_channels);
    let [_, cout_g, kh, kw] = shape;
    let cin_g = p.in_channels / p.groups;
    let taps = kh * kw;
    let scaled: Vec<f32> = w
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
    if path == Path::Gather {
        return Ok((scaled, bias));
    }
    check_tiled(p, "fold")?;
    let (c_in, c_out) = (p.in_channels, p.out_channels);
    let mut weight = vec![0.0f32; c_out.div_ceil(4) * 4 * taps * c_in];
    for ci in 0..c_in {
        for co in 0..c_out {
            for t in 0..taps {
                weight[(((co / 4) * taps + t) * c_in + ci) * 4 + co % 4] =
                    scaled[(ci * c_out + co) * taps + t];
            }
        }
    }
    Ok((weight, bias))
}

fn check_tiled(p: &ConvTranspose2d, context: &str) -> Result<()> {
    match p.groups {
        1 => Ok(()),
        g => Err(Error::Gpu {
            context: format!("{context} (conv_transpose2d)"),
            message: format!("the tiled transposed conv needs groups == 1, got groups {g}"),
        }),
    }
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
    c_out4: u32,
    col_blocks: u32,
    groups_y: u32,
    dest_c: u32,
    dest_offset: u32,
}

/// The conv_transpose2d kernel for `input` on [`choose`]'s path. Outputs: `output`
/// ([`ConvTranspose2d::output_shape`]). Inputs: `input`, `weight`, `bias` (from [`upload_weights`]). All but the
/// bias (f32) are stored in `precision`.
pub fn conv_transpose2d(
    gpu: &Gpu,
    label: &str,
    p: &ConvTranspose2d,
    input: Shape,
    precision: Precision,
) -> Result<Kernel> {
    conv_transpose2d_on(gpu, label, p, input, choose(p), precision)
}

/// [`conv_transpose2d`] on a given path; its weights come from [`fold_for`] with the same path.
pub fn conv_transpose2d_on(
    gpu: &Gpu,
    label: &str,
    p: &ConvTranspose2d,
    input: Shape,
    path: Path,
    precision: Precision,
) -> Result<Kernel> {
    let out = p.output_shape(input)?;
    if path == Path::Tiled {
        check_tiled(p, label)?;
    }
    // Tiled threads: (n, oy, column phase, block of columns of that phase), in 64-thread workgroups over y and z,
    // and one workgroup column per TILE_CHANNELS output channels.
    let col_blocks = out.w.div_ceil(p.stride[1]).div_ceil(TILE_COLUMNS);
    let threads = input.n * out.h * p.stride[1] * col_blocks;
    let max = gpu.limits().max_compute_workgroups_per_dimension;
    let pixel_groups = threads.div_ceil(64) as u32;
    let groups_y = pixel_groups.clamp(1, max);
    let groups_z = pixel_groups.div_ceil(groups_y).max(1);
    let u = |v: usize| v as u32;
    let params = Params {
        n: u(input.n),
        c_in: u(input.c),
        h_in: u(input.h),
        w_in: u(input.w),
        c_out: u(p.out_channels),
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
        c_out4: u(p.out_channels.div_ceil(4)),
        col_blocks: u(col_blocks),
        groups_y,
        dest_c: u(out.c),
        dest_offset: u(p.out_channel_offset),
    };
    let (entry, dispatch, weights) = match path {
        Path::Gather => (
            "conv_transpose2d",
            Dispatch::Linear(out.with_c(p.out_channels).numel() as u64),
            p.weight_shape().iter().product(),
        ),
        Path::Tiled => (
            "conv_transpose2d_t8x4",
            Dispatch::Groups([
                u(p.out_channels.div_ceil(TILE_CHANNELS)),
                groups_y,
                groups_z,
            ]),
            p.out_channels.div_ceil(4) * 4 * p.kernel[0] * p.kernel[1] * p.in_channels,
        ),
    };
    Kernel::new(
        gpu,
        KernelSpec {
            label: match path {
                Path::Gather => format!("{label} (conv_transpose2d)"),
                Path::Tiled => format!("{label} (conv_transpose2d 8x4)"),
            },
            shader: CONV_TRANSPOSE2D,
            precision,
            entry,
            constants: &[],
            uniforms: bytemuck::bytes_of(&params),
            dispatch,
            outputs: vec![Slot::floats("output", out.numel(), precision)],
            inputs: vec![
                Slot::floats("input", input.numel(), precision),
                Slot::floats("weight", weights, precision),
                Slot::elements("bias", p.out_channels),
            ],
        },
    )
}
