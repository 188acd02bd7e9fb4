//! Running a compiled plan: uploads, one submission, readbacks.

use super::{tensor_bytes, Output, Plan};
use crate::error::{Error, Result};
use crate::gpu::{BoundKernel, Precision};
use crate::graph::{DType, TensorInfo};
use crate::tensor::Tensor;
use std::collections::HashMap;

impl Plan {
    /// Uploads `inputs` (every graph input, by name), records every kernel in one encoder, submits once and reads
    /// back only `outputs` (graph output names).
    pub fn run(
        &self,
        inputs: &[(&str, &Tensor)],
        outputs: &[&str],
    ) -> Result<HashMap<String, Output>> {
        if inputs.len() != self.inputs.len() {
            let expected: Vec<&String> = self.inputs.keys().collect();
            return Err(Error::Model(format!(
                "expected inputs {expected:?}, got {} tensors",
                inputs.len()
            )));
        }
        for &(name, tensor) in inputs {
            let (shape, _) = self
                .inputs
                .get(name)
                .ok_or_else(|| Error::Model(format!("{name:?} is not a graph input")))?;
            if tensor.shape != *shape || tensor.data.len() != shape.numel() {
                return Err(Error::Model(format!(
                    "input {name:?} has shape {}, the plan was compiled for {shape}",
                    tensor.shape
                )));
            }
        }
        for &name in outputs {
            if !self.outputs.contains_key(name) {
                let known: Vec<&String> = self.outputs.keys().collect();
                return Err(Error::Model(format!(
                    "{name:?} is not a graph output (outputs: {known:?})"
                )));
            }
        }
        // Converted on the host: one pass over the input, and half the bytes to upload in f16, where a conversion
        // kernel would need an f32 staging buffer and a dispatch.
        let encoded: Vec<std::borrow::Cow<[u8]>> = inputs
            .iter()
            .map(|&(_, t)| match self.precision {
                Precision::F32 => std::borrow::Cow::Borrowed(bytemuck::cast_slice(&t.data)),
                p => std::borrow::Cow::Owned(p.encode(&t.data)),
            })
            .collect();
        let uploads: Vec<Upload> = inputs
            .iter()
            .zip(&encoded)
            .map(|(&(name, _), bytes)| {
                let at = self.inputs[name].1;
                Upload {
                    target: &self.buffers[at.buffer],
                    offset: at.offset,
                    bytes: bytes.as_ref(),
                }
            })
            .collect();
        let readbacks: Vec<Readback> = outputs
            .iter()
            .map(|&name| {
                let (info, at) = self.outputs[name];
                Readback {
                    source: &self.buffers[at.buffer],
                    offset: at.offset,
                    staging: &self.staging[name],
                    bytes: tensor_bytes(&info, self.precision),
                }
            })
            .collect();
        let data = self.submit(&uploads, &[], &[], &readbacks)?;
        let mut results = HashMap::new();
        for (&name, bytes) in outputs.iter().zip(data) {
            let (info, _) = self.outputs[name];
            let output = match info.dtype {
                DType::F32 => Output::F32(Tensor {
                    shape: info.shape,
                    data: self.precision.decode(&bytes, info.shape.numel()),
                }),
                DType::U32 => Output::U32 {
                    shape: info.shape,
                    data: bytemuck::pod_collect_to_vec(&bytes[..4 * info.shape.numel()]),
                },
            };
            results.insert(name.to_string(), output);
        }
        Ok(results)
    }

    /// The buffer region of a graph input or output, for kernels recorded around the plan's own (see
    /// [`Plan::submit`]).
    pub fn binding(&self, tensor: &str) -> Option<wgpu::BufferBinding<'_>> {
        let (info, at) = match (self.inputs.get(tensor), self.outputs.get(tensor)) {
            (Some(&(shape, at)), _) => (
                TensorInfo {
                    shape,
                    dtype: DType::F32,
                },
                at,
            ),
            (None, Some(&(info, at))) => (info, at),
            (None, None) => return None,
        };
        Some(wgpu::BufferBinding {
            buffer: &self.buffers[at.buffer],
            offset: at.offset,
            size: wgpu::BufferSize::new(tensor_bytes(&info, self.precision)),
        })
    }

    /// One submission: writes `uploads`, records `before`, the plan's kernels and `after` in one pass, copies each
    /// readback's source into its (MAP_READ) staging buffer, submits once and returns the read bytes in order.
    /// `before` may write the plan's inputs and `after` read its outputs (through [`Plan::binding`]).
    pub fn submit(
        &self,
        uploads: &[Upload<'_>],
        before: &[&BoundKernel],
        after: &[&BoundKernel],
        readbacks: &[Readback<'_>],
    ) -> Result<Vec<Vec<u8>>> {
        let _guard = self
            .run_lock
            .lock()
            .map_err(|_| Error::Device("a previous run panicked".into()))?;
        let gpu = &self.gpu;
        gpu.scoped(
            || "recording and submitting the plan".to_string(),
            || {
                for u in uploads {
                    gpu.queue.write_buffer(u.target, u.offset, u.bytes);
                }
                let mut encoder = gpu.device.create_command_encoder(&Default::default());
                {
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    for kernel in before
                        .iter()
                        .copied()
                        .chain(&self.kernels)
                        .chain(after.iter().copied())
                    {
                        kernel.encode(&mut pass);
                    }
                }
                for r in readbacks {
                    encoder.copy_buffer_to_buffer(r.source, r.offset, r.staging, 0, r.bytes);
                }
                gpu.queue.submit([encoder.finish()]);
            },
        )?;
        let (sender, receiver) = std::sync::mpsc::channel();
        for (i, r) in readbacks.iter().enumerate() {
            let sender = sender.clone();
            r.staging
                .slice(..r.bytes)
                .map_async(wgpu::MapMode::Read, move |result| {
                    let _ = sender.send((i, result));
                });
        }
        drop(sender);
        gpu.wait()?;
        for (i, result) in receiver.iter() {
            result.map_err(|e| Error::Device(format!("mapping readback {i}: {e}")))?;
        }
        readbacks
            .iter()
            .map(|r| {
                let bytes = r
                    .staging
                    .slice(..r.bytes)
                    .get_mapped_range()
                    .map_err(|e| Error::Device(format!("reading back: {e}")))?
                    .to_vec();
                r.staging.unmap();
                Ok(bytes)
            })
            .collect()
    }
}

/// A write before the kernels of [`Plan::submit`]: `bytes` into `target` at `offset`.
pub struct Upload<'a> {
    pub target: &'a wgpu::Buffer,
    pub offset: u64,
    pub bytes: &'a [u8],
}

/// A copy after the kernels of [`Plan::submit`]: `bytes` from `source` at `offset` into `staging`.
pub struct Readback<'a> {
    pub source: &'a wgpu::Buffer,
    pub offset: u64,
    /// A buffer with `MAP_READ | COPY_DST` usage.
    pub staging: &'a wgpu::Buffer,
    pub bytes: u64,
}
