//! Group normalisation (shaders/norm.wgsl).

use super::{FoldedWeights, NORM};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Kernel, KernelSpec, Precision, Slot};
use crate::ops::GroupNorm;
use crate::tensor::Shape;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    groups_total: u32,
    span: u32,
    plane: u32,
    channels_per_group: u32,
    groups: u32,
    activation: u32,
    eps: f32,
    pad: u32,
}

/// Uploads the per-channel scale and shift, as the kernel binds them (`weight`, `bias`): f32 in every precision,
/// as they multiply and add in the f32 arithmetic.
pub fn upload_weights(
    gpu: &Gpu,
    label: &str,
    p: &GroupNorm,
    weight: Vec<f32>,
    bias: Vec<f32>,
) -> Result<FoldedWeights> {
    if weight.len() != p.channels || bias.len() != p.channels {
        return Err(Error::shape(
            "group_norm",
            format!(
                "{label}: weight and bias need {} values, got {} and {}",
                p.channels,
                weight.len(),
                bias.len()
            ),
        ));
    }
    super::upload_folded(gpu, label, (weight, bias), Precision::F32)
}

/// The group-norm kernel for `input`. Outputs: `output` (same shape). Inputs: `input`, `weight`, `bias` (from
/// [`upload_weights`]). Input and output are stored in `precision`.
pub fn group_norm(
    gpu: &Gpu,
    label: &str,
    p: &GroupNorm,
    input: Shape,
    precision: Precision,
) -> Result<Kernel> {
    let shape = p.output_shape(input)?;
    let span = p.channels_per_group() * shape.plane();
    let count = shape.n * p.groups;
    let max = gpu.limits().max_compute_workgroups_per_dimension as usize;
    let (x, y) = (count.min(max), count.div_ceil(max));
    if y > max || u32::try_from(shape.numel()).is_err() {
        return Err(Error::params(
            "group_norm",
            format!("{label}: input {input} is too large for one dispatch"),
        ));
    }
    let params = Params {
        groups_total: count as u32,
        span: span as u32,
        plane: shape.plane() as u32,
        channels_per_group: p.channels_per_group() as u32,
        groups: p.groups as u32,
        activation: p.activation.code(),
        eps: p.eps as f32,
        pad: 0,
    };
    Kernel::new(
        gpu,
        KernelSpec {
            label: format!("{label} (group_norm)"),
            shader: NORM,
            precision,
            entry: "group_norm",
            constants: &[],
            uniforms: bytemuck::bytes_of(&params),
            dispatch: Dispatch::Groups([x as u32, y as u32, 1]),
            outputs: vec![Slot::floats("output", shape.numel(), precision)],
            inputs: vec![
                Slot::floats("input", shape.numel(), precision),
                Slot::elements("weight", p.channels),
                Slot::elements("bias", p.channels),
            ],
        },
    )
}
