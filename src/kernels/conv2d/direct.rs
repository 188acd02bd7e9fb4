//! The one-thread-per-output convolution for any groups ([`Path::Naive`](super::Path::Naive)) and the depthwise
//! kernel ([`Path::Depthwise`](super::Path::Depthwise)), both in shaders/conv2d_direct.wgsl, on PyTorch's plain
//! `[out, in / groups, kh, kw]` weights.

use super::{slots, Target, TileGeometry};
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Kernel, KernelSpec};
use crate::kernels::{CONV2D_DEPTHWISE, CONV2D_DIRECT};
use crate::ops::Conv2d;
use crate::tensor::Shape;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    geometry: TileGeometry,
    groups: u32,
}

/// The one-thread-per-output kernel, or with `depthwise` the depthwise one (same parameters): specialised for
/// `p`'s kernel, stride and dilation where [`super::depthwise`] has it, else 4 pixels of a row per thread.
pub(super) fn naive(
    gpu: &Gpu,
    label: &str,
    p: &Conv2d,
    input: Shape,
    k: Target,
    depthwise: bool,
) -> Result<Kernel> {
    let dest = k.dest;
    let result = dest.with_c(p.out_channels);
    let params = Params {
        geometry: TileGeometry::new(p, input, dest),
        groups: p.groups as u32,
    };
    let weights: usize = p.weight_shape().iter().product();
    let (outputs, inputs) = slots(p, input, k, weights);
    let (shader, entry, threads, kind) = match depthwise {
        false => (CONV2D_DIRECT, "conv2d", result.numel(), String::new()),
        true => match super::depthwise::specialised(p) {
            Some((entry, rows, columns)) => {
                let tiles = result.h.div_ceil(rows) * result.w.div_ceil(columns);
                let threads = result.n * result.c * tiles;
                (
                    CONV2D_DEPTHWISE,
                    entry,
                    threads,
                    format!(" depthwise, {entry}"),
                )
            }
            None => {
                let threads = result.numel() / result.w * result.w.div_ceil(4);
                (
                    CONV2D_DIRECT,
                    "conv2d_depthwise",
                    threads,
                    " depthwise".into(),
                )
            }
        },
    };
    Kernel::new(
        gpu,
        KernelSpec {
            label: format!("{label} (conv2d{kind})"),
            shader,
            precision: k.precision,
            entry,
            constants: &[],
            uniforms: bytemuck::bytes_of(&params),
            dispatch: Dispatch::Linear(threads as u64),
            outputs,
            inputs,
        },
    )
}
