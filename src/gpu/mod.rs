//! The GPU context: adapter choice, device with the adapter's own limits, pipeline cache, buffers and readback.

mod kernel;
mod precision;
mod tensor;

pub use kernel::{
    BoundKernel, Dispatch, Kernel, KernelSpec, Resource, Shader, Slot, WORKGROUP_SIZE,
};
pub use precision::Precision;
pub use tensor::{GpuTensor, TensorData};

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Optional features atrous uses where the adapter has them: timestamps for `atrous bench`, SHADER_F16 for
/// [`Precision::F16`].
const WANTED_FEATURES: wgpu::Features = wgpu::Features::TIMESTAMP_QUERY
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
    .union(wgpu::Features::SHADER_F16)
    .union(wgpu::Features::SUBGROUP);

/// The features a device must have for atrous: none. f32 plans run on any adapter with compute shaders.
pub fn required_features() -> wgpu::Features {
    wgpu::Features::empty()
}

/// The features atrous uses where the device has them: SHADER_F16 (for [`Precision::F16`]), timestamp queries
/// (per-kernel times in `atrous bench`) and subgroups. Intersect with `adapter.features()` when creating a device.
pub fn optional_features() -> wgpu::Features {
    WANTED_FEATURES
}

/// The smallest limits atrous runs under: 5 storage buffers per stage (an unfused conv binds output, input,
/// weight, bias and residual; larger fused kernels are only planned when the device allows them), 64 threads per
/// workgroup, 1 KiB of workgroup memory. Other limits (buffer sizes, above all) bound the frame and model sizes a
/// plan accepts, and are checked per plan.
pub fn minimum_limits() -> wgpu::Limits {
    wgpu::Limits {
        max_storage_buffers_per_shader_stage: 5,
        max_compute_invocations_per_workgroup: 64,
        max_compute_workgroup_size_x: 64,
        max_compute_workgroup_storage_size: 1024,
        ..wgpu::Limits::downlevel_webgl2_defaults()
    }
}

/// The limits to request for a device atrous will run on: WebGPU's defaults, raised to what `adapter` offers for
/// the limits that bound frame and model sizes (buffer and binding sizes, storage buffers per stage, workgroups
/// per dimension, workgroup memory); the adapter's own limits where it is below the defaults (a GL adapter).
pub fn required_limits(adapter: &wgpu::Adapter) -> wgpu::Limits {
    let a = adapter.limits();
    let wanted = wgpu::Limits {
        max_buffer_size: a.max_buffer_size,
        max_storage_buffer_binding_size: a.max_storage_buffer_binding_size,
        max_storage_buffers_per_shader_stage: a.max_storage_buffers_per_shader_stage,
        max_compute_workgroups_per_dimension: a.max_compute_workgroups_per_dimension,
        max_compute_workgroup_storage_size: a.max_compute_workgroup_storage_size,
        ..wgpu::Limits::default()
    };
    match wanted.check_limits(&a) {
        true => wanted,
        false => a,
    }
}

/// Refuses a device below [`minimum_limits`], naming the limit.
fn check_limits(limits: &wgpu::Limits, device: &str) -> Result<()> {
    let min = minimum_limits();
    let checks = [
        (
            "max_storage_buffers_per_shader_stage",
            limits.max_storage_buffers_per_shader_stage as u64,
            min.max_storage_buffers_per_shader_stage as u64,
        ),
        (
            "max_compute_invocations_per_workgroup",
            limits.max_compute_invocations_per_workgroup as u64,
            min.max_compute_invocations_per_workgroup as u64,
        ),
        (
            "max_compute_workgroup_size_x",
            limits.max_compute_workgroup_size_x as u64,
            min.max_compute_workgroup_size_x as u64,
        ),
        (
            "max_compute_workgroup_storage_size",
            limits.max_compute_workgroup_storage_size as u64,
            min.max_compute_workgroup_storage_size as u64,
        ),
    ];
    match checks.iter().find(|(_, have, need)| have < need) {
        Some((name, have, need)) => Err(Error::Device(format!(
            "{device} was created with {name} = {have}; atrous needs at least {need} (create the device with \
             atrous::gpu::required_limits(&adapter))"
        ))),
        None => Ok(()),
    }
}

/// A device and queue plus everything atrous builds once per device: shader modules and pipelines.
/// Cheap to share between threads behind an `Arc`.
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    features: wgpu::Features,
    limits: wgpu::Limits,
    modules: Mutex<HashMap<(&'static str, Precision), wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<kernel::PipelineKey, Arc<wgpu::ComputePipeline>>>,
    /// Bound in place of an optional input that is absent (no residual, say).
    placeholder: wgpu::Buffer,
    created: [AtomicU64; Created::COUNT],
}

/// A kind of GPU object atrous creates, counted by [`Gpu::creations`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    Buffer,
    Texture,
    TextureView,
    BindGroup,
    Pipeline,
    ShaderModule,
}

impl Created {
    const COUNT: usize = 6;
}

/// How many GPU objects of each kind atrous has created on a [`Gpu`] so far (never decremented): a frame loop that
/// allocates nothing leaves these unchanged. wgpu's own counters (feature `counters`) count live objects instead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Creations {
    pub buffers: u64,
    pub textures: u64,
    pub texture_views: u64,
    pub bind_groups: u64,
    pub pipelines: u64,
    pub shader_modules: u64,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .finish()
    }
}

/// One adapter as `atrous info` lists it.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub info: wgpu::AdapterInfo,
    pub features: wgpu::Features,
    pub limits: wgpu::Limits,
}

impl AdapterSummary {
    /// "name (backend, device type)".
    pub fn describe(&self) -> String {
        describe(&self.info)
    }
}

fn describe(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type)
}

fn instance() -> wgpu::Instance {
    // Honours WGPU_BACKEND (e.g. `gl` for Mesa's llvmpipe through EGL) and the other WGPU_* variables.
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Higher is better: real GPUs first, then software, and native APIs before GL.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let device = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 4,
        wgpu::DeviceType::IntegratedGpu => 3,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 1,
        wgpu::DeviceType::Other => 0,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 2,
        wgpu::Backend::Gl => 1,
        _ => 0,
    };
    (device, backend)
}

fn compute_capable(adapter: &wgpu::Adapter) -> bool {
    adapter
        .get_downlevel_capabilities()
        .flags
        .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
}

impl Gpu {
    /// Every adapter wgpu can see, best first.
    pub fn adapters() -> Vec<AdapterSummary> {
        let mut adapters: Vec<_> =
            pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()))
                .into_iter()
                .filter(compute_capable)
                .map(|a| AdapterSummary {
                    info: a.get_info(),
                    features: a.features(),
                    limits: a.limits(),
                })
                .collect();
        adapters.sort_by_key(|a| std::cmp::Reverse(rank(&a.info)));
        adapters
    }

    /// Picks the best adapter, or the one `ATROUS_ADAPTER` names (a case-insensitive substring of its name or
    /// backend), and creates a device with the adapter's own limits and the optional features it has.
    pub fn new() -> Result<Self> {
        let wanted = std::env::var("ATROUS_ADAPTER")
            .ok()
            .filter(|s| !s.is_empty());
        Self::with_adapter(wanted.as_deref())
    }

    /// Like [`Gpu::new`] with an explicit adapter filter instead of `ATROUS_ADAPTER`.
    pub fn with_adapter(wanted: Option<&str>) -> Result<Self> {
        let instance = instance();
        let mut adapters: Vec<_> =
            pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
                .into_iter()
                .filter(compute_capable)
                .collect();
        adapters.sort_by_key(|a| std::cmp::Reverse(rank(&a.get_info())));
        if adapters.is_empty() {
            let detail = match std::env::var("WGPU_BACKEND") {
                Ok(b) => format!(" (WGPU_BACKEND={b})"),
                Err(_) => String::new(),
            };
            return Err(Error::NoAdapter { detail });
        }
        let adapter = match wanted {
            None => adapters.swap_remove(0),
            Some(wanted) => {
                let needle = wanted.to_lowercase();
                let position = adapters.iter().position(|a| {
                    let info = a.get_info();
                    format!("{} {:?}", info.name, info.backend)
                        .to_lowercase()
                        .contains(&needle)
                });
                match position {
                    Some(i) => adapters.swap_remove(i),
                    None => {
                        let available = adapters
                            .iter()
                            .map(|a| describe(&a.get_info()))
                            .collect::<Vec<_>>()
                            .join("; ");
                        return Err(Error::AdapterNotFound {
                            wanted: wanted.to_string(),
                            available,
                        });
                    }
                }
            }
        };
        let features = adapter.features() & WANTED_FEATURES;
        let limits = adapter.limits();
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("atrous"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&descriptor))
            .map_err(|e| Error::Device(format!("{}: {e}", describe(&adapter.get_info()))))?;
        Ok(Self::from_parts(device, queue, adapter.get_info()))
    }

    /// Wraps an application's own device and queue (a game's, say). Its features and limits are used as they are;
    /// atrous installs no error handler on it, since the application owns it. Create the device with
    /// [`required_features`] (plus whichever of [`optional_features`] the adapter has) and [`required_limits`];
    /// a device below [`minimum_limits`] is refused here, naming the limit, and one whose limits are too small for
    /// a given plan fails when that plan is compiled.
    pub fn from_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
    ) -> Result<Self> {
        check_limits(&device.limits(), &describe(&info))?;
        Ok(Self::build(device, queue, info))
    }

    fn from_parts(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo) -> Self {
        // Errors atrous did not catch in an error scope are logged, never turned into a panic.
        device.on_uncaptured_error(Arc::new(|e| log::error!("uncaptured wgpu error: {e}")));
        device.set_device_lost_callback(|reason, message| {
            log::error!("GPU device lost ({reason:?}): {message}")
        });
        Self::build(device, queue, info)
    }

    fn build(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo) -> Self {
        let placeholder = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("atrous placeholder"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Gpu {
            features: device.features(),
            limits: device.limits(),
            device,
            queue,
            info,
            modules: Mutex::default(),
            pipelines: Mutex::default(),
            placeholder,
            created: Default::default(),
        }
    }

    /// Counts one created object (see [`Gpu::creations`]).
    pub(crate) fn count(&self, what: Created) {
        self.created[what as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Objects atrous created on this device so far, by kind.
    pub fn creations(&self) -> Creations {
        let n = |what: Created| self.created[what as usize].load(Ordering::Relaxed);
        Creations {
            buffers: n(Created::Buffer),
            textures: n(Created::Texture),
            texture_views: n(Created::TextureView),
            bind_groups: n(Created::BindGroup),
            pipelines: n(Created::Pipeline),
            shader_modules: n(Created::ShaderModule),
        }
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    pub fn features(&self) -> wgpu::Features {
        self.features
    }

    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// "name (backend, device type)".
    pub fn describe(&self) -> String {
        describe(&self.info)
    }

    /// About how many shader threads the adapter runs at once, for kernels that size their grid by it (split-K
    /// conv2d). wgpu reports no core count, so this is estimated from the device type: a CPU adapter (lavapipe,
    /// llvmpipe) runs one 8-lane (256-bit) SIMD thread group per core; a GPU keeps tens of thousands of threads
    /// resident (a 30-SM desktop part about 45 000, a 132-SM H200 about 270 000), taken conservatively as 32 768 for
    /// a discrete GPU and 8 192 for an integrated or unknown one, so that only clearly underfilled dispatches
    /// change shape.
    pub fn parallelism(&self) -> u64 {
        match self.info.device_type {
            wgpu::DeviceType::Cpu => {
                8 * std::thread::available_parallelism().map_or(1, |n| n.get()) as u64
            }
            wgpu::DeviceType::DiscreteGpu => 32_768,
            _ => 8_192,
        }
    }

    /// Whether f16 plans should multiply in f16 by default ([`crate::plan::PlanOptions::f16_math`]): on a GPU with
    /// `SHADER_F16`, whose f16 units run faster than its f32 ones. A CPU adapter (lavapipe, llvmpipe) emulates f16
    /// arithmetic in f32 with conversions around every operation: 1.3-1.7x the latency of f32 math on f16 storage
    /// on lavapipe (BENCHMARKS.md), and less accurate.
    pub fn prefers_f16_math(&self) -> bool {
        self.supports(Precision::F16) && self.info.device_type != wgpu::DeviceType::Cpu
    }

    /// Whether kernels of `precision` can run here: f16 needs the device feature `SHADER_F16`.
    pub fn supports(&self, precision: Precision) -> bool {
        match precision {
            Precision::F32 => true,
            Precision::F16 => self.features.contains(wgpu::Features::SHADER_F16),
        }
    }

    /// [`Gpu::supports`] as an error naming the adapter, checked before anything of `precision` is compiled.
    pub fn require(&self, precision: Precision) -> Result<()> {
        match self.supports(precision) {
            true => Ok(()),
            false => Err(Error::Device(format!(
                "precision {precision} needs the SHADER_F16 feature, which {} does not offer (f32 runs everywhere)",
                self.describe()
            ))),
        }
    }

    /// A two-dimensional texture of one mip level and one sample: what frames, masks and render targets are.
    pub fn texture_2d(
        &self,
        label: &str,
        format: wgpu::TextureFormat,
        (width, height): (u32, u32),
        usage: wgpu::TextureUsages,
    ) -> wgpu::Texture {
        self.count(Created::Texture);
        self.device.create_texture(&wgpu::TextureDescriptor {
            label: Some(label),
            size: wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            usage,
            view_formats: &[],
        })
    }

    /// A binding for an absent optional input.
    pub fn placeholder(&self) -> wgpu::BufferBinding<'_> {
        self.placeholder.as_entire_buffer_binding()
    }

    /// Checks that a storage buffer of `bytes` fits the device before anything is allocated.
    pub fn check_storage_size(&self, what: &str, bytes: u64) -> Result<()> {
        let too_large = |limit_name, limit| Error::TooLarge {
            what: what.to_string(),
            size: bytes,
            limit_name,
            limit,
        };
        if bytes > self.limits.max_buffer_size {
            return Err(too_large("max_buffer_size", self.limits.max_buffer_size));
        }
        if bytes > self.limits.max_storage_buffer_binding_size {
            return Err(too_large(
                "max_storage_buffer_binding_size",
                self.limits.max_storage_buffer_binding_size,
            ));
        }
        // Shaders index with u32: every element index must fit.
        if bytes / 4 > u32::MAX as u64 {
            return Err(too_large("u32 element indexing", 4 * u32::MAX as u64));
        }
        Ok(())
    }

    /// Runs `f` inside a validation and out-of-memory error scope and turns a caught error into [`Error::Gpu`].
    /// In a browser (wasm32) a scope can only be awaited, never blocked on, so there `f` runs without one and
    /// errors reach the device's uncaptured-error handler.
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn scoped<T>(
        &self,
        _context: impl FnOnce() -> String,
        f: impl FnOnce() -> T,
    ) -> Result<T> {
        Ok(f())
    }

    /// Runs `f` inside a validation and out-of-memory error scope and turns a caught error into [`Error::Gpu`].
    /// Popping a scope completes at once on native backends.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn scoped<T>(
        &self,
        context: impl FnOnce() -> String,
        f: impl FnOnce() -> T,
    ) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let validation = pollster::block_on(validation.pop());
        let oom = pollster::block_on(oom.pop());
        match validation.or(oom) {
            None => Ok(value),
            Some(e) => Err(Error::Gpu {
                context: context(),
                message: e.to_string(),
            }),
        }
    }

    /// Records `kernels` into one encoder, submits once and waits for completion.
    pub fn run(&self, kernels: &[&BoundKernel]) -> Result<()> {
        self.scoped(
            || "submitting kernels".to_string(),
            || {
                let mut encoder = self.device.create_command_encoder(&Default::default());
                {
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    for kernel in kernels {
                        kernel.encode(&mut pass);
                    }
                }
                self.queue.submit([encoder.finish()]);
            },
        )?;
        self.wait()
    }

    /// Runs the callbacks of finished GPU work (readbacks resolve here) without blocking. An application's loop that
    /// polls its device already does this.
    pub fn poll(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Poll)
            .map_err(|e| Error::Device(e.to_string()))?;
        Ok(())
    }

    /// Blocks until the submission `index` has finished (and its callbacks, readbacks' included, have run), not
    /// waiting for later submissions: a caller can keep the next one queued behind it.
    pub fn wait_for(&self, index: wgpu::SubmissionIndex) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            })
            .map_err(|e| Error::Device(e.to_string()))?;
        Ok(())
    }

    /// Blocks until the queue is idle.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Device(e.to_string()))?;
        Ok(())
    }
}
