//! A depthwise conv2d and the 1 x 1 conv2d that reads it, in one kernel (shaders/dw_pointwise.wgsl): the depthwise
//! result stays in registers, so an inverted residual's largest tensor is never written, read back or given memory.
//! The planner fuses such pairs (plan/fuse.rs) where [`unfusable`] finds no reason not to.

use super::DW_POINTWISE;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Kernel, KernelSpec, Precision, Slot, WORKGROUP_SIZE};
use crate::ops::Conv2d;
use crate::tensor::Shape;

/// Output channels of the 1 x 1 conv one thread accumulates for each of its pixels (all of them). Beyond this the
/// accumulators outgrow the registers; MobileNet's high-resolution blocks, where fusion saves the most, have 16-24.
pub const MAX_OUT_CHANNELS: usize = 32;

/// Storage bindings the kernel uses: output, input, two weights, two biases, residual.
pub const STORAGE_BINDINGS: u32 = 7;

/// Output pixels per thread.
const PIXELS: usize = 2;

/// Why `dw` then `pw` cannot run as one kernel, or `None` when they can: `dw` depthwise (groups == in == out) with no
/// residual and no channel offset; `pw` a 1 x 1, stride 1, unpadded, ungrouped conv of `dw`'s channels with at most
/// [`MAX_OUT_CHANNELS`] outputs (any epilogue).
pub fn unfusable(dw: &Conv2d, pw: &Conv2d) -> Option<String> {
    if !dw.is_depthwise() || dw.residual || dw.dest_channels() != dw.out_channels {
        return Some(format!(
            "the first conv must be depthwise with no residual or channel offset (groups {}, in {}, out {})",
            dw.groups, dw.in_channels, dw.out_channels
        ));
    }
    let pointwise = pw.kernel == [1, 1]
        && pw.stride == [1, 1]
        && pw.padding == Default::default()
        && pw.groups == 1
        && pw.in_channels == dw.out_channels;
    if !pointwise || pw.out_channels > MAX_OUT_CHANNELS {
        return Some(format!(
            "the second conv must be 1 x 1, stride 1, unpadded, ungrouped, of the depthwise conv's {} channels, \
             with at most {MAX_OUT_CHANNELS} outputs (kernel {:?}, stride {:?}, groups {}, in {}, out {})",
            dw.out_channels, pw.kernel, pw.stride, pw.groups, pw.in_channels, pw.out_channels
        ));
    }
    None
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c_mid: u32,
    h_in: u32,
    w_in: u32,
    h_out: u32,
    w_out: u32,
    stride_h: u32,
    stride_w: u32,
    pad_top: u32,
    pad_left: u32,
    dil_h: u32,
    dil_w: u32,
    mid_activation: u32,
    c_out: u32,
    dest_c: u32,
    dest_offset: u32,
    activation: u32,
    has_residual: u32,
    blocks_x: u32,
}

/// `pw(dw(input))` in one dispatch. Outputs: `output` (`pw`'s destination). Inputs: `input`, `dw_weight`,
/// `dw_bias`, `pw_weight`, `pw_bias` (each conv's weights from [`super::conv2d::upload_weights`]), `residual`
/// (`N x pw.out_channels x H x W`; bind [`Gpu::placeholder`] without one or in place). Floats in `precision` but the
/// biases (f32); both convs sum in f32 and the depthwise result is never rounded to storage.
pub fn dw_pointwise(
    gpu: &Gpu,
    label: &str,
    dw: &Conv2d,
    pw: &Conv2d,
    input: Shape,
    precision: Precision,
) -> Result<Kernel> {
    if let Some(why) = unfusable(dw, pw) {
        return Err(Error::params("dw_pointwise", format!("{label}: {why}")));
    }
    let limit = gpu.limits().max_storage_buffers_per_shader_stage;
    if limit < STORAGE_BINDINGS {
        return Err(Error::Gpu {
            context: format!("{label} (dw_pointwise)"),
            message: format!(
                "needs {STORAGE_BINDINGS} storage buffers per shader stage, the device allows {limit}"
            ),
        });
    }
    let mid = dw.output_shape(input)?;
    let dest = pw.output_shape(mid)?;
    let result = dest.with_c(pw.out_channels);
    let blocks = (mid.n * mid.h * mid.w).div_ceil(PIXELS * WORKGROUP_SIZE as usize) as u32;
    let blocks_x = blocks.clamp(1, gpu.limits().max_compute_workgroups_per_dimension);
    let u = |v: usize| v as u32;
    let params = Params {
        n: u(input.n),
        c_mid: u(input.c),
        h_in: u(input.h),
        w_in: u(input.w),
        h_out: u(mid.h),
        w_out: u(mid.w),
        stride_h: u(dw.stride[0]),
        stride_w: u(dw.stride[1]),
        pad_top: u(dw.padding.top),
        pad_left: u(dw.padding.left),
        dil_h: u(dw.dilation[0]),
        dil_w: u(dw.dilation[1]),
        mid_activation: dw.activation.code(),
        c_out: u(pw.out_channels),
        dest_c: u(dest.c),
        dest_offset: u(pw.out_channel_offset),
        activation: pw.activation.code(),
        has_residual: pw.residual_code(),
        blocks_x,
    };
    let out4 = pw.out_channels.div_ceil(4);
    let floats = |name, n| Slot::floats(name, n, precision);
    Kernel::new(
        gpu,
        KernelSpec {
            label: format!(
                "{label} (depthwise {}x{} + 1x1)",
                dw.kernel[0], dw.kernel[1]
            ),
            shader: DW_POINTWISE,
            precision,
            entry: "dw_pointwise",
            constants: &[
                ("OUT4", out4 as f64),
                ("KH", dw.kernel[0] as f64),
                ("KW", dw.kernel[1] as f64),
            ],
            uniforms: bytemuck::bytes_of(&params),
            dispatch: Dispatch::Groups([blocks_x, blocks.div_ceil(blocks_x), 1]),
            outputs: vec![floats("output", dest.numel())],
            inputs: vec![
                floats("input", input.numel()),
                floats("dw_weight", input.c * dw.kernel[0] * dw.kernel[1]),
                Slot::elements("dw_bias", input.c),
                floats("pw_weight", out4 * 4 * input.c),
                Slot::elements("pw_bias", pw.out_channels),
                floats("residual", super::conv2d::residual_elements(pw, result)),
            ],
        },
    )
    .map(|k| k.with_flops(dw.flops(input) + pw.flops(mid)))
}
