//! Compile once, run many: a graph compiled for concrete input shapes into kernels with bound buffers, weights on
//! the GPU and a planned activation memory. A run is an upload, one submit and a readback of what was asked for.

mod fuse;
mod lifetimes;
mod lower;
pub mod memory;
mod profile;
mod results;
mod run;
mod state;
mod tune;

pub use profile::KernelTime;
pub use results::{Output, WeightCache};
pub use state::RunState;
pub use tune::{ChoiceSource, Clock, ConvChoice, Tuner, WallClock};

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Kernel, Precision};
use crate::graph::{DType, Graph, TensorInfo};
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
    /// Time every kernel that can run each conv on this adapter at compile time and keep the fastest, with the
    /// choices cached on disk per adapter, driver and conv shape ([`Tuner`]); `false`: the shape heuristics choose
    /// ([`crate::kernels::conv2d::choose`]). Default: `ATROUS_TUNE` set to `1` or `on`. Ignored on wasm32.
    pub tune: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            fuse: true,
            parallelism: None,
            precision: Precision::F32,
            f16_math: None,
            memory_limit: max_memory(),
            tune: matches!(std::env::var("ATROUS_TUNE").as_deref(), Ok("1" | "on")),
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

/// A compiled graph for fixed input shapes: kernels, weights and the memory plan, immutable and shared. Each run
/// goes through a [`RunState`] (its own activation buffers and bind groups), so runs on several threads, or several
/// frames in flight, never wait for each other.
pub struct Plan {
    /// Tells apart the plans a [`RunState`] may be used with.
    id: u64,
    gpu: Arc<Gpu>,
    steps: Vec<Step>,
    /// Bytes of each activation buffer a run state allocates.
    buffer_bytes: Vec<u64>,
    inputs: HashMap<String, (TensorInfo, Placement)>,
    outputs: HashMap<String, (TensorInfo, Placement)>,
    memory: MemoryReport,
    precision: Precision,
    f16_math: bool,
    /// Run states [`Plan::run`] reuses; one per concurrent run.
    idle: Mutex<Vec<RunState>>,
    /// Whether a step reads the run's texture.
    reads_texture: bool,
    /// The kernel each conv node runs on, and how it was chosen.
    conv_choices: Vec<ConvChoice>,
}

static NEXT_PLAN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One dispatch of a plan: its kernel and what each binding resolves to in a run state.
struct Step {
    kernel: Kernel,
    outputs: Vec<Resolved>,
    inputs: Vec<Resolved>,
}

/// A binding of a [`Step`], independent of any run state's buffers.
#[derive(Clone, Debug)]
enum Resolved {
    /// `bytes` at `offset` in the state's activation buffer `buffer`.
    Region {
        buffer: usize,
        offset: u64,
        bytes: u64,
    },
    Weight(Arc<wgpu::Buffer>),
    Placeholder,
    /// The texture of the run ([`RunState::record`]).
    Texture,
    /// The state's origin buffer ([`RunState::set_origin`]).
    Origin,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("kernels", &self.steps.len())
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
        let graph = model.graph_for(input_shapes)?;
        Self::compile_graph(gpu, model, &graph, input_shapes, options, weights)
    }

    /// [`Plan::compile`] of `graph`, a graph over `model`'s weights (the model's own graph with nodes around it,
    /// say: [`crate::segment`] adds preprocessing and postprocessing).
    pub fn compile_graph(
        gpu: Arc<Gpu>,
        model: &Model,
        graph: &Graph,
        input_shapes: &HashMap<String, Shape>,
        options: PlanOptions,
        weights: &WeightCache,
    ) -> Result<Plan> {
        // Browsers have neither a wall clock that std can read (`Instant` panics on wasm32) nor a file system:
        // there the heuristics choose.
        if !options.tune || cfg!(target_arch = "wasm32") {
            return Self::compile_tuned(gpu, model, graph, input_shapes, options, weights, None);
        }
        let tuner = Tuner::from_env();
        let plan = Self::compile_tuned(
            gpu,
            model,
            graph,
            input_shapes,
            options,
            weights,
            Some(&tuner),
        )?;
        // A cache that cannot be written costs the next run a retune, not this one its plan.
        if let Err(e) = tuner.save() {
            log::warn!("{e}");
        }
        Ok(plan)
    }

    /// [`Plan::compile_graph`] with conv kernels chosen by `tuner` (whatever [`PlanOptions::tune`] says), or by
    /// the shape heuristics without one. The caller saves the tuner's cache ([`Tuner::save`]).
    pub fn compile_tuned(
        gpu: Arc<Gpu>,
        model: &Model,
        graph: &Graph,
        input_shapes: &HashMap<String, Shape>,
        options: PlanOptions,
        weights: &WeightCache,
        tuner: Option<&Tuner>,
    ) -> Result<Plan> {
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
            tuner,
            conv_choices: Default::default(),
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
        let conv_choices = context.conv_choices.into_inner();
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
        let region = |name: &str, at: Placement| Resolved::Region {
            buffer: at.buffer,
            offset: at.offset,
            bytes: tensor_bytes(&infos[name], precision),
        };
        let mut steps = Vec::new();
        for (k, node) in lowered.into_iter().enumerate() {
            let resolve = |b: Bind| match b {
                Bind::Tensor(n) => region(&n, memory_plan.placement[index[n.as_str()]]),
                Bind::Weight(w) => Resolved::Weight(w),
                Bind::Placeholder => Resolved::Placeholder,
                Bind::Scratch(i) => {
                    let span = scratch_span[&(k, i)];
                    let at = memory_plan.placement[span];
                    Resolved::Region {
                        buffer: at.buffer,
                        offset: at.offset,
                        bytes: spans[span].bytes,
                    }
                }
                Bind::Texture => Resolved::Texture,
                Bind::Origin => Resolved::Origin,
            };
            for call in node.calls {
                steps.push(Step {
                    outputs: call.outputs.into_iter().map(resolve).collect(),
                    inputs: call.inputs.into_iter().map(resolve).collect(),
                    kernel: call.kernel,
                });
            }
        }
        let place = |name: &str| memory_plan.placement[index[name]];
        let inputs = graph
            .inputs
            .iter()
            .map(|i| (i.name.clone(), (infos[&i.name], place(i.name.as_str()))))
            .collect();
        let outputs = graph
            .outputs
            .iter()
            .map(|name| (name.clone(), (infos[name], place(name.as_str()))))
            .collect();
        let reads_texture = steps.iter().any(Step::reads_texture);
        let plan = Plan {
            reads_texture,
            id: NEXT_PLAN.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            gpu,
            steps,
            buffer_bytes: memory_plan.buffer_bytes.clone(),
            inputs,
            outputs,
            memory,
            precision,
            f16_math,
            idle: Mutex::default(),
            conv_choices,
        };
        // The first run state is made now: it allocates the activation memory and binds every kernel, so a plan
        // that compiles also runs.
        let state = plan.state()?;
        plan.idle.lock().expect("idle states poisoned").push(state);
        Ok(plan)
    }

    /// The kernel each conv node (fused depthwise + 1 x 1 convs aside) runs on, in plan order, and how it was
    /// chosen: by the heuristics, from the tuning cache, or measured now ([`PlanOptions::tune`]).
    pub fn conv_choices(&self) -> &[ConvChoice] {
        &self.conv_choices
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
        self.steps.len()
    }

    /// The kernels of a run, in recording order.
    pub fn kernels(&self) -> impl ExactSizeIterator<Item = &Kernel> {
        self.steps.iter().map(|s| &s.kernel)
    }

    /// The shape each graph input was compiled for.
    pub fn input_shape(&self, name: &str) -> Option<Shape> {
        self.inputs.get(name).map(|(i, _)| i.shape)
    }

    /// The shape and type of a graph output.
    pub fn output_info(&self, name: &str) -> Option<TensorInfo> {
        self.outputs.get(name).map(|(i, _)| *i)
    }
}
