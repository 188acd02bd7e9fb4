//! atrous: semantic segmentation (DeepLab, UNet and their family) on any GPU through wgpu, with hand-written WGSL
//! kernels checked against a CPU reference.

pub mod error;
pub mod gpu;
pub mod kernels;
pub mod ops;
pub mod reference;
pub mod tensor;

pub use error::{Error, Result};
pub use gpu::{Gpu, GpuTensor};
pub use tensor::{Shape, Tensor};
