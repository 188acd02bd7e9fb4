//! What one run in flight owns: activation buffers, bind groups, the origin of a texture frame and readback staging
//! buffers. A plan is immutable and shared; each thread, stream or frame in flight runs through its own state, made
//! once and reused run after run, so a run allocates nothing.

use super::{Plan, Resolved, Step};
use crate::error::{Error, Result};
use crate::gpu::{BoundKernel, Resource};
use std::collections::HashMap;

/// Bind groups of texture-reading kernels kept per state, one set per texture view, most recently used first: an
/// application alternating between a few render targets binds each once.
const TEXTURE_BINDINGS: usize = 4;

/// The run state of one [`Plan`]: made by [`Plan::state`], used only with that plan.
pub struct RunState {
    plan: u64,
    buffers: Vec<wgpu::Buffer>,
    /// The buffer of the frame region's origin and the value last written to it (texture sources only).
    origin: Option<(wgpu::Buffer, [u32; 2])>,
    /// Each step's bind group; `None` for a step that reads the run's texture.
    bound: Vec<Option<BoundKernel>>,
    /// Bind groups of the texture-reading steps (step index, kernel) per texture view.
    textured: Vec<(wgpu::TextureView, Vec<(usize, BoundKernel)>)>,
    /// MAP_READ buffers for readbacks, by graph output, made on first use.
    pub(super) staging: HashMap<String, wgpu::Buffer>,
}

impl std::fmt::Debug for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunState")
            .field("plan", &self.plan)
            .field("buffers", &self.buffers.len())
            .finish()
    }
}

impl Step {
    pub(super) fn reads_texture(&self) -> bool {
        self.inputs.iter().any(|r| matches!(r, Resolved::Texture))
    }
}

impl Plan {
    /// A new run state: allocates the plan's activation memory and binds every kernel that does not read a texture.
    pub fn state(&self) -> Result<RunState> {
        let gpu = &self.gpu;
        let buffers = self
            .buffer_bytes
            .iter()
            .enumerate()
            .map(|(i, &bytes)| gpu.storage_buffer(&format!("activations {i}"), bytes))
            .collect::<Result<Vec<_>>>()?;
        let reads_origin = self
            .steps
            .iter()
            .any(|s| s.inputs.iter().any(|r| matches!(r, Resolved::Origin)));
        let origin = match reads_origin {
            true => Some((gpu.storage_buffer("frame origin", 8)?, [u32::MAX; 2])),
            false => None,
        };
        let mut state = RunState {
            plan: self.id,
            buffers,
            origin,
            bound: Vec::new(),
            textured: Vec::new(),
            staging: HashMap::new(),
        };
        state.bound = self
            .steps
            .iter()
            .map(|step| match step.reads_texture() {
                true => Ok(None),
                false => self.bind_step(&state, step, None).map(Some),
            })
            .collect::<Result<_>>()?;
        Ok(state)
    }

    /// A run state for a caller of its own: the one [`Plan::run`] has idle, else a new one.
    pub fn take_state(&self) -> Result<RunState> {
        let idle = self.idle.lock().expect("idle states poisoned").pop();
        match idle {
            Some(state) => Ok(state),
            None => self.state(),
        }
    }

    /// Whether a run reads a texture ([`RunState::record`] needs one).
    pub fn reads_texture(&self) -> bool {
        self.reads_texture
    }

    fn bind_step(
        &self,
        state: &RunState,
        step: &Step,
        texture: Option<&wgpu::TextureView>,
    ) -> Result<BoundKernel> {
        let buffer = |r| self.buffer_binding(state, step, r);
        let outputs = step
            .outputs
            .iter()
            .map(buffer)
            .collect::<Result<Vec<_>>>()?;
        let inputs = step
            .inputs
            .iter()
            .map(|r| match (r, texture) {
                (Resolved::Texture, Some(view)) => Ok(Resource::Texture(view)),
                (Resolved::Texture, None) => Err(Error::Model(format!(
                    "{}: reads a texture, and the run gives none",
                    step.kernel.label()
                ))),
                (other, _) => buffer(other).map(Resource::Buffer),
            })
            .collect::<Result<Vec<_>>>()?;
        step.kernel.bind_resources(&self.gpu, &outputs, &inputs)
    }

    fn buffer_binding<'a>(
        &'a self,
        state: &'a RunState,
        step: &Step,
        r: &'a Resolved,
    ) -> Result<wgpu::BufferBinding<'a>> {
        Ok(match r {
            Resolved::Region {
                buffer,
                offset,
                bytes,
            } => wgpu::BufferBinding {
                buffer: &state.buffers[*buffer],
                offset: *offset,
                size: wgpu::BufferSize::new(*bytes),
            },
            Resolved::Weight(w) => w.as_entire_buffer_binding(),
            Resolved::Placeholder => self.gpu.placeholder(),
            Resolved::Origin => match &state.origin {
                Some((b, _)) => b.as_entire_buffer_binding(),
                None => return Err(Error::Model("the plan has no frame origin".into())),
            },
            Resolved::Texture => {
                return Err(Error::Model(format!(
                    "{}: a texture bound as an output",
                    step.kernel.label()
                )))
            }
        })
    }

    fn check_state(&self, state: &RunState) -> Result<()> {
        match state.plan == self.id {
            true => Ok(()),
            false => Err(Error::Model(
                "this run state belongs to another plan".into(),
            )),
        }
    }

    /// Where graph input or output `name` lives in `state`: (buffer, offset, bytes).
    pub fn region<'s>(
        &self,
        state: &'s RunState,
        name: &str,
    ) -> Option<(&'s wgpu::Buffer, u64, u64)> {
        let (info, at) = self.inputs.get(name).or_else(|| self.outputs.get(name))?;
        let bytes = super::tensor_bytes(info, self.precision);
        Some((&state.buffers[at.buffer], at.offset, bytes))
    }
}

impl RunState {
    /// Queues `bytes` (the storage bytes of graph input `name`, in the plan's precision for floats) for upload
    /// before the next submission.
    pub fn write_input(&self, plan: &Plan, name: &str, bytes: &[u8]) -> Result<()> {
        plan.check_state(self)?;
        let (buffer, offset, capacity) = plan
            .region(self, name)
            .ok_or_else(|| Error::Model(format!("{name:?} is not a graph input")))?;
        if !plan.inputs.contains_key(name) || bytes.len() as u64 > capacity {
            return Err(Error::Model(format!(
                "input {name:?} takes {capacity} bytes, got {}",
                bytes.len()
            )));
        }
        // Copies are in whole 4-byte words: an odd count of f16 values is padded.
        match bytes.len() % 4 {
            0 => plan.gpu.queue.write_buffer(buffer, offset, bytes),
            _ => {
                let mut padded = bytes.to_vec();
                padded.resize(bytes.len().next_multiple_of(4), 0);
                plan.gpu.queue.write_buffer(buffer, offset, &padded);
            }
        }
        Ok(())
    }

    /// Sets the origin of the frame's region in the texture the next run reads; written only when it changes.
    pub fn set_origin(&mut self, plan: &Plan, origin: [u32; 2]) -> Result<()> {
        plan.check_state(self)?;
        match &mut self.origin {
            Some((buffer, last)) => {
                if *last != origin {
                    plan.gpu
                        .queue
                        .write_buffer(buffer, 0, bytemuck::cast_slice(&origin));
                    *last = origin;
                }
                Ok(())
            }
            None => Err(Error::Model("the plan reads no texture".into())),
        }
    }

    /// Records the plan's kernels into `encoder`, in one compute pass; `texture` is the frame a texture source reads
    /// (bound on first use of each view, and kept for the next runs).
    pub fn record(
        &mut self,
        plan: &Plan,
        encoder: &mut wgpu::CommandEncoder,
        texture: Option<&wgpu::TextureView>,
    ) -> Result<()> {
        plan.check_state(self)?;
        let textured = match (plan.reads_texture(), texture) {
            (false, _) => None,
            (true, None) => {
                return Err(Error::Model(
                    "the plan reads a texture, and the run gives none".into(),
                ))
            }
            (true, Some(view)) => {
                let at = match self.textured.iter().position(|(v, _)| v == view) {
                    Some(at) => at,
                    None => {
                        let kernels = plan
                            .steps
                            .iter()
                            .enumerate()
                            .filter(|(_, s)| s.reads_texture())
                            .map(|(i, s)| Ok((i, plan.bind_step(self, s, Some(view))?)))
                            .collect::<Result<Vec<_>>>()?;
                        self.textured.truncate(TEXTURE_BINDINGS - 1);
                        self.textured.insert(0, (view.clone(), kernels));
                        0
                    }
                };
                let entry = self.textured.remove(at);
                self.textured.insert(0, entry);
                Some(&self.textured[0].1)
            }
        };
        // Texture-reading steps take their kernels, in step order, from the view's set.
        let mut textured = textured.into_iter().flatten().map(|(_, k)| k);
        let mut pass = encoder.begin_compute_pass(&Default::default());
        for (i, bound) in self.bound.iter().enumerate() {
            match bound.as_ref().or_else(|| textured.next()) {
                Some(kernel) => kernel.encode(&mut pass),
                None => return Err(Error::Model(format!("step {i} has no bind group"))),
            }
        }
        Ok(())
    }

    /// The kernels bound in this state, in recording order, when none reads a texture.
    pub(crate) fn bound_kernels(&self) -> Option<Vec<&BoundKernel>> {
        self.bound.iter().map(|b| b.as_ref()).collect()
    }

    /// A MAP_READ staging buffer of at least `bytes` for graph output `name`, made on first use.
    pub(crate) fn staging(&mut self, plan: &Plan, name: &str, bytes: u64) -> Result<&wgpu::Buffer> {
        if !self.staging.contains_key(name) {
            let buffer = plan.gpu.staging_buffer(name, bytes)?;
            self.staging.insert(name.to_string(), buffer);
        }
        Ok(&self.staging[name])
    }
}
