//! atrous: semantic segmentation (DeepLab, UNet and their family) on any GPU through wgpu, with hand-written WGSL
//! kernels checked against a CPU reference.

pub mod engine;
pub mod error;
pub mod gpu;
pub mod graph;
pub mod image_io;
pub mod kernels;
pub mod model;
pub mod models;
pub mod onnx;
pub mod ops;
pub mod plan;
pub mod raster;
pub mod reference;
pub mod segment;
pub mod tensor;
pub mod tiles;
pub mod weights;

pub use engine::Engine;
pub use error::{Error, Result};
pub use gpu::{Gpu, GpuTensor};
pub use graph::{Graph, GraphBuilder};
pub use model::Model;
pub use segment::{Segmentation, Segmenter};
pub use tensor::{Shape, Tensor};
