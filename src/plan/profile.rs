//! Per-kernel GPU times of a plan from timestamp queries written between dispatches.

use super::Plan;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// One dispatch's time and work.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    /// "node (op)".
    pub label: String,
    pub seconds: f64,
    pub flops: u64,
    /// Bytes it must read and write at least.
    pub bytes: u64,
}

impl Plan {
    /// Whether [`Plan::profile`] can run on this device.
    pub fn can_profile(&self) -> bool {
        let needed =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        self.gpu.features().contains(needed)
    }

    /// Runs the plan once with a timestamp before and after every dispatch (in one pass, one submit) and returns
    /// each dispatch's GPU time. Needs TIMESTAMP_QUERY and TIMESTAMP_QUERY_INSIDE_PASSES.
    pub fn profile(&self, inputs: &[(&str, &Tensor)]) -> Result<Vec<KernelTime>> {
        if !self.can_profile() {
            return Err(Error::Device(format!(
                "{} lacks TIMESTAMP_QUERY_INSIDE_PASSES: no per-kernel times",
                self.gpu.describe()
            )));
        }
        let count = self.steps.len() as u32 + 1;
        if count > wgpu::QUERY_SET_MAX_QUERIES {
            return Err(Error::Device(format!(
                "{} dispatches are more than one query set can time",
                count - 1
            )));
        }
        for &(name, t) in inputs {
            match self.inputs.get(name) {
                Some((info, _)) if info.shape == t.shape => {}
                _ => {
                    return Err(Error::Model(format!(
                        "input {name:?} of shape {} does not fit the plan",
                        t.shape
                    )))
                }
            }
        }
        let gpu = &self.gpu;
        let state = self.state()?;
        for &(name, t) in inputs {
            state.write_input(self, name, &self.precision.encode(&t.data))?;
        }
        let kernels = state.bound_kernels().ok_or_else(|| {
            Error::Model("profiling a plan that reads a texture is not supported".into())
        })?;
        let bytes = 8 * count as u64;
        let (queries, resolved) = gpu.scoped(
            || "recording the profiled plan".to_string(),
            || {
                let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("atrous profile"),
                    ty: wgpu::QueryType::Timestamp,
                    count,
                });
                let resolved = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("atrous timestamps"),
                    size: bytes,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                let mut encoder = gpu.device.create_command_encoder(&Default::default());
                {
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    pass.write_timestamp(&queries, 0);
                    for (i, kernel) in kernels.iter().enumerate() {
                        kernel.encode(&mut pass);
                        pass.write_timestamp(&queries, i as u32 + 1);
                    }
                }
                encoder.resolve_query_set(&queries, 0..count, &resolved, 0);
                gpu.queue.submit([encoder.finish()]);
                (queries, resolved)
            },
        )?;
        let stamps: Vec<u64> = bytemuck::pod_collect_to_vec(&gpu.read_bytes(&resolved, 0, bytes)?);
        drop(queries);
        let period = gpu.queue.get_timestamp_period() as f64 * 1e-9;
        Ok(kernels
            .iter()
            .zip(stamps.windows(2))
            .map(|(k, w)| KernelTime {
                label: k.label().to_string(),
                seconds: w[1].saturating_sub(w[0]) as f64 * period,
                flops: k.flops(),
                bytes: k.bytes(),
            })
            .collect())
    }
}
