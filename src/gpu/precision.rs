//! The element type of activations and convolution weights on the GPU.
//!
//! One WGSL source serves both precisions: the host prepends a prelude that aliases `elem` (and `elem4`) to f32 or
//! f16, and shaders declare float storage as `array<elem>` and convert explicitly (`f32(x)` on load, `elem(v)` on
//! store). Arithmetic and every sum stay in f32, except in the f16 math variants of the tiled and split-K convs
//! (shaders/*_f16.wgsl, chosen by `PlanOptions::f16_math`), which multiply in f16 and accumulate in f32.

use crate::error::{Error, Result};

/// Storage precision of a compiled plan or kernel. u32 tensors (pooling indices, class maps) are u32 in both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 everywhere.
    #[default]
    F32,
    /// f16 activations and convolution weights (biases stay f32); f32 arithmetic and accumulation, or f16 products
    /// with f32 accumulation in the ungrouped convs (`PlanOptions::f16_math`). Needs the adapter feature
    /// `SHADER_F16`.
    F16,
}

impl Precision {
    pub const ALL: [Precision; 2] = [Precision::F32, Precision::F16];

    /// Bytes of one float element in storage.
    pub const fn element_bytes(self) -> u64 {
        match self {
            Precision::F32 => 4,
            Precision::F16 => 2,
        }
    }

    /// Bytes of `elements` floats in storage, rounded up to the 4-byte multiple that storage bindings, buffer writes
    /// and copies require (an odd number of f16 values leaves two bytes of padding).
    pub fn storage_bytes(self, elements: usize) -> u64 {
        (elements as u64)
            .saturating_mul(self.element_bytes())
            .next_multiple_of(4)
    }

    pub const fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }

    /// The WGSL prepended to shaders/common.wgsl and the op file. `enable` must precede every declaration.
    pub const fn prelude(self) -> &'static str {
        match self {
            Precision::F32 => "alias elem = f32;\nalias elem4 = vec4<f32>;\n",
            Precision::F16 => "enable f16;\nalias elem = f16;\nalias elem4 = vec4<f16>;\n",
        }
    }

    /// f32 values in this precision's storage layout, padded to [`Precision::storage_bytes`]. f16 rounds to
    /// nearest even; values beyond f16's range (65504) become infinities.
    pub fn encode(self, values: &[f32]) -> Vec<u8> {
        let mut bytes: Vec<u8> = match self {
            Precision::F32 => bytemuck::cast_slice(values).to_vec(),
            Precision::F16 => values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
        };
        bytes.resize(self.storage_bytes(values.len()) as usize, 0);
        bytes
    }

    /// The first `elements` floats of storage `bytes`, as f32.
    pub fn decode(self, bytes: &[u8], elements: usize) -> Vec<f32> {
        match self {
            Precision::F32 => bytemuck::pod_collect_to_vec(&bytes[..4 * elements]),
            Precision::F16 => bytes[..2 * elements]
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            _ => Err(Error::params(
                "precision",
                format!("{s:?} is not a precision (f32 or f16)"),
            )),
        }
    }
}
