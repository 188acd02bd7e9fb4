//! A kernel is one compute dispatch prepared at compile time: a cached pipeline, its uniform parameters and its grid.
//! Binding buffers to it gives a [`BoundKernel`], which records into a pass with no allocation.
//!
//! Binding convention of every shader: `@binding(0)` the uniform parameters, then the outputs (read-write storage),
//! then the inputs (read-only storage), numbered consecutively.

use super::{Created, Gpu, Precision};
use crate::error::{Error, Result};
use std::sync::Arc;

/// A WGSL program: shaders/common.wgsl followed by one op family's file, compiled per [`Precision`] behind that
/// precision's prelude (see [`Shader::source_for`]).
#[derive(Clone, Copy, Debug)]
pub struct Shader {
    pub name: &'static str,
    pub source: &'static str,
    /// The program computes in f16 (`shaders/*_f16.wgsl`), so it compiles in [`Precision::F16`] only.
    pub f16_only: bool,
}

impl Shader {
    /// The complete program for `precision`: the prelude that defines `elem`, then [`Shader::source`].
    pub fn source_for(&self, precision: Precision) -> String {
        format!("{}{}", precision.prelude(), self.source)
    }

    /// Whether the program compiles in `precision`.
    pub fn compiles_in(&self, precision: Precision) -> bool {
        precision == Precision::F16 || !self.f16_only
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PipelineKey {
    shader: &'static str,
    precision: Precision,
    entry: &'static str,
    constants: Vec<(&'static str, u64)>,
}

/// Threads every shader's workgroup has along x (`WG` in shaders/common.wgsl).
pub const WORKGROUP_SIZE: u32 = 64;

/// How many workgroups a kernel launches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dispatch {
    /// One thread per item, `WORKGROUP_SIZE` per group, folded into x and y to stay under the per-dimension limit;
    /// shaders recover the index with `linear_id`.
    Linear(u64),
    /// An explicit grid.
    Groups([u32; 3]),
}

/// A named binding and the bytes the kernel reads or writes through it.
#[derive(Clone, Debug)]
pub struct Slot {
    pub name: &'static str,
    pub bytes: u64,
    /// A `texture_2d<f32>` input instead of a storage buffer.
    pub texture: bool,
}

impl Slot {
    pub fn new(name: &'static str, bytes: u64) -> Self {
        Slot {
            name,
            bytes,
            texture: false,
        }
    }

    /// A texture input (bound with [`Resource::Texture`]).
    pub fn texture(name: &'static str) -> Self {
        Slot {
            name,
            bytes: 0,
            texture: true,
        }
    }

    /// A slot for `elements` 4-byte values: u32 indices, f32 biases.
    pub fn elements(name: &'static str, elements: usize) -> Self {
        Slot::new(name, 4 * elements as u64)
    }

    /// A slot for `elements` floats stored in `precision` (`array<elem>` in the shader), padded to 4 bytes.
    pub fn floats(name: &'static str, elements: usize, precision: Precision) -> Self {
        Slot::new(name, precision.storage_bytes(elements))
    }
}

/// A dispatch prepared once: pipeline, uniforms and grid. Bind buffers to it with [`Kernel::bind`].
#[derive(Debug)]
pub struct Kernel {
    label: String,
    pipeline: Arc<wgpu::ComputePipeline>,
    params: wgpu::Buffer,
    workgroups: [u32; 3],
    outputs: Vec<Slot>,
    inputs: Vec<Slot>,
    flops: u64,
}

/// What a kernel input binds: a buffer region, or a texture view (`texture_2d<f32>` in the shader).
#[derive(Clone, Debug)]
pub enum Resource<'a> {
    Buffer(wgpu::BufferBinding<'a>),
    Texture(&'a wgpu::TextureView),
}

/// A kernel with its buffers bound: ready to record.
#[derive(Debug)]
pub struct BoundKernel {
    label: String,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    flops: u64,
    bytes: u64,
}

/// What [`Kernel::new`] needs besides the GPU.
pub struct KernelSpec<'a> {
    pub label: String,
    pub shader: Shader,
    /// What `elem` is in the shader; the kernel's float slots must be sized for it.
    pub precision: Precision,
    pub entry: &'static str,
    pub constants: &'a [(&'static str, f64)],
    pub uniforms: &'a [u8],
    pub dispatch: Dispatch,
    pub outputs: Vec<Slot>,
    pub inputs: Vec<Slot>,
}

impl Kernel {
    pub fn new(gpu: &Gpu, spec: KernelSpec<'_>) -> Result<Self> {
        gpu.require(spec.precision)?;
        let workgroups = grid(gpu, &spec.label, spec.dispatch)?;
        for slot in spec.outputs.iter().chain(&spec.inputs) {
            gpu.check_storage_size(&format!("{} {}", spec.label, slot.name), slot.bytes)?;
        }
        let storage = spec
            .outputs
            .iter()
            .chain(&spec.inputs)
            .filter(|s| !s.texture)
            .count() as u32;
        let allowed = gpu.limits().max_storage_buffers_per_shader_stage;
        if storage > allowed {
            return Err(Error::Device(format!(
                "{}: binds {storage} storage buffers, {} allows {allowed} (max_storage_buffers_per_shader_stage; \
                 create the device with atrous::gpu::required_limits(&adapter))",
                spec.label,
                gpu.describe()
            )));
        }
        let pipeline = gpu.pipeline(spec.shader, spec.precision, spec.entry, spec.constants)?;
        // Uniform bindings must be a multiple of 16 bytes.
        let mut uniforms = spec.uniforms.to_vec();
        uniforms.resize(uniforms.len().div_ceil(16).max(1) * 16, 0);
        gpu.count(Created::Buffer);
        let params = gpu.scoped(
            || format!("{}: creating the parameter buffer", spec.label),
            || {
                use wgpu::util::DeviceExt;
                gpu.device
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some(&spec.label),
                        contents: &uniforms,
                        usage: wgpu::BufferUsages::UNIFORM,
                    })
            },
        )?;
        Ok(Kernel {
            label: spec.label,
            pipeline,
            params,
            workgroups,
            outputs: spec.outputs,
            inputs: spec.inputs,
            flops: 0,
        })
    }

    /// Records the floating-point operations one dispatch performs, for benchmark reports.
    pub fn with_flops(mut self, flops: u64) -> Self {
        self.flops = flops;
        self
    }

    pub fn flops(&self) -> u64 {
        self.flops
    }

    /// Bytes the dispatch must read and write at least: every slot once.
    pub fn bytes(&self) -> u64 {
        self.outputs
            .iter()
            .chain(&self.inputs)
            .map(|s| s.bytes)
            .sum()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn workgroups(&self) -> [u32; 3] {
        self.workgroups
    }

    pub fn outputs(&self) -> &[Slot] {
        &self.outputs
    }

    pub fn inputs(&self) -> &[Slot] {
        &self.inputs
    }

    /// Binds outputs and inputs, in the order of [`Kernel::outputs`] and [`Kernel::inputs`]. Each binding must hold
    /// at least its slot's bytes; an output must not share a buffer with any other binding (WebGPU forbids it).
    pub fn bind(
        &self,
        gpu: &Gpu,
        outputs: &[wgpu::BufferBinding<'_>],
        inputs: &[wgpu::BufferBinding<'_>],
    ) -> Result<BoundKernel> {
        let inputs: Vec<Resource> = inputs.iter().cloned().map(Resource::Buffer).collect();
        self.bind_resources(gpu, outputs, &inputs)
    }

    /// [`Kernel::bind`] with inputs that may be textures (a frame the application rendered).
    pub fn bind_resources(
        &self,
        gpu: &Gpu,
        outputs: &[wgpu::BufferBinding<'_>],
        inputs: &[Resource<'_>],
    ) -> Result<BoundKernel> {
        let fail = |message: String| {
            Err(Error::Gpu {
                context: self.label.clone(),
                message,
            })
        };
        if outputs.len() != self.outputs.len() || inputs.len() != self.inputs.len() {
            return fail(format!(
                "expects {} outputs and {} inputs, got {} and {}",
                self.outputs.len(),
                self.inputs.len(),
                outputs.len(),
                inputs.len()
            ));
        }
        let buffers = outputs.iter().chain(inputs.iter().filter_map(|r| match r {
            Resource::Buffer(b) => Some(b),
            Resource::Texture(_) => None,
        }));
        let slots = self.outputs.iter().chain(
            self.inputs
                .iter()
                .zip(inputs)
                .filter(|(_, r)| matches!(r, Resource::Buffer(_)))
                .map(|(s, _)| s),
        );
        for (binding, slot) in buffers.clone().zip(slots) {
            let size = binding
                .size
                .map_or(binding.buffer.size().saturating_sub(binding.offset), |s| {
                    s.get()
                });
            if size < slot.bytes {
                return fail(format!(
                    "{} binding holds {size} bytes, needs {}",
                    slot.name, slot.bytes
                ));
            }
        }
        for (i, out) in outputs.iter().enumerate() {
            let aliased = buffers
                .clone()
                .enumerate()
                .any(|(j, b)| j != i && b.buffer == out.buffer);
            if aliased {
                return fail(format!(
                    "output {} shares its buffer with another binding",
                    self.outputs[i].name
                ));
            }
        }
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: self.params.as_entire_binding(),
        }];
        let resources = outputs
            .iter()
            .map(|b| wgpu::BindingResource::Buffer(b.clone()))
            .chain(inputs.iter().map(|r| match r {
                Resource::Buffer(b) => wgpu::BindingResource::Buffer(b.clone()),
                Resource::Texture(view) => wgpu::BindingResource::TextureView(view),
            }));
        for (i, resource) in resources.enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: 1 + i as u32,
                resource,
            });
        }
        gpu.count(Created::BindGroup);
        let bind_group = gpu.scoped(
            || format!("{}: binding buffers", self.label),
            || {
                gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(&self.label),
                    layout: &self.pipeline.get_bind_group_layout(0),
                    entries: &entries,
                })
            },
        )?;
        Ok(BoundKernel {
            label: self.label.clone(),
            pipeline: self.pipeline.clone(),
            bind_group,
            workgroups: self.workgroups,
            flops: self.flops,
            bytes: self.bytes(),
        })
    }
}

impl BoundKernel {
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn flops(&self) -> u64 {
        self.flops
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Records the dispatch.
    pub fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
}

fn grid(gpu: &Gpu, label: &str, dispatch: Dispatch) -> Result<[u32; 3]> {
    let max = gpu.limits().max_compute_workgroups_per_dimension as u64;
    let too_large = |groups: u64| Error::TooLarge {
        what: format!("{label}: {groups} workgroups"),
        size: groups,
        limit_name: "max_compute_workgroups_per_dimension",
        limit: max,
    };
    match dispatch {
        Dispatch::Linear(threads) => {
            let groups = threads.div_ceil(WORKGROUP_SIZE as u64).max(1);
            let x = groups.min(max);
            let y = groups.div_ceil(x);
            if y > max {
                return Err(too_large(groups));
            }
            Ok([x as u32, y as u32, 1])
        }
        Dispatch::Groups(groups) => {
            if let Some(&g) = groups.iter().find(|&&g| g as u64 > max) {
                return Err(too_large(g as u64));
            }
            Ok(groups)
        }
    }
}

impl Gpu {
    /// The pipeline for `entry` of `shader` in `precision` with `constants`, compiled on first use and cached.
    pub(crate) fn pipeline(
        &self,
        shader: Shader,
        precision: Precision,
        entry: &'static str,
        constants: &[(&'static str, f64)],
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let key = PipelineKey {
            shader: shader.name,
            precision,
            entry,
            constants: constants.iter().map(|&(k, v)| (k, v.to_bits())).collect(),
        };
        if let Some(p) = self
            .pipelines
            .lock()
            .expect("pipeline cache poisoned")
            .get(&key)
        {
            return Ok(p.clone());
        }
        let module = self.module(shader, precision)?;
        self.count(Created::Pipeline);
        let pipeline = self.scoped(
            || format!("compiling {}::{entry} ({precision})", shader.name),
            || {
                self.device
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(entry),
                        layout: None,
                        module: &module,
                        entry_point: Some(entry),
                        compilation_options: wgpu::PipelineCompilationOptions {
                            constants,
                            // Our kernels initialise what they read from workgroup memory.
                            zero_initialize_workgroup_memory: false,
                        },
                        cache: None,
                    })
            },
        )?;
        let pipeline = Arc::new(pipeline);
        self.pipelines
            .lock()
            .expect("pipeline cache poisoned")
            .insert(key, pipeline.clone());
        Ok(pipeline)
    }

    fn module(&self, shader: Shader, precision: Precision) -> Result<wgpu::ShaderModule> {
        if !shader.compiles_in(precision) {
            return Err(Error::Gpu {
                context: format!("compiling shaders/{}.wgsl ({precision})", shader.name),
                message: "this program computes in f16 and has no f32 variant".into(),
            });
        }
        let key = (shader.name, precision);
        if let Some(m) = self
            .modules
            .lock()
            .expect("module cache poisoned")
            .get(&key)
        {
            return Ok(m.clone());
        }
        self.count(Created::ShaderModule);
        let module = self.scoped(
            || format!("compiling shaders/{}.wgsl ({precision})", shader.name),
            || {
                // Every shader is ours (shaders/), not a caller's: naga's loop bounding, a counter and a branch
                // added to every loop iteration against shaders that might never end, costs the inner loops of
                // the depthwise, binary and conv kernels 2-16% on lavapipe (BENCHMARKS.md). Bounds and division
                // checks stay.
                let checks = wgpu::ShaderRuntimeChecks {
                    force_loop_bounding: false,
                    ..wgpu::ShaderRuntimeChecks::checked()
                };
                // SAFETY: wgpu requires the shaders to have no infinite loops. Every loop in shaders/ counts a u32
                // up to a bound from its uniforms (channels, taps, rows, passes), which the host validates against
                // the device's buffer limits first, so no counter wraps past its bound.
                unsafe {
                    self.device.create_shader_module_trusted(
                        wgpu::ShaderModuleDescriptor {
                            label: Some(shader.name),
                            source: wgpu::ShaderSource::Wgsl(shader.source_for(precision).into()),
                        },
                        checks,
                    )
                }
            },
        )?;
        self.modules
            .lock()
            .expect("module cache poisoned")
            .insert(key, module.clone());
        Ok(module)
    }
}
