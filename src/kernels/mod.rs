//! GPU kernels: one host file per op family, next to `shaders/<same name>.wgsl`; a family with several algorithms
//! (conv2d) is a folder with one file per algorithm, next to `shaders/<family>_<algorithm>.wgsl`.
//!
//! Each family offers a constructor that validates the op's parameters against the input shapes and device limits
//! and returns a [`Kernel`](crate::gpu::Kernel) with named output and input slots; weights are uploaded separately
//! so plans of several input sizes can share them.

pub mod conv2d;
pub mod conv_transpose2d;
pub mod dw_pointwise;
pub mod elementwise;
pub mod encode;
pub mod norm;
pub mod pad;
pub mod pool;
pub mod preprocess;
pub mod resize;
pub mod softmax;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Precision, Shader};

/// Convolution weights on the GPU as a conv kernel binds them (`weight`, `bias`): batch-norm folded in, in the
/// layout that kernel's `fold` produced.
#[derive(Debug)]
pub struct FoldedWeights {
    pub weight: wgpu::Buffer,
    pub bias: wgpu::Buffer,
}

/// Uploads the `(weight, bias)` a conv family's `fold` returned: the weight in `precision`, the bias in f32 (it is
/// added to the f32 accumulator, and is one value per output channel).
pub fn upload_folded(
    gpu: &Gpu,
    label: &str,
    (weight, bias): (Vec<f32>, Vec<f32>),
    precision: Precision,
) -> Result<FoldedWeights> {
    // A folded weight beyond f16's range (a batch-norm with a tiny variance, say) would become an infinity and
    // poison every output it touches: refuse it by name instead.
    if precision == Precision::F16 {
        let max = f32::from(half::f16::MAX);
        if let Some(v) = weight.iter().find(|v| v.is_finite() && v.abs() > max) {
            return Err(Error::Model(format!(
                "{label}: folded weight {v} is beyond f16's range (+-{max}); compile this model in f32"
            )));
        }
    }
    Ok(FoldedWeights {
        weight: gpu.upload_floats(&format!("{label}.weight"), &weight, precision)?,
        bias: gpu.upload_f32(&format!("{label}.bias"), &bias)?,
    })
}

macro_rules! shader {
    ($name:literal) => {
        shader!($name, false)
    };
    ($name:literal, $f16_only:expr) => {
        Shader {
            name: $name,
            source: concat!(
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/common.wgsl")),
                include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/shaders/",
                    $name,
                    ".wgsl"
                ))
            ),
            f16_only: $f16_only,
        }
    };
}

pub(crate) const CONV2D_DEPTHWISE: Shader = shader!("conv2d_depthwise");
pub(crate) const CONV2D_DIRECT: Shader = shader!("conv2d_direct");
pub(crate) const CONV2D_SHARED: Shader = shader!("conv2d_shared");
pub(crate) const CONV2D_SUBGROUP: Shader = shader!("conv2d_subgroup");
pub(crate) const CONV2D_SPLIT_K: Shader = shader!("conv2d_split_k");
pub(crate) const CONV2D_SPLIT_K_F16: Shader = shader!("conv2d_split_k_f16", true);
pub(crate) const CONV2D_TILED: Shader = shader!("conv2d_tiled");
pub(crate) const CONV2D_TILED_F16: Shader = shader!("conv2d_tiled_f16", true);
pub(crate) const CONV2D_WINOGRAD: Shader = shader!("conv2d_winograd");
pub(crate) const CONV2D_WINOGRAD_F16: Shader = shader!("conv2d_winograd_f16", true);
pub(crate) const CONV_TRANSPOSE2D: Shader = shader!("conv_transpose2d");
pub(crate) const DW_POINTWISE: Shader = shader!("dw_pointwise");
pub(crate) const ELEMENTWISE: Shader = shader!("elementwise");
pub(crate) const ENCODE: Shader = shader!("encode");
pub(crate) const ENCODE_PROBABILITY: Shader = shader!("encode_probability");
pub(crate) const NORM: Shader = shader!("norm");
pub(crate) const NORMALIZE: Shader = shader!("normalize");
pub(crate) const PAD: Shader = shader!("pad");
pub(crate) const POOL: Shader = shader!("pool");
pub(crate) const PREPROCESS: Shader = shader!("preprocess");
pub(crate) const RESIZE: Shader = shader!("resize");
pub(crate) const SOFTMAX: Shader = shader!("softmax");

/// Every shader program, for validation without a GPU.
pub const SHADERS: &[Shader] = &[
    CONV2D_DEPTHWISE,
    CONV2D_DIRECT,
    CONV2D_SHARED,
    CONV2D_SUBGROUP,
    CONV2D_SPLIT_K,
    CONV2D_SPLIT_K_F16,
    CONV2D_TILED,
    CONV2D_TILED_F16,
    CONV2D_WINOGRAD,
    CONV2D_WINOGRAD_F16,
    CONV_TRANSPOSE2D,
    DW_POINTWISE,
    ELEMENTWISE,
    ENCODE,
    ENCODE_PROBABILITY,
    NORM,
    NORMALIZE,
    PAD,
    POOL,
    PREPROCESS,
    RESIZE,
    SOFTMAX,
];
