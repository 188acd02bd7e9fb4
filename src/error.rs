//! The one error type of atrous. Every message names the op, node, tensor, shape or file involved.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable GPU adapter; the message says how to get one.
    #[error("no GPU adapter found{detail}: install a GPU driver, or on Linux without a GPU install Mesa's lavapipe (Debian: mesa-vulkan-drivers; see scripts/setup-software-gpu.sh), or try WGPU_BACKEND=gl for Mesa's llvmpipe")]
    NoAdapter { detail: String },

    /// `ATROUS_ADAPTER` matched nothing.
    #[error("ATROUS_ADAPTER={wanted:?} matches none of the adapters: {available}")]
    AdapterNotFound { wanted: String, available: String },

    /// The device could not be created or was lost.
    #[error("GPU device error: {0}")]
    Device(String),

    /// Invalid parameters for an op (stride 0, kernel larger than the padded input, ...).
    #[error("{op}: {message}")]
    InvalidParams { op: &'static str, message: String },

    /// Tensor shapes that do not fit together.
    #[error("{op}: shape mismatch: {message}")]
    Shape { op: &'static str, message: String },

    /// A size over one of the device's limits; checked before allocating.
    #[error("{what}: {size} bytes exceeds the device limit {limit_name} = {limit} bytes")]
    TooLarge {
        what: String,
        size: u64,
        limit_name: &'static str,
        limit: u64,
    },

    /// A wgpu validation or out-of-memory error caught by an error scope.
    #[error("GPU error in {context}: {message}")]
    Gpu { context: String, message: String },

    /// A file that could not be read or written.
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },

    /// Malformed model data: weights, graph, metadata.
    #[error("{0}")]
    Model(String),

    /// A frame or target the embedding API cannot use (a texture of an unsupported format or without the usage a
    /// copy needs, a region outside the texture, ...).
    #[error("{0}")]
    Frame(String),

    /// A stream whose previous frame's readback is still in flight: poll the device, await that readback, or run
    /// the frame on another stream.
    #[error("{0}")]
    Busy(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn params(op: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidParams {
            op,
            message: message.into(),
        }
    }

    pub(crate) fn shape(op: &'static str, message: impl Into<String>) -> Self {
        Error::Shape {
            op,
            message: message.into(),
        }
    }
}
