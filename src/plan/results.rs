//! What plans share and return: the weight uploads of a model, and outputs read back to the host.

use crate::error::Result;
use crate::gpu::Precision;
use crate::graph::ConvWeightNames;
use crate::tensor::{Shape, Tensor};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A convolution's folded (weight, bias) buffers.
type Uploaded = (Arc<wgpu::Buffer>, Arc<wgpu::Buffer>);

/// Folded convolution weights uploaded once per model and shared by its plans, keyed by weight tensor names; and
/// the values of constant nodes, likewise.
#[derive(Default)]
pub struct WeightCache {
    uploads: Mutex<HashMap<String, Uploaded>>,
    constants: Mutex<HashMap<String, Arc<wgpu::Buffer>>>,
}

impl WeightCache {
    pub(crate) fn get_or_upload(
        &self,
        names: &ConvWeightNames,
        precision: Precision,
        upload: impl FnOnce() -> Result<crate::kernels::FoldedWeights>,
    ) -> Result<Uploaded> {
        self.get_or_upload_as(names, "", precision, upload)
    }

    /// [`WeightCache::get_or_upload`] for weights folded into another `layout` than their op's default (Winograd's
    /// transformed conv weights, say), cached apart from it.
    pub(crate) fn get_or_upload_as(
        &self,
        names: &ConvWeightNames,
        layout: &str,
        precision: Precision,
        upload: impl FnOnce() -> Result<crate::kernels::FoldedWeights>,
    ) -> Result<Uploaded> {
        let names = serde_json::to_string(names).unwrap_or_else(|_| names.weight.clone());
        // Plans of another precision, or kernels reading another layout, need their own copy.
        let key = match layout {
            "" => format!("{precision} {names}"),
            _ => format!("{precision} {layout} {names}"),
        };
        let mut uploads = self.uploads.lock().expect("weight cache poisoned");
        if let Some(u) = uploads.get(&key) {
            return Ok(u.clone());
        }
        let folded = upload()?;
        let u = (Arc::new(folded.weight), Arc::new(folded.bias));
        uploads.insert(key, u.clone());
        Ok(u)
    }

    /// The values of the constant tensor `name` in `precision`, uploaded on first use.
    pub(crate) fn get_or_upload_constant(
        &self,
        name: &str,
        precision: Precision,
        upload: impl FnOnce() -> Result<wgpu::Buffer>,
    ) -> Result<Arc<wgpu::Buffer>> {
        let key = format!("{precision} {name}");
        let mut constants = self.constants.lock().expect("weight cache poisoned");
        if let Some(b) = constants.get(&key) {
            return Ok(b.clone());
        }
        let buffer = Arc::new(upload()?);
        constants.insert(key, buffer.clone());
        Ok(buffer)
    }

    /// Number of uploaded convolutions.
    pub fn len(&self) -> usize {
        self.uploads.lock().expect("weight cache poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A graph output read back to the host.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    F32(Tensor),
    /// Pooling indices or a class map.
    U32 {
        shape: Shape,
        data: Vec<u32>,
    },
}

impl Output {
    pub fn shape(&self) -> Shape {
        match self {
            Output::F32(t) => t.shape,
            Output::U32 { shape, .. } => *shape,
        }
    }

    /// The values as f32 (indices converted).
    pub fn to_f32(&self) -> Tensor {
        match self {
            Output::F32(t) => t.clone(),
            Output::U32 { shape, data } => Tensor {
                shape: *shape,
                data: data.iter().map(|&v| v as f32).collect(),
            },
        }
    }
}
