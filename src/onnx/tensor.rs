//! Tensors known on the host while a graph is translated: initializers, `Constant` nodes and everything folded
//! from them (shape arithmetic). Floating-point data is held as f32, integers and booleans as i64.

use super::proto::TensorProto;
use crate::error::{Error, Result};
use std::path::Path;

/// ONNX `TensorProto.DataType` codes atrous reads.
pub mod dtype {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const UINT16: i32 = 4;
    pub const INT16: i32 = 5;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const BOOL: i32 = 9;
    pub const FLOAT16: i32 = 10;
    pub const DOUBLE: i32 = 11;
    pub const UINT32: i32 = 12;
    pub const UINT64: i32 = 13;
    pub const BFLOAT16: i32 = 16;

    pub fn is_float(t: i32) -> bool {
        matches!(t, FLOAT | FLOAT16 | DOUBLE | BFLOAT16)
    }

    /// Bytes per element of a data type atrous reads.
    pub fn element_bytes(t: i32) -> Option<usize> {
        match t {
            UINT8 | INT8 | BOOL => Some(1),
            UINT16 | INT16 | FLOAT16 | BFLOAT16 => Some(2),
            FLOAT | INT32 | UINT32 => Some(4),
            INT64 | DOUBLE | UINT64 => Some(8),
            _ => None,
        }
    }

    pub fn is_integer(t: i32) -> bool {
        matches!(
            t,
            UINT8 | INT8 | UINT16 | INT16 | INT32 | INT64 | BOOL | UINT32 | UINT64
        )
    }

    pub fn name(t: i32) -> String {
        match t {
            FLOAT => "float".into(),
            UINT8 => "uint8".into(),
            INT8 => "int8".into(),
            UINT16 => "uint16".into(),
            INT16 => "int16".into(),
            INT32 => "int32".into(),
            INT64 => "int64".into(),
            8 => "string".into(),
            BOOL => "bool".into(),
            FLOAT16 => "float16".into(),
            DOUBLE => "double".into(),
            UINT32 => "uint32".into(),
            UINT64 => "uint64".into(),
            BFLOAT16 => "bfloat16".into(),
            other => format!("data type {other}"),
        }
    }
}

/// The most elements a tensor folded on the host may have: shape arithmetic is tiny, and a file that asks for more
/// (a ConstantOfShape of 2^40 elements) is refused instead of allocating.
pub const MAX_HOST_ELEMENTS: usize = 1 << 24;

#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A tensor on the host: its ONNX data type (kept for Cast, comparisons and error messages), dims and values.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub dtype: i32,
    pub dims: Vec<usize>,
    pub data: Data,
}

/// Number of elements of `dims`, refused past [`MAX_HOST_ELEMENTS`] (and on overflow).
pub fn element_count(dims: &[usize], what: &str) -> Result<usize> {
    let n = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_HOST_ELEMENTS)
        .ok_or_else(|| {
            Error::Model(format!(
                "{what}: shape {dims:?} has more than {MAX_HOST_ELEMENTS} elements"
            ))
        })?;
    Ok(n)
}

impl HostTensor {
    pub fn f32(dims: Vec<usize>, values: Vec<f32>) -> Self {
        HostTensor {
            dtype: dtype::FLOAT,
            dims,
            data: Data::F32(values),
        }
    }

    pub fn i64(dims: Vec<usize>, values: Vec<i64>) -> Self {
        HostTensor {
            dtype: dtype::INT64,
            dims,
            data: Data::I64(values),
        }
    }

    pub fn with_dtype(mut self, t: i32) -> Self {
        self.dtype = t;
        self
    }

    pub fn len(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_float(&self) -> bool {
        matches!(self.data, Data::F32(_))
    }

    /// The values as f64 (integers exactly up to 2^53, which shape arithmetic never exceeds).
    pub fn as_f64(&self) -> Vec<f64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::I64(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    pub fn as_f32(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The values as integers; floats are truncated toward zero as a cast does.
    pub fn as_i64(&self) -> Vec<i64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I64(v) => v.clone(),
        }
    }

    /// A scalar or one-element tensor's value.
    pub fn scalar_f64(&self, what: &str) -> Result<f64> {
        match self.as_f64()[..] {
            [v] => Ok(v),
            _ => Err(Error::Model(format!(
                "{what} must be a scalar, got a tensor of shape {:?}",
                self.dims
            ))),
        }
    }

    /// Reads an initializer or a `Constant`'s value; external data is read from files beside the model, `dir`.
    pub fn from_proto(t: &TensorProto, dir: Option<&Path>) -> Result<Self> {
        let what = format!("tensor {:?}", t.name);
        let dims = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| Error::Model(format!("{what}: negative dimension in {:?}", t.dims)))?;
        // Bounded by the data actually present (checked below before anything is allocated), not by a cap: weights
        // may be large.
        let n = dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| Error::Model(format!("{what}: shape {dims:?} overflows")))?;
        let external;
        let raw: &[u8] = if t.data_location == 1 {
            let bytes = dtype::element_bytes(t.data_type).and_then(|b| n.checked_mul(b));
            external = read_external(t, dir, &what, bytes)?;
            &external
        } else {
            &t.raw_data
        };
        let bad_len = |got: usize| {
            Error::Model(format!(
                "{what}: shape {dims:?} needs {n} {} values, the file holds {got}",
                dtype::name(t.data_type)
            ))
        };
        let from_raw = |size: usize| -> Result<Option<std::slice::ChunksExact<'_, u8>>> {
            if raw.is_empty() && n > 0 {
                return Ok(None);
            }
            if n.checked_mul(size) != Some(raw.len()) {
                return Err(bad_len(raw.len() / size.max(1)));
            }
            Ok(Some(raw.chunks_exact(size)))
        };
        let check = |len: usize| if len == n { Ok(()) } else { Err(bad_len(len)) };
        let data = match t.data_type {
            dtype::FLOAT => Data::F32(match from_raw(4)? {
                Some(c) => c
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect(),
                None => {
                    check(t.float_data.len())?;
                    t.float_data.clone()
                }
            }),
            dtype::DOUBLE => Data::F32(match from_raw(8)? {
                Some(c) => c
                    .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
                    .collect(),
                None => {
                    check(t.double_data.len())?;
                    t.double_data.iter().map(|&v| v as f32).collect()
                }
            }),
            dtype::FLOAT16 | dtype::BFLOAT16 => {
                let bits: Vec<u16> = match from_raw(2)? {
                    Some(c) => c.map(|b| u16::from_le_bytes([b[0], b[1]])).collect(),
                    None => {
                        check(t.int32_data.len())?;
                        t.int32_data.iter().map(|&v| v as u16).collect()
                    }
                };
                Data::F32(if t.data_type == dtype::FLOAT16 {
                    bits.iter()
                        .map(|&b| half::f16::from_bits(b).to_f32())
                        .collect()
                } else {
                    bits.iter()
                        .map(|&b| half::bf16::from_bits(b).to_f32())
                        .collect()
                })
            }
            dtype::INT64 => Data::I64(match from_raw(8)? {
                Some(c) => c
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                    .collect(),
                None => {
                    check(t.int64_data.len())?;
                    t.int64_data.clone()
                }
            }),
            dtype::UINT64 => Data::I64(match from_raw(8)? {
                Some(c) => c
                    .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as i64)
                    .collect(),
                None => {
                    check(t.uint64_data.len())?;
                    t.uint64_data.iter().map(|&v| v as i64).collect()
                }
            }),
            dtype::INT32 | dtype::UINT32 => Data::I64(match from_raw(4)? {
                Some(c) => c
                    .map(|b| {
                        let v = [b[0], b[1], b[2], b[3]];
                        if t.data_type == dtype::INT32 {
                            i32::from_le_bytes(v) as i64
                        } else {
                            u32::from_le_bytes(v) as i64
                        }
                    })
                    .collect(),
                None => {
                    check(t.int32_data.len())?;
                    t.int32_data.iter().map(|&v| v as i64).collect()
                }
            }),
            dtype::INT8 | dtype::UINT8 | dtype::BOOL | dtype::INT16 | dtype::UINT16 => {
                let size = if matches!(t.data_type, dtype::INT16 | dtype::UINT16) {
                    2
                } else {
                    1
                };
                Data::I64(match from_raw(size)? {
                    Some(c) => c
                        .map(|b| match t.data_type {
                            dtype::INT8 => b[0] as i8 as i64,
                            dtype::INT16 => i16::from_le_bytes([b[0], b[1]]) as i64,
                            dtype::UINT16 => u16::from_le_bytes([b[0], b[1]]) as i64,
                            _ => b[0] as i64,
                        })
                        .collect(),
                    None => {
                        check(t.int32_data.len())?;
                        t.int32_data.iter().map(|&v| v as i64).collect()
                    }
                })
            }
            other => {
                return Err(Error::Model(format!(
                    "{what}: data type {} is not supported",
                    dtype::name(other)
                )))
            }
        };
        Ok(HostTensor {
            dtype: t.data_type,
            dims,
            data,
        })
    }
}

/// Reads a tensor's bytes from the external data file its `external_data` names (`location`, `offset`, `length`),
/// relative to the model's folder; a location that leaves the folder, or a range past the file's end, is refused.
/// `expected` is the byte count the tensor's dims and type need: a different length is refused before anything is
/// allocated or read.
fn read_external(
    t: &TensorProto,
    dir: Option<&Path>,
    what: &str,
    expected: Option<usize>,
) -> Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let entry = |key: &str| {
        t.external_data
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    };
    let location = entry("location")
        .ok_or_else(|| Error::Model(format!("{what}: external data without a location")))?;
    let relative = Path::new(location);
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(Error::Model(format!(
            "{what}: external data location {location:?} must be a plain path inside the model's folder"
        )));
    }
    let dir = dir.ok_or_else(|| {
        Error::Model(format!(
            "{what}: external data in {location:?}, but the model was not read from a file"
        ))
    })?;
    let path = dir.join(relative);
    let file_error = |message: String| Error::File {
        path: path.clone(),
        message: format!("{what}: {message}"),
    };
    let number = |key: &str| -> Result<Option<u64>> {
        entry(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| file_error(format!("external data {key} {v:?} is not a number")))
            })
            .transpose()
    };
    let offset = number("offset")?.unwrap_or(0);
    let mut file = std::fs::File::open(&path).map_err(|e| file_error(e.to_string()))?;
    let file_len = file
        .metadata()
        .map_err(|e| file_error(e.to_string()))?
        .len();
    let length = match number("length")? {
        Some(l) => l,
        None => file_len.saturating_sub(offset),
    };
    if offset.checked_add(length).is_none_or(|end| end > file_len) {
        return Err(file_error(format!(
            "external data range {offset}+{length} is past the end of the {file_len}-byte file"
        )));
    }
    let length = usize::try_from(length).map_err(|_| file_error("too large".into()))?;
    if expected.is_some_and(|e| e != length) {
        return Err(file_error(format!(
            "external data holds {length} bytes, its shape and type need {}",
            expected.unwrap_or_default()
        )));
    }
    let mut bytes = vec![0u8; length];
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(&mut bytes))
        .map_err(|e| file_error(e.to_string()))?;
    Ok(bytes)
}
