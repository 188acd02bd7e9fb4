//! Shared test harness: one GPU per test binary, seeded random data, and the comparison with the reference.
#![allow(dead_code)]

pub mod conv;

use atrous::gpu::{GpuTensor, Precision, TensorData};
use atrous::ops::{BatchNorm, ConvWeights};
use atrous::plan::PlanOptions;
use atrous::weights::Weights;
use atrous::{Gpu, Shape, Tensor};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::{Arc, OnceLock};

/// The shared GPU, or `None` (with the reason printed) when this machine has no adapter at all.
/// With `ATROUS_REQUIRE_GPU=1` (set by CI) a missing adapter fails instead.
pub fn gpu() -> Option<Arc<Gpu>> {
    static GPU: OnceLock<Option<Arc<Gpu>>> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new() {
        Ok(gpu) => {
            eprintln!("testing on {}", gpu.describe());
            Some(Arc::new(gpu))
        }
        Err(e) if std::env::var("ATROUS_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("ATROUS_REQUIRE_GPU=1 but no GPU: {e}")
        }
        Err(e) => {
            eprintln!("skipping GPU tests: {e}");
            None
        }
    })
    .clone()
}

/// The shared GPU if it can run kernels of `precision`; else `None`, with the reason printed. f16 needs the
/// adapter's SHADER_F16 (lavapipe has it; llvmpipe's GL does not), so f16 tests skip where it is missing.
pub fn gpu_for(precision: Precision) -> Option<Arc<Gpu>> {
    let gpu = gpu()?;
    if !gpu.supports(precision) {
        eprintln!(
            "skipping {precision} GPU tests: {} has no SHADER_F16",
            gpu.describe()
        );
        return None;
    }
    Some(gpu)
}

/// Binds the shared GPU (one that runs `precision`, when given) or returns from the test, having printed why.
#[macro_export]
macro_rules! gpu_or_skip {
    () => {
        match common::gpu() {
            Some(gpu) => gpu,
            None => return,
        }
    };
    ($precision:expr) => {
        match common::gpu_for($precision) {
            Some(gpu) => gpu,
            None => return,
        }
    };
}

/// Kernel tests' tolerance, relative to max(1, max |reference|): 1e-4 in f32. In f16 every stored value (input,
/// weight, output) carries a rounding of up to 2^-11 relative, sums stay f32; [`F16_TOLERANCE`] bounds what that
/// leaves on the test data.
pub fn tolerance(precision: Precision) -> f32 {
    match precision {
        Precision::F32 => 1e-4,
        Precision::F16 => F16_TOLERANCE,
    }
}

/// See [`tolerance`]; documented in the README.
pub const F16_TOLERANCE: f32 = 1e-3;

/// f16 tolerance of the f16-math conv kernels (tiled and split-K), relative to max(1, max |reference|): they multiply
/// in f16 and sum each tap's products over a chunk of at most 16 input channels in f16 before adding to their f32
/// accumulators, so the error grows with the square root of the reduction length (2.7e-3 at 360 terms on uniform
/// [-1, 1) data). Documented in the README.
pub const F16_MATH_TOLERANCE: f32 = 5e-3;

/// `t` with every value rounded to what `precision` stores, so a reference sees exactly the GPU's inputs and the
/// comparison measures the kernel, not the rounding of its inputs.
pub fn rounded(precision: Precision, t: &Tensor) -> Tensor {
    Tensor {
        shape: t.shape,
        data: precision.decode(&precision.encode(&t.data), t.data.len()),
    }
}

/// Uploads `t` converted to `precision`.
pub fn upload_in(gpu: &Gpu, label: &str, t: &Tensor, precision: Precision) -> GpuTensor {
    gpu.upload_in(label, t, precision).unwrap()
}

/// [`assert_close_tol`] at the [`tolerance`] of `precision`.
pub fn assert_close_in(precision: Precision, what: &str, got: &[f32], want: &[f32]) {
    assert_close_tol(
        &format!("{what} ({precision})"),
        got,
        want,
        tolerance(precision),
    );
}

pub fn rng(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}

/// Uniform values in [-1, 1): never zeros, so unwritten or misindexed outputs show.
pub fn random_vec(rng: &mut SmallRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

pub fn random_tensor(rng: &mut SmallRng, shape: Shape) -> Tensor {
    Tensor::new(shape, random_vec(rng, shape.numel())).unwrap()
}

pub fn upload(gpu: &Gpu, label: &str, t: &Tensor) -> GpuTensor {
    gpu.upload(label, t.shape, TensorData::F32(&t.data))
        .unwrap()
}

/// Asserts max |gpu - reference| <= 1e-4 * max(1, max |reference|); a failure names the first mismatching index.
pub fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_close_tol(what, got, want, 1e-4);
}

pub fn assert_close_tol(what: &str, got: &[f32], want: &[f32], rel: f32) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} values, expected {}",
        got.len(),
        want.len()
    );
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let tol = rel * scale;
    let mut worst = 0.0f32;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        // NaN (an unwritten element) fails too.
        if err.is_nan() || err > tol {
            panic!(
                "{what}: index {i}: gpu {g} vs reference {w} (|err| {err} > tol {tol}; {} values)",
                got.len()
            );
        }
        worst = worst.max(err);
    }
    assert!(worst.is_finite());
    // ATROUS_REPORT_ERRORS=1 prints the worst relative error of every comparison, to set tolerances from.
    if std::env::var("ATROUS_REPORT_ERRORS").is_ok_and(|v| v == "1") {
        eprintln!(
            "worst error {:.3e} of scale {scale:.3}: {what}",
            worst / scale
        );
    }
}

/// A 4-D tensor from a fixture file.
pub fn tensor(w: &Weights, name: &str) -> Tensor {
    let t = w.get(name).unwrap();
    let [n, c, h, wd] = t.shape[..] else {
        panic!("{name}: shape {:?}", t.shape)
    };
    Tensor::new(Shape::new(n, c, h, wd), t.data).unwrap()
}

/// Max |got - want| and the fraction of pixels whose argmax over channels agrees.
pub fn compare(got: &Tensor, want: &Tensor) -> (f32, f64) {
    assert_eq!(got.shape, want.shape);
    let max_err = got
        .data
        .iter()
        .zip(&want.data)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0f32, |m, e| if e.is_nan() { f32::NAN } else { m.max(e) });
    let s = want.shape;
    let plane = s.h * s.w;
    let argmax = |t: &Tensor, n: usize, p: usize| {
        (0..s.c)
            .map(|c| t.data[(n * s.c + c) * plane + p])
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (c, v)| {
                if v > best.1 {
                    (c, v)
                } else {
                    best
                }
            })
            .0
    };
    let mut same = 0usize;
    for n in 0..s.n {
        for p in 0..plane {
            same += usize::from(argmax(got, n, p) == argmax(want, n, p));
        }
    }
    (max_err, same as f64 / (s.n * plane) as f64)
}

/// Random conv weights of PyTorch's `shape`, scaled by 1 / sqrt(fan-in) so deep graphs stay O(1), with an optional
/// bias and batch norm (running variances in [0.3, 2)).
pub fn conv_weights(
    rng: &mut SmallRng,
    shape: [usize; 4],
    channels: usize,
    bias: bool,
    bn: bool,
) -> ConvWeights {
    let fan_in = (shape[1] * shape[2] * shape[3]) as f32;
    ConvWeights {
        weight: random_vec(rng, shape.iter().product())
            .iter()
            .map(|v| v / fan_in.sqrt())
            .collect(),
        bias: bias.then(|| random_vec(rng, channels)),
        batch_norm: bn.then(|| BatchNorm {
            weight: random_vec(rng, channels),
            bias: random_vec(rng, channels),
            running_mean: random_vec(rng, channels),
            running_var: (0..channels)
                .map(|_| rng.random_range(0.3f32..2.0))
                .collect(),
            eps: 1e-5,
        }),
    }
}

/// Plan options for f16 storage with f32 conv math or with f16 conv math ([`PlanOptions::f16_math`]).
pub fn f16_options(f16_math: bool) -> PlanOptions {
    PlanOptions {
        precision: Precision::F16,
        f16_math: Some(f16_math),
        ..PlanOptions::default()
    }
}

/// "f32", "f16" (f32 conv math) or "f16, f16 math", for messages.
pub fn numerics(options: &PlanOptions) -> String {
    match options.f16_math {
        Some(true) => format!("{}, f16 math", options.precision),
        _ => options.precision.to_string(),
    }
}

/// A few byte-level mutations of `seed` (bit flips, overwrites, truncations, splices), for the fuzz tests.
pub fn mutate_bytes(rng: &mut SmallRng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let at = rng.random_range(0..b.len().max(1));
        match rng.random_range(0..4) {
            0 if !b.is_empty() => b[at] ^= 1 << rng.random_range(0..8),
            1 if !b.is_empty() => b[at] = rng.random(),
            2 => b.truncate(at),
            _ => {
                let from = rng.random_range(0..b.len().max(1));
                let chunk: Vec<u8> = b.iter().skip(from).take(16).copied().collect();
                b.splice(at.min(b.len())..at.min(b.len()), chunk);
            }
        }
    }
    b
}
