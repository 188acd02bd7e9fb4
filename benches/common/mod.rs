//! Helpers shared by the bench targets: criterion settings sized for a software adapter, the environment filters,
//! deterministic data, bench names by shape, and kernels bound to buffers of their own.
//!
//! Environment (every bench target):
//!
//!     ATROUS_BENCH_ONLY=a,b      only benches whose name contains one of these substrings (skips their setup too,
//!                                unlike criterion's own filter, which still compiles and uploads everything)
//!     ATROUS_BENCH_FULL=1        also the slow shapes left out of the default run (minutes each on lavapipe)
//!     ATROUS_BENCH_MEASURE=SECS  measurement time per bench (default 2; criterion takes at least 10 samples)

#![allow(dead_code)] // each bench target uses part of this module

use atrous::gpu::{BoundKernel, Kernel};
use atrous::{Gpu, Shape};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use std::time::Duration;

/// The adapter every bench runs on (`ATROUS_ADAPTER` picks one), announced once per target.
pub fn gpu() -> Gpu {
    let gpu = Gpu::new().expect("no GPU adapter (see README: Requirements)");
    eprintln!("adapter: {}", gpu.describe());
    gpu
}

/// A group with short timings: 10 samples, flat sampling (each sample runs the same number of iterations, so a
/// 5-second kernel costs 10 runs rather than criterion's linear ramp of 55).
pub fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let measure = std::env::var("ATROUS_BENCH_MEASURE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(2.0);
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs_f64(measure));
    group
}

/// Whether a bench named `name` passes `ATROUS_BENCH_ONLY`.
pub fn selected(name: &str) -> bool {
    match std::env::var("ATROUS_BENCH_ONLY") {
        Ok(only) if !only.is_empty() => only.split(',').any(|s| name.contains(s)),
        _ => true,
    }
}

/// `ATROUS_BENCH_FULL` is set: include the slow shapes.
pub fn full() -> bool {
    std::env::var_os("ATROUS_BENCH_FULL").is_some_and(|v| v != "0")
}

/// "1x2048x65x65".
pub fn dims(s: Shape) -> String {
    format!("{}x{}x{}x{}", s.n, s.c, s.h, s.w)
}

/// Deterministic pseudo-random values in [-1, 1).
pub fn values(len: usize, seed: u64) -> Vec<f32> {
    let step = |s: u64| {
        s.wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
    };
    let mut s = step(seed);
    (0..len)
        .map(|_| {
            s = step(s);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Dispatches bound to buffers they keep alive; one [`Bound::run`] is one submit and wait.
pub struct Bound {
    pub kernels: Vec<BoundKernel>,
    pub buffers: Vec<wgpu::Buffer>,
}

impl Bound {
    pub fn run(&self, gpu: &Gpu) {
        let kernels: Vec<&BoundKernel> = self.kernels.iter().collect();
        gpu.run(&kernels).expect("running the bench kernels");
    }

    /// The FLOPs the dispatches recorded, else the bytes their slots move: what criterion's throughput reports
    /// (GFLOP/s as Gelem/s, or bytes/s for memory-bound kernels).
    pub fn throughput(&self) -> Throughput {
        let flops: u64 = self.kernels.iter().map(|k| k.flops()).sum();
        match flops {
            0 => Throughput::Bytes(self.kernels.iter().map(|k| k.bytes()).sum()),
            f => Throughput::Elements(f),
        }
    }
}

/// Binds each kernel to fresh buffers of its slots' sizes, inputs filled with values in [-1, 1). For kernels whose
/// speed does not depend on the values they read (every family here except index-driven ones such as max-unpool).
pub fn bind_random(gpu: &Gpu, kernels: Vec<Kernel>) -> Bound {
    let mut bound = Bound {
        kernels: Vec::new(),
        buffers: Vec::new(),
    };
    for (k, kernel) in kernels.iter().enumerate() {
        let outputs: Vec<wgpu::Buffer> = kernel
            .outputs()
            .iter()
            .map(|s| gpu.storage_buffer(s.name, s.bytes).unwrap())
            .collect();
        let inputs: Vec<wgpu::Buffer> = kernel
            .inputs()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let words = (s.bytes as usize / 4).max(1);
                gpu.upload_f32(s.name, &values(words, (k * 16 + i) as u64))
                    .unwrap()
            })
            .collect();
        let outs: Vec<_> = outputs
            .iter()
            .map(|b| b.as_entire_buffer_binding())
            .collect();
        let ins: Vec<_> = inputs
            .iter()
            .map(|b| b.as_entire_buffer_binding())
            .collect();
        bound.kernels.push(
            kernel
                .bind(gpu, &outs, &ins)
                .expect("binding a bench kernel"),
        );
        bound.buffers.extend(outputs.into_iter().chain(inputs));
    }
    bound
}

/// Registers `bound` as bench `name` in `group`, with its throughput.
pub fn bench(group: &mut BenchmarkGroup<'_, WallTime>, gpu: &Gpu, name: &str, bound: &Bound) {
    group.throughput(bound.throughput());
    group.bench_function(name, |b| b.iter(|| bound.run(gpu)));
}
