//! The one-thread-per-output convolution for any groups ([`Path::Naive`](super::Path::Naive)) and the depthwise
//! kernel ([`Path::Depthwise`](super::Path::Depthwise)), both in shaders/conv2d_direct.wgsl, on PyTorch's plain
//! `[out, in / groups, kh, kw]` weights.

use super::{slots, Target, TileGeometry};
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Kernel, KernelSpec};
use crate::kernels::CONV2D_DIRECT;
use crate::ops::Conv2d;
use crate::tensor::Shape;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    geometry: TileGeometry,
    groups: u32,
}

/// Input columns a 4-pixel tile row of the fixed depthwise kernel may read (`DW_MAX_SPAN` in the shader).
const DEPTHWISE_MAX_SPAN: f64 = 16.0;

/// The one-thread-per-output kernel, or with `depthwise` the 4-pixels-per-thread depthwise one (same parameters).
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
    // Depthwise rows whose input span fits the fixed kernel's registers take it, specialised by constants.
    let [k_w, stride_w, dil_w] = [p.kernel[1], p.stride[1], p.dilation[1]].map(|v| v as f64);
    let fixed = depthwise && 3.0 * stride_w + (k_w - 1.0) * dil_w + 1.0 <= DEPTHWISE_MAX_SPAN;
    let constants = [("DW_KW", k_w), ("DW_SW", stride_w), ("DW_DIL", dil_w)];
    Kernel::new(
        gpu,
        KernelSpec {
            label: format!(
                "{label} (conv2d{})",
                if depthwise { " depthwise" } else { "" }
            ),
            shader: CONV2D_DIRECT,
            precision: k.precision,
            entry: match (depthwise, fixed) {
                (true, true) => "conv2d_depthwise_fixed",
                (true, false) => "conv2d_depthwise",
                _ => "conv2d",
            },
            constants: match fixed {
                true => &constants,
                false => &[],
            },
            uniforms: bytemuck::bytes_of(&params),
            dispatch: Dispatch::Linear(match depthwise {
                true => (result.numel() / result.w * result.w.div_ceil(4)) as u64,
                false => result.numel() as u64,
            }),
            outputs,
            inputs,
        },
    )
}
