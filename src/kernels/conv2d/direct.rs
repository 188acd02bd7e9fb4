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
    let specialised = depthwise
        .then(|| super::depthwise::specialised(p, result))
        .flatten();
    let (shader, entry, threads, kind) = match (specialised, depthwise) {
        (Some((entry, threads)), _) => (CONV2D_DEPTHWISE, entry, threads, " depthwise, "),
        (None, true) => {
            let threads = result.numel() / result.w * result.w.div_ceil(4);
            (
                CONV2D_DIRECT,
                "conv2d_depthwise",
                threads as u64,
                " depthwise",
            )
        }
        (None, false) => (CONV2D_DIRECT, "conv2d", result.numel() as u64, ""),
    };
    let named = if specialised.is_some() { entry } else { "" };
    Kernel::new(
        gpu,
        KernelSpec {
            label: format!("{label} (conv2d{kind}{named})"),
            shader,
            precision: k.precision,
            entry,
            constants: &[],
            uniforms: bytemuck::bytes_of(&params),
            dispatch: Dispatch::Linear(threads),
            outputs,
            inputs,
        },
    )
}
