//! Implicit-GEMM convolution through workgroup shared memory for `groups == 1` (shaders/conv2d_shared.wgsl, generated
//! by scripts/gen-conv2d-tiled.py; [`Path::Shared`](super::Path::Shared)): a workgroup of 256 threads computes a block
//! of output channels x output pixels, staging each chunk of the reduction (input channels x taps) of the weights and
//! of the im2col'd input through `var<workgroup>` arrays, from which each thread multiplies a register tile.
//!
//! This is how fast GPU convolutions are built: every value loaded from memory serves a row or column of threads
//! instead of one. A CPU driver (lavapipe) gains nothing from it, its "shared memory" being the same caches as any
//! load, and pays for the barriers; it is here for real GPUs, offered to the tuner ([`super::candidates`]) and forced
//! by `ATROUS_CONV=shared` ([`super::conv_policy`]), not chosen by the heuristic until measured on one. Weights are
//! the tiled kernel's packed layout ([`Layout::Packed`](super::Layout::Packed)), whose order is the GEMM's reduction
//! order, so both paths share one upload. f32 math in both storage precisions.

use super::{slots, Target, TileGeometry};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Kernel, KernelSpec};
use crate::kernels::CONV2D_SHARED;
use crate::ops::Conv2d;
use crate::tensor::Shape;

/// Workgroup blocks compiled in shaders/conv2d_shared.wgsl, as `(output channels, output pixels)`: 64 x 64 (4 x 4 per
/// thread, reduction chunks of 16) and 128 x 128 (8 x 8 per thread, chunks of 8). Both use 256 threads and about 8
/// KiB of workgroup memory, within every adapter's limits (wgpu's defaults: 256 invocations, 16 KiB).
pub const BLOCKS: [(u32, u32); 2] = [(64, 64), (128, 128)];

/// Threads per workgroup of every block (all along x).
const THREADS: u32 = 256;

/// Workgroup memory of the largest block: the weight chunk, 16 rows of 16 + 1 vec4<f32> (a row padded against
/// memory-bank conflicts), and the input chunk, 256 vec4<f32>.
const WORKGROUP_BYTES: u32 = (16 * 17 + 256) * 16;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SharedParams {
    geometry: TileGeometry,
    groups_y: u32,
}

/// The block [`super::choose`] would take for `p` if it took this path: 128 x 128 where the output channels fill
/// it, else 64 x 64.
pub fn block_for(p: &Conv2d) -> (u32, u32) {
    match p.out_channels >= 128 {
        true => (128, 128),
        false => (64, 64),
    }
}

pub(super) fn shared(
    gpu: &Gpu,
    label: &str,
    p: &Conv2d,
    input: Shape,
    k: Target,
    (channels, pixels): (u32, u32),
) -> Result<Kernel> {
    let entry = match (channels, pixels) {
        (64, 64) => "conv2d_shared_64x64",
        (128, 128) => "conv2d_shared_128x128",
        _ => {
            return Err(Error::Gpu {
                context: format!("{label} (conv2d)"),
                message: format!(
                    "no shared-memory kernel for a {channels} x {pixels} block ({BLOCKS:?})"
                ),
            })
        }
    };
    let limits = gpu.limits();
    // A device made with atrous's minimum limits (64 threads, 1 KiB: `Gpu::from_device`) cannot run it; a tuner
    // skips a candidate that does not build.
    let need = [
        (
            "max_compute_invocations_per_workgroup",
            limits.max_compute_invocations_per_workgroup,
            THREADS,
        ),
        (
            "max_compute_workgroup_size_x",
            limits.max_compute_workgroup_size_x,
            THREADS,
        ),
        (
            "max_compute_workgroup_storage_size",
            limits.max_compute_workgroup_storage_size,
            WORKGROUP_BYTES,
        ),
    ];
    if let Some((name, have, want)) = need.iter().find(|(_, have, want)| have < want) {
        return Err(Error::Gpu {
            context: format!("{label} (conv2d)"),
            message: format!(
                "the shared-memory kernel needs {name} >= {want}, the device has {have}"
            ),
        });
    }
    let dest = k.dest;
    let u = |v: usize| v as u32;
    let max = limits.max_compute_workgroups_per_dimension;
    let pixel_groups = (input.n * dest.h * dest.w).div_ceil(pixels as usize);
    let groups_y = u(pixel_groups).clamp(1, max);
    let groups_z = u(pixel_groups).div_ceil(groups_y).max(1);
    let params = SharedParams {
        geometry: TileGeometry::new(p, input, dest),
        groups_y,
    };
    let weights = p.out_channels.div_ceil(4) * 4 * p.weight_shape()[1..].iter().product::<usize>();
    let (outputs, inputs) = slots(p, input, k, weights);
    Kernel::new(
        gpu,
        KernelSpec {
            label: format!("{label} (conv2d shared {channels}x{pixels})"),
            shader: CONV2D_SHARED,
            precision: k.precision,
            entry,
            constants: &[],
            uniforms: bytemuck::bytes_of(&params),
            dispatch: Dispatch::Groups([u(p.out_channels).div_ceil(channels), groups_y, groups_z]),
            outputs,
            inputs,
        },
    )
}
