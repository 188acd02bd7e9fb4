//! Compile once, run many: a graph compiled for concrete input shapes into kernels with bound buffers, weights on
//! the GPU and a planned activation memory. A run is an upload, one submit and a readback of what was asked for.

mod fuse;
mod lower;
pub mod memory;
mod profile;
mod results;

pub use profile::KernelTime;
pub use results::{Output, WeightCache};

use crate::error::{Error, Result};
use crate::gpu::{BoundKernel, Gpu, Precision};
use crate::graph::{DType, TensorInfo};
use crate::model::Model;
use crate::tensor::{Shape, Tensor};
use lower::Bind;
use memory::{Lifetime, Placement};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Compilation choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanOptions {
    /// Fuse activations, residual adds and concatenation into convolution epilogues.
    pub fuse: bool,
    /// The number of threads the adapter runs at once that kernel choices assume (see
    /// [`crate::kernels::conv2d::choose`]); `None`: [`Gpu::parallelism`]'s estimate. Set it to see what a plan
    /// does on a larger (or smaller) device than the estimate says.
    pub parallelism: Option<u64>,
    /// Storage of activations and convolution weights on the GPU. Inputs and outputs stay f32 at the API: the plan
    /// converts them on the host on upload and readback.
    pub precision: Precision,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            fuse: true,
            parallelism: None,
            precision: Precision::F32,
        }
    }
}

/// Storage bytes of a tensor: u32 tensors are 4-byte, float ones in the plan's precision; at least 4, since empty
/// bindings are invalid.
fn tensor_bytes(info: &TensorInfo, precision: Precision) -> u64 {
    let bytes = match info.dtype {
        DType::U32 => info.shape.bytes(),
        DType::F32 => precision.storage_bytes(info.shape.numel()),
    };
    bytes.max(4)
}

/// Activation memory of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryReport {
    /// Bytes of all activation buffers.
    pub planned_bytes: u64,
    /// The largest total of simultaneously live tensors.
    pub lower_bound_bytes: u64,
    pub buffers: usize,
}

/// A compiled graph for fixed input shapes. Runs are serialised per plan (they share its buffers); compile one
/// plan per thread for parallel runs, or use [`crate::engine::Engine`].
pub struct Plan {
    gpu: Arc<Gpu>,
    kernels: Vec<BoundKernel>,
    buffers: Vec<wgpu::Buffer>,
    inputs: HashMap<String, (Shape, Placement)>,
    outputs: HashMap<String, (TensorInfo, Placement)>,
    staging: HashMap<String, wgpu::Buffer>,
    memory: MemoryReport,
    precision: Precision,
    run_lock: Mutex<()>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("kernels", &self.kernels.len())
            .field("memory", &self.memory)
            .finish()
    }
}

impl Plan {
    /// Compiles `model` for `input_shapes` (graph input name -> NCHW shape). Everything is validated before the
    /// first GPU allocation: structure, shapes, parameters, weights, and every buffer against the device limits.
    pub fn compile(
        gpu: Arc<Gpu>,
        model: &Model,
        input_shapes: &HashMap<String, Shape>,
        options: PlanOptions,
        weights: &WeightCache,
    ) -> Result<Plan> {
        let graph = &model.graph;
        let precision = options.precision;
        gpu.require(precision)?;
        let (order, infos) = graph.infer(input_shapes)?;
        model.check_weights()?;
        let schedule = fuse::schedule(graph, &order, &infos, options.fuse);

        // Tensor lifetimes: graph inputs are written at step 0, node k at step k + 1, outputs read at the end.
        let end = schedule.nodes.len() + 1;
        let mut names: Vec<String> = graph.inputs.iter().map(|i| i.name.clone()).collect();
        let mut lifetimes: HashMap<String, (usize, usize)> =
            names.iter().map(|n| (n.clone(), (0, 0))).collect();
        for (k, node) in schedule.nodes.iter().enumerate() {
            for input in node.data_inputs() {
                if let Some(l) = lifetimes.get_mut(input) {
                    l.1 = l.1.max(k + 1);
                }
            }
            for out in &node.outputs {
                if !lifetimes.contains_key(out) {
                    names.push(out.clone());
                    lifetimes.insert(out.clone(), (k + 1, k + 1));
                }
            }
        }
        for out in &graph.outputs {
            if let Some(l) = lifetimes.get_mut(out) {
                l.1 = end;
            }
        }
        let mut spans: Vec<Lifetime> = names
            .iter()
            .map(|n| {
                let (first, last) = lifetimes[n];
                Lifetime {
                    bytes: tensor_bytes(&infos[n], precision),
                    first,
                    last,
                }
            })
            .collect();
        for (i, name) in names.iter().enumerate() {
            gpu.check_storage_size(
                &format!("tensor {name:?} ({})", infos[name].shape),
                spans[i].bytes,
            )?;
        }

        let context = lower::Context {
            gpu: &gpu,
            model,
            weights,
            infos: &infos,
            concat_offsets: &schedule.concat_offsets,
            precision,
            parallelism: options.parallelism.unwrap_or_else(|| gpu.parallelism()),
        };
        let lowered = schedule
            .nodes
            .iter()
            .map(|node| lower::lower(&context, node))
            .collect::<Result<Vec<_>>>()?;
        // A node's scratch buffers (sized and checked by their kernels) live for its step alone, after the tensors.
        let mut scratch_span = HashMap::new();
        for (k, node) in lowered.iter().enumerate() {
            for (i, &bytes) in node.scratch.iter().enumerate() {
                scratch_span.insert((k, i), spans.len());
                spans.push(Lifetime {
                    bytes: bytes.max(4),
                    first: k + 1,
                    last: k + 1,
                });
            }
        }
        // A dispatch's outputs must not share a buffer with its inputs, nor (being written) with each other; a
        // node's scratch is written and read by its own dispatches, beside its inputs and outputs.
        let index: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let mut conflicts = Vec::new();
        for (k, node) in schedule.nodes.iter().enumerate() {
            for (o, out) in node.outputs.iter().enumerate() {
                let written = node.outputs[o + 1..].iter();
                for other in node.data_inputs().iter().chain(written) {
                    if other != out {
                        conflicts.push((index[out.as_str()], index[other.as_str()]));
                    }
                }
            }
            for i in 0..lowered[k].scratch.len() {
                let scratch = scratch_span[&(k, i)];
                for t in node.data_inputs().iter().chain(&node.outputs) {
                    conflicts.push((scratch, index[t.as_str()]));
                }
            }
        }
        let align = gpu.limits().min_storage_buffer_offset_alignment as u64;
        let memory_plan = memory::plan(&spans, &conflicts, align);
        let memory = MemoryReport {
            planned_bytes: memory_plan.planned_bytes(),
            lower_bound_bytes: memory::lower_bound(&spans),
            buffers: memory_plan.buffer_bytes.len(),
        };

        let buffers = memory_plan
            .buffer_bytes
            .iter()
            .enumerate()
            .map(|(i, &bytes)| gpu.storage_buffer(&format!("activations {i}"), bytes))
            .collect::<Result<Vec<_>>>()?;
        let place = |name: &str| memory_plan.placement[index[name]];
        let binding = |name: &str| {
            let bytes = tensor_bytes(&infos[name], precision);
            wgpu::BufferBinding {
                buffer: &buffers[place(name).buffer],
                offset: place(name).offset,
                size: wgpu::BufferSize::new(bytes),
            }
        };
        let mut kernels = Vec::new();
        for (k, node) in lowered.iter().enumerate() {
            let resolve = binder(|b: &Bind| match b {
                Bind::Tensor(n) => binding(n),
                Bind::Weight(w) => w.as_entire_buffer_binding(),
                Bind::Placeholder => gpu.placeholder(),
                Bind::Scratch(i) => {
                    let span = scratch_span[&(k, *i)];
                    let at = memory_plan.placement[span];
                    wgpu::BufferBinding {
                        buffer: &buffers[at.buffer],
                        offset: at.offset,
                        size: wgpu::BufferSize::new(spans[span].bytes),
                    }
                }
            });
            for call in &node.calls {
                let outputs: Vec<_> = call.outputs.iter().map(resolve).collect();
                let inputs: Vec<_> = call.inputs.iter().map(resolve).collect();
                kernels.push(call.kernel.bind(&gpu, &outputs, &inputs)?);
            }
        }

        let inputs = graph
            .inputs
            .iter()
            .map(|i| {
                (
                    i.name.clone(),
                    (infos[&i.name].shape, place(i.name.as_str())),
                )
            })
            .collect();
        let mut outputs = HashMap::new();
        let mut staging = HashMap::new();
        for name in &graph.outputs {
            let info = infos[name];
            outputs.insert(name.clone(), (info, place(name.as_str())));
            let buffer = gpu.scoped(
                || format!("allocating the readback buffer of {name:?}"),
                || {
                    gpu.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some(name),
                        size: tensor_bytes(&info, precision),
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    })
                },
            )?;
            staging.insert(name.clone(), buffer);
        }
        Ok(Plan {
            gpu,
            kernels,
            buffers,
            inputs,
            outputs,
            staging,
            memory,
            precision,
            run_lock: Mutex::new(()),
        })
    }

    pub fn memory(&self) -> MemoryReport {
        self.memory
    }

    /// What float tensors are stored in on the GPU; kernels recorded around the plan's own (see [`Plan::submit`])
    /// must be compiled for it.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Number of dispatches per run.
    pub fn dispatches(&self) -> usize {
        self.kernels.len()
    }

    pub fn kernels(&self) -> &[BoundKernel] {
        &self.kernels
    }

    /// The shape each graph input was compiled for.
    pub fn input_shape(&self, name: &str) -> Option<Shape> {
        self.inputs.get(name).map(|(s, _)| *s)
    }

    /// The shape and type of a graph output.
    pub fn output_info(&self, name: &str) -> Option<TensorInfo> {
        self.outputs.get(name).map(|(i, _)| *i)
    }

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

/// Ties a binding's lifetime to the [`Bind`] it resolves (closures cannot say so in their signature).
fn binder<'a, F: Fn(&'a Bind) -> wgpu::BufferBinding<'a>>(f: F) -> F {
    f
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
