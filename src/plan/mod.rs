//! Compile once, run many: a graph compiled for concrete input shapes into kernels with bound buffers, weights on
//! the GPU and a planned activation memory. A run is an upload, one submit and a readback of what was asked for.

mod fuse;
mod lifetimes;
mod lower;
pub mod memory;
mod profile;
mod results;
mod run;

pub use profile::KernelTime;
pub use results::{Output, WeightCache};
pub use run::{Readback, Upload};

use crate::error::{Error, Result};
use crate::gpu::{BoundKernel, Gpu, Precision};
use crate::graph::{DType, TensorInfo};
use crate::model::Model;
use crate::tensor::Shape;
use lower::Bind;
use memory::Placement;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Compilation choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanOptions {
    /// Fuse activations, residual adds and concatenation into convolution epilogues, and depthwise convs into the
    /// 1 x 1 convs that read them.
    pub fuse: bool,
    /// The number of threads the adapter runs at once that kernel choices assume (see
    /// [`crate::kernels::conv2d::choose`]); `None`: [`Gpu::parallelism`]'s estimate. Set it to see what a plan
    /// does on a larger (or smaller) device than the estimate says.
    pub parallelism: Option<u64>,
    /// Storage of activations and convolution weights on the GPU. Inputs and outputs stay f32 at the API: the plan
    /// converts them on the host on upload and readback.
    pub precision: Precision,
    /// With f16 storage, whether the tiled and split-K convs (every ungrouped conv: nearly all of a model's
    /// arithmetic) multiply in f16 (see [`crate::kernels::conv2d::Path::Tiled`]); `None`: where the adapter has
    /// f16 units ([`Gpu::prefers_f16_math`]). `Some(true)` needs f16 storage.
    pub f16_math: Option<bool>,
    /// The most activation memory the plan may allocate, checked before the first allocation; default
    /// [`max_memory`] (`ATROUS_MAX_MEMORY` in bytes, else 16 GiB).
    pub memory_limit: u64,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            fuse: true,
            parallelism: None,
            precision: Precision::F32,
            f16_math: None,
            memory_limit: max_memory(),
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
    f16_math: bool,
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

/// The most dispatches one plan records. Lavapipe crashes allocating its 100,000th bind group or so; real networks
/// need hundreds.
pub const MAX_DISPATCHES: usize = 50_000;

/// The most activation memory one plan allocates by default unless `ATROUS_MAX_MEMORY` (bytes) says otherwise
/// ([`PlanOptions::memory_limit`]): each buffer is
/// within the device's limits, but a graph may ask for many, and a software adapter would take them from host
/// memory until the process is killed. 16 GiB is beyond every network in the zoo at 4K input.
pub const DEFAULT_MAX_MEMORY: u64 = 16 << 30;

/// The activation memory limit in force: `ATROUS_MAX_MEMORY` (bytes) or [`DEFAULT_MAX_MEMORY`].
pub fn max_memory() -> u64 {
    std::env::var("ATROUS_MAX_MEMORY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_MEMORY)
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
        let graph = &*model.graph_for(input_shapes)?;
        let precision = options.precision;
        gpu.require(precision)?;
        let f16_math = match (precision, options.f16_math) {
            (Precision::F32, Some(true)) => {
                return Err(Error::params(
                    "f16_math",
                    "f16 math needs f16 storage (precision f16)",
                ))
            }
            (Precision::F32, _) => false,
            (Precision::F16, choice) => choice.unwrap_or_else(|| gpu.prefers_f16_math()),
        };
        let (order, infos) = graph.infer(input_shapes)?;
        model.check_weights()?;
        let schedule = fuse::schedule(
            graph,
            &order,
            &infos,
            options.fuse,
            gpu.limits().max_storage_buffers_per_shader_stage,
        );

        let (names, mut spans) = lifetimes::tensors(graph, &schedule.nodes, &infos, precision);
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
            depthwise: &schedule.depthwise,
            precision,
            f16_math,
            parallelism: options.parallelism.unwrap_or_else(|| gpu.parallelism()),
        };
        let lowered = schedule
            .nodes
            .iter()
            .map(|node| {
                lower::lower(&context, node).map_err(|e| match e {
                    // Parameter and weight errors name the node they come from; device errors keep their kind.
                    Error::InvalidParams { .. } | Error::Shape { .. } | Error::Model(_) => {
                        Error::Model(format!("node {:?} ({}): {e}", node.name, node.op.name()))
                    }
                    other => other,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let dispatches: usize = lowered.iter().map(|l| l.calls.len()).sum();
        if dispatches > MAX_DISPATCHES {
            return Err(Error::Model(format!(
                "the graph needs {dispatches} dispatches at this size, more than the {MAX_DISPATCHES} one plan \
                 records (each holds a bind group; drivers fail far below millions)"
            )));
        }
        let scratch_span = lifetimes::add_scratch(&mut spans, &lowered);
        let index: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let conflicts = lifetimes::conflicts(&schedule.nodes, &index, &lowered, &scratch_span);
        let align = gpu.limits().min_storage_buffer_offset_alignment as u64;
        let memory_plan = memory::plan(&spans, &conflicts, align);
        let memory = MemoryReport {
            planned_bytes: memory_plan.planned_bytes(),
            lower_bound_bytes: memory::lower_bound(&spans),
            buffers: memory_plan.buffer_bytes.len(),
        };

        let limit = options.memory_limit;
        if memory.planned_bytes > limit {
            return Err(Error::TooLarge {
                what: format!("the activation memory of the plan for {input_shapes:?}"),
                size: memory.planned_bytes,
                limit_name: "ATROUS_MAX_MEMORY",
                limit,
            });
        }
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
            f16_math,
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

    /// Whether the plan's tiled and split-K convs multiply in f16 ([`PlanOptions::f16_math`]).
    pub fn f16_math(&self) -> bool {
        self.f16_math
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
}

/// Ties a binding's lifetime to the [`Bind`] it resolves (closures cannot say so in their signature).
fn binder<'a, F: Fn(&'a Bind) -> wgpu::BufferBinding<'a>>(f: F) -> F {
    f
}
