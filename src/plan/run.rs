//! Running a compiled plan and blocking until its outputs are read back: uploads, one submission, readbacks.

use super::{tensor_bytes, Output, Plan, RunState};
use crate::error::{Error, Result};
use crate::gpu::Precision;
use crate::graph::DType;
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
            let (info, _) = self
                .inputs
                .get(name)
                .ok_or_else(|| Error::Model(format!("{name:?} is not a graph input")))?;
            let shape = info.shape;
            if info.dtype != DType::F32 {
                return Err(Error::Model(format!(
                    "input {name:?} takes packed pixels, not an f32 tensor"
                )));
            }
            if tensor.shape != shape || tensor.data.len() != shape.numel() {
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
        let mut state = self.take_state()?;
        let result = self.run_in(&mut state, inputs, outputs);
        self.idle.lock().expect("idle states poisoned").push(state);
        result
    }

    fn run_in(
        &self,
        state: &mut RunState,
        inputs: &[(&str, &Tensor)],
        outputs: &[&str],
    ) -> Result<HashMap<String, Output>> {
        // Converted on the host: one pass over the input, and half the bytes to upload in f16, where a conversion
        // kernel would need an f32 staging buffer and a dispatch.
        for &(name, t) in inputs {
            match self.precision {
                Precision::F32 => state.write_input(self, name, bytemuck::cast_slice(&t.data))?,
                p => state.write_input(self, name, &p.encode(&t.data))?,
            }
        }
        for &name in outputs {
            let (info, _) = self.outputs[name];
            state.staging(self, name, tensor_bytes(&info, self.precision))?;
        }
        let gpu = &self.gpu;
        gpu.scoped(
            || "recording and submitting the plan".to_string(),
            || -> Result<()> {
                let mut encoder = gpu.device.create_command_encoder(&Default::default());
                state.record(self, &mut encoder, None)?;
                for &name in outputs {
                    let (source, offset, bytes) = self.region(state, name).expect("checked output");
                    encoder.copy_buffer_to_buffer(source, offset, &state.staging[name], 0, bytes);
                }
                gpu.queue.submit([encoder.finish()]);
                Ok(())
            },
        )??;
        let mut results = HashMap::new();
        for &name in outputs {
            let (info, _) = self.outputs[name];
            let bytes =
                gpu.read_mapped(&state.staging[name], tensor_bytes(&info, self.precision))?;
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
}
