//! Model weights: safetensors files (f32, f16, bf16; computed in f32), memory-mapped, looked up by PyTorch
//! state_dict names, plus tensors added in memory by graph builders.

use crate::error::{Error, Result};
use safetensors::tensor::{Dtype, Metadata, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// A weight tensor on the host, converted to f32.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

struct MappedFile {
    path: PathBuf,
    map: memmap2::Mmap,
    metadata: Metadata,
    data_start: usize,
}

/// Named weight tensors: a memory-mapped safetensors file and/or tensors held in memory (which take precedence).
#[derive(Default)]
pub struct Weights {
    file: Option<MappedFile>,
    owned: BTreeMap<String, HostTensor>,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Weights")
            .field("file", &self.file.as_ref().map(|m| &m.path))
            .field("in_memory", &self.owned.len())
            .finish()
    }
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Whether a tensor of shape `actual` can be read as NCHW `shape`: rank at most 4, equal element counts.
fn reshape_error(name: &str, actual: &[usize], shape: [usize; 4], where_: &str) -> Result<()> {
    let count = |dims: &[usize]| dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if actual.len() > 4 || count(actual).is_none() || count(actual) != count(&shape) {
        return Err(Error::Model(format!(
            "weight tensor {name:?} has shape {actual:?}{where_}, which cannot be read as NCHW {shape:?} (rank at most 4, the same element count)"
        )));
    }
    Ok(())
}

impl Weights {
    pub fn new() -> Self {
        Self::default()
    }

    /// Memory-maps a safetensors file and parses its header; tensors are converted when looked up.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| file_error(path, e))?;
        // Safety: the map is read-only; a file truncated under us while mapped is outside what we can guard.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| file_error(path, e))?;
        let (header, metadata) = SafeTensors::read_metadata(&map)
            .map_err(|e| file_error(path, format!("not a valid safetensors file: {e}")))?;
        Ok(Weights {
            file: Some(MappedFile {
                path: path.to_path_buf(),
                map,
                metadata,
                data_start: 8 + header,
            }),
            owned: BTreeMap::new(),
        })
    }

    /// The file these weights were mapped from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|f| f.path.as_path())
    }

    /// The file's `__metadata__` string map.
    pub fn metadata(&self) -> Option<&HashMap<String, String>> {
        self.file
            .as_ref()
            .and_then(|f| f.metadata.metadata().as_ref())
    }

    /// Adds or replaces an in-memory tensor.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        shape: Vec<usize>,
        data: Vec<f32>,
    ) -> Result<()> {
        let name = name.into();
        if shape.iter().product::<usize>() != data.len() {
            return Err(Error::Model(format!(
                "weight {name:?}: shape {shape:?} does not hold {} values",
                data.len()
            )));
        }
        self.owned.insert(name, HostTensor { shape, data });
        Ok(())
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.owned.keys().cloned().collect();
        if let Some(f) = &self.file {
            names.extend(
                f.metadata
                    .tensors()
                    .into_keys()
                    .filter(|n| !self.owned.contains_key(n)),
            );
        }
        names.sort();
        names
    }

    pub fn contains(&self, name: &str) -> bool {
        self.shape(name).is_some()
    }

    /// A tensor's shape without converting its data.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        if let Some(t) = self.owned.get(name) {
            return Some(t.shape.clone());
        }
        self.file
            .as_ref()?
            .metadata
            .info(name)
            .map(|i| i.shape.clone())
    }

    /// Checks that `name` exists with `expected` shape in a readable dtype, without converting its data; the error
    /// names the tensor and both shapes.
    pub fn check(&self, name: &str, expected: &[usize]) -> Result<()> {
        let (shape, dtype) = match (self.owned.get(name), &self.file) {
            (Some(t), _) => (t.shape.as_slice(), Dtype::F32),
            (None, Some(f)) => match f.metadata.info(name) {
                Some(info) => (info.shape.as_slice(), info.dtype),
                None => return Err(self.missing(name)),
            },
            (None, None) => return Err(self.missing(name)),
        };
        if shape != expected {
            return Err(Error::Model(format!(
                "weight tensor {name:?} has shape {shape:?}, expected {expected:?}{}",
                self.where_()
            )));
        }
        if !matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return Err(Error::Model(format!(
                "weight tensor {name:?} has dtype {dtype:?}; atrous reads F32, F16 and BF16"
            )));
        }
        Ok(())
    }

    fn missing(&self, name: &str) -> Error {
        Error::Model(format!(
            "weight tensor {name:?} is missing{}",
            self.where_()
        ))
    }

    /// A tensor converted to f32; the error names a missing tensor.
    pub fn get(&self, name: &str) -> Result<HostTensor> {
        if let Some(t) = self.owned.get(name) {
            return Ok(t.clone());
        }
        let missing = || self.missing(name);
        let file = self.file.as_ref().ok_or_else(missing)?;
        let info = file.metadata.info(name).ok_or_else(missing)?;
        let (start, end) = info.data_offsets;
        let bytes = &file.map[file.data_start + start..file.data_start + end];
        let data = to_f32(info.dtype, bytes).map_err(|dtype| {
            Error::Model(format!(
                "weight tensor {name:?} has dtype {dtype:?}; atrous reads F32, F16 and BF16"
            ))
        })?;
        Ok(HostTensor {
            shape: info.shape.clone(),
            data,
        })
    }

    /// A tensor that must have `expected` shape; the error names the tensor and both shapes.
    pub fn get_shaped(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let t = self.get(name)?;
        if t.shape != expected {
            return Err(Error::Model(format!(
                "weight tensor {name:?} has shape {:?}, expected {expected:?}{}",
                t.shape,
                self.where_()
            )));
        }
        Ok(t.data)
    }

    /// Checks that `name` exists in a readable dtype with rank at most 4 and as many elements as the NCHW `shape`
    /// (what a constant node reads), without converting its data.
    pub fn check_reshaped(&self, name: &str, shape: [usize; 4]) -> Result<()> {
        let actual = self.shape(name).ok_or_else(|| self.missing(name))?;
        // Exists: its own shape checks only the dtype.
        self.check(name, &actual)?;
        reshape_error(name, &actual, shape, &self.where_())
    }

    /// The tensor `name` (rank at most 4, as many elements as `shape`) as an f32 tensor of NCHW `shape`.
    pub fn get_reshaped(&self, name: &str, shape: [usize; 4]) -> Result<crate::tensor::Tensor> {
        let t = self.get(name)?;
        reshape_error(name, &t.shape, shape, &self.where_())?;
        let [n, c, h, w] = shape;
        crate::tensor::Tensor::new(crate::tensor::Shape::new(n, c, h, w), t.data)
    }

    fn where_(&self) -> String {
        self.file
            .as_ref()
            .map_or(String::new(), |f| format!(" in {}", f.path.display()))
    }

    /// Every tensor (in memory and mapped) as f32, with `metadata`, written as one safetensors file.
    pub fn save(&self, path: impl AsRef<Path>, metadata: HashMap<String, String>) -> Result<()> {
        self.save_only(path, self.names(), metadata)
    }

    /// The tensors `names` as f32, with `metadata`, written as one safetensors file.
    pub fn save_only(
        &self,
        path: impl AsRef<Path>,
        names: Vec<String>,
        metadata: HashMap<String, String>,
    ) -> Result<()> {
        let path = path.as_ref();
        let tensors: Vec<(String, HostTensor)> = names
            .into_iter()
            .map(|n| self.get(&n).map(|t| (n, t)))
            .collect::<Result<_>>()?;
        let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
            .into_iter()
            .map(|(n, t)| (n, bytemuck::cast_slice(&t.data).to_vec(), t.shape))
            .collect();
        let views = bytes
            .iter()
            .map(|(n, b, s)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.as_str(), v)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| file_error(path, e))?;
        let data =
            safetensors::serialize(views, Some(metadata)).map_err(|e| file_error(path, e))?;
        std::fs::write(path, data).map_err(|e| file_error(path, e))
    }
}

/// Converts little-endian tensor bytes to f32; `Err(dtype)` for types atrous does not read.
fn to_f32(dtype: Dtype, bytes: &[u8]) -> std::result::Result<Vec<f32>, Dtype> {
    Ok(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => return Err(other),
    })
}

/// A view of [`Weights`] under a name prefix, as model builders walk a state_dict (`w.pp("layer1").pp("0")`).
#[derive(Clone)]
pub struct Prefixed<'a> {
    weights: &'a Weights,
    prefix: String,
}

impl Weights {
    /// The root view (no prefix).
    pub fn root(&self) -> Prefixed<'_> {
        Prefixed {
            weights: self,
            prefix: String::new(),
        }
    }
}

impl<'a> Prefixed<'a> {
    /// The view under `sub` (a state_dict path component such as `layer1` or `0`).
    pub fn pp(&self, sub: impl std::fmt::Display) -> Prefixed<'a> {
        Prefixed {
            weights: self.weights,
            prefix: self.name(&sub.to_string()),
        }
    }

    /// The full name of `name` under this prefix.
    pub fn name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    pub fn weights(&self) -> &'a Weights {
        self.weights
    }

    /// Whether a tensor `name` exists under this prefix.
    pub fn contains(&self, name: &str) -> bool {
        self.weights.contains(&self.name(name))
    }

    /// The shape of `name`; the error names the full tensor name.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let full = self.name(name);
        self.weights
            .shape(&full)
            .ok_or_else(|| self.weights.missing(&full))
    }
}
