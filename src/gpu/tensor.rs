//! Tensors on the GPU: a storage buffer plus an NCHW shape, and the upload and readback paths.

use super::{Gpu, Precision};
use crate::error::{Error, Result};
use crate::tensor::{Shape, Tensor};

/// The bit pattern written into fresh buffers when poisoning: NaN as f32, `u32::MAX` as an index.
pub const POISON: u32 = u32::MAX;

/// A tensor in a GPU storage buffer of its own. Elements are 4 bytes: f32, or u32 for indices and class maps.
#[derive(Debug)]
pub struct GpuTensor {
    pub buffer: wgpu::Buffer,
    pub shape: Shape,
}

/// Host data for [`Gpu::upload`]: f32 values or u32 indices.
#[derive(Clone, Copy, Debug)]
pub enum TensorData<'a> {
    F32(&'a [f32]),
    U32(&'a [u32]),
}

impl GpuTensor {
    pub fn binding(&self) -> wgpu::BufferBinding<'_> {
        self.buffer.as_entire_buffer_binding()
    }
}

impl Gpu {
    /// A storage buffer of `bytes` (at least 4), readable back and writable from the host.
    pub fn storage_buffer(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
        self.check_storage_size(label, bytes)?;
        let size = bytes.max(4).next_multiple_of(4);
        self.count(super::Created::Buffer);
        self.scoped(
            || format!("allocating {label} ({size} bytes)"),
            || {
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            },
        )
    }

    /// An uninitialised tensor; with `poison`, every element is set to NaN (`u32::MAX`) so an unwritten one shows.
    pub fn tensor(&self, label: &str, shape: Shape, poison: bool) -> Result<GpuTensor> {
        let buffer = self.storage_buffer(label, shape.bytes())?;
        if poison {
            let words = vec![POISON; buffer.size() as usize / 4];
            self.queue
                .write_buffer(&buffer, 0, bytemuck::cast_slice(&words));
        }
        Ok(GpuTensor { buffer, shape })
    }

    /// Uploads f32 or u32 data of `shape`.
    pub fn upload(&self, label: &str, shape: Shape, data: TensorData<'_>) -> Result<GpuTensor> {
        let bytes: &[u8] = match data {
            TensorData::F32(d) => bytemuck::cast_slice(d),
            TensorData::U32(d) => bytemuck::cast_slice(d),
        };
        if bytes.len() as u64 != shape.bytes() {
            return Err(Error::shape(
                "upload",
                format!(
                    "{label}: shape {shape} needs {} bytes, got {}",
                    shape.bytes(),
                    bytes.len()
                ),
            ));
        }
        let tensor = self.tensor(label, shape, false)?;
        self.queue.write_buffer(&tensor.buffer, 0, bytes);
        Ok(tensor)
    }

    /// Uploads a host tensor.
    pub fn upload_tensor(&self, label: &str, tensor: &Tensor) -> Result<GpuTensor> {
        self.upload(label, tensor.shape, TensorData::F32(&tensor.data))
    }

    /// A read-only storage buffer holding `values` (weights, lookup tables).
    pub fn upload_f32(&self, label: &str, values: &[f32]) -> Result<wgpu::Buffer> {
        let buffer = self.storage_buffer(label, 4 * values.len() as u64)?;
        self.queue
            .write_buffer(&buffer, 0, bytemuck::cast_slice(values));
        Ok(buffer)
    }

    /// Copies `bytes` from `offset` of `buffer` back to the host.
    pub fn read_bytes(&self, buffer: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<Vec<u8>> {
        let staging = self.staging_buffer("atrous readback", bytes)?;
        self.scoped(
            || "copying to the readback buffer".to_string(),
            || {
                let mut encoder = self.device.create_command_encoder(&Default::default());
                encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, bytes);
                self.queue.submit([encoder.finish()]);
            },
        )?;
        self.read_mapped(&staging, bytes)
    }

    /// A MAP_READ | COPY_DST buffer of at least `bytes`, for readbacks.
    pub fn staging_buffer(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
        self.count(super::Created::Buffer);
        self.scoped(
            || format!("allocating the readback buffer of {label:?} ({bytes} bytes)"),
            || {
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: bytes.max(4).next_multiple_of(4),
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            },
        )
    }

    /// Maps the first `bytes` of a MAP_READ buffer whose copies have been submitted, blocks until the GPU is done,
    /// and returns them.
    pub fn read_mapped(&self, staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let (sender, receiver) = std::sync::mpsc::channel();
        staging
            .slice(..bytes)
            .map_async(wgpu::MapMode::Read, move |r| {
                let _ = sender.send(r);
            });
        self.wait()?;
        receiver
            .recv()
            .map_err(|_| Error::Device("readback callback never ran".into()))?
            .map_err(|e| Error::Device(format!("mapping the readback buffer: {e}")))?;
        let data = staging
            .slice(..bytes)
            .get_mapped_range()
            .map_err(|e| Error::Device(format!("reading the readback buffer: {e}")))?
            .to_vec();
        staging.unmap();
        Ok(data)
    }

    /// Reads an f32 tensor back.
    pub fn read(&self, tensor: &GpuTensor) -> Result<Tensor> {
        let bytes = self.read_bytes(&tensor.buffer, 0, tensor.shape.bytes())?;
        Ok(Tensor {
            shape: tensor.shape,
            data: bytemuck::pod_collect_to_vec(&bytes),
        })
    }

    /// A tensor of `shape` floats stored in `precision`; with `poison`, every element is NaN (the all-ones bit
    /// pattern is NaN in f16 too).
    pub fn tensor_in(
        &self,
        label: &str,
        shape: Shape,
        precision: Precision,
        poison: bool,
    ) -> Result<GpuTensor> {
        let buffer = self.storage_buffer(label, precision.storage_bytes(shape.numel()))?;
        if poison {
            let words = vec![POISON; buffer.size() as usize / 4];
            self.queue
                .write_buffer(&buffer, 0, bytemuck::cast_slice(&words));
        }
        Ok(GpuTensor { buffer, shape })
    }

    /// Uploads a host tensor converted to `precision` (f16 rounds to nearest).
    pub fn upload_in(
        &self,
        label: &str,
        tensor: &Tensor,
        precision: Precision,
    ) -> Result<GpuTensor> {
        let gpu_tensor = self.tensor_in(label, tensor.shape, precision, false)?;
        self.queue
            .write_buffer(&gpu_tensor.buffer, 0, &precision.encode(&tensor.data));
        Ok(gpu_tensor)
    }

    /// A read-only storage buffer holding `values` in `precision` (convolution weights).
    pub fn upload_floats(
        &self,
        label: &str,
        values: &[f32],
        precision: Precision,
    ) -> Result<wgpu::Buffer> {
        let bytes = precision.encode(values);
        let buffer = self.storage_buffer(label, bytes.len() as u64)?;
        self.queue.write_buffer(&buffer, 0, &bytes);
        Ok(buffer)
    }

    /// Reads a float tensor stored in `precision` back as f32.
    pub fn read_in(&self, tensor: &GpuTensor, precision: Precision) -> Result<Tensor> {
        let elements = tensor.shape.numel();
        let bytes = self.read_bytes(&tensor.buffer, 0, precision.storage_bytes(elements))?;
        Ok(Tensor {
            shape: tensor.shape,
            data: precision.decode(&bytes, elements),
        })
    }

    /// Reads a u32 tensor (indices, class map) back.
    pub fn read_u32(&self, tensor: &GpuTensor) -> Result<Vec<u32>> {
        let bytes = self.read_bytes(&tensor.buffer, 0, tensor.shape.bytes())?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}
