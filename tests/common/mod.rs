//! Shared test harness: one GPU per test binary, seeded random data, and the comparison with the reference.
#![allow(dead_code)]

pub mod conv;

use atrous::gpu::{GpuTensor, Precision, TensorData};
use atrous::graph::GraphBuilder;
use atrous::model::{InputSize, PreprocessSpec};
use atrous::ops::{
    Activation, BatchNorm, ChannelOrder, Conv2d, ConvWeights, Padding2d, Resize, ResizeMode,
    ResizeTarget,
};
use atrous::plan::PlanOptions;
use atrous::segment::FrameReadback;
use atrous::weights::Weights;
use atrous::{Gpu, Shape, Tensor};
use atrous::{Model, Segmentation, Segmenter};
use image::RgbaImage;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::future::Future;
use std::sync::{Arc, OnceLock};
use wgpu::{TextureFormat as F, TextureUsages as U};

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

/// A device of its own on the shared GPU's adapter, as an application would create it: atrous's required features
/// (no SHADER_F16) and `limits`, given the adapter's [`atrous::gpu::required_limits`].
pub fn app_device(gpu: &Gpu, limits: impl FnOnce(wgpu::Limits) -> wgpu::Limits) -> Arc<Gpu> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
        .into_iter()
        .find(|a| {
            a.get_info().name == gpu.info().name && a.get_info().backend == gpu.info().backend
        })
        .expect("the test adapter is listed");
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_features: atrous::gpu::required_features(),
        required_limits: limits(atrous::gpu::required_limits(&adapter)),
        ..Default::default()
    }))
    .unwrap();
    Arc::new(Gpu::from_device(device, queue, adapter.get_info()).unwrap())
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

/// A small segmentation model: a stride-2 3x3 conv to `classes` logits, upsampled 2x (a sigmoid for one class),
/// with ImageNet preprocessing at `input_size`.
pub fn segmentation_model(classes: usize, input_size: InputSize) -> Model {
    let mut r = rng(classes as u64);
    let mut b = GraphBuilder::new();
    let x = b.input("input", 3);
    let p = Conv2d {
        stride: [2, 2],
        padding: Padding2d::uniform(1),
        ..Conv2d::new(3, classes, [3, 3])
    };
    let w = ConvWeights {
        weight: random_vec(&mut r, classes * 27),
        bias: Some(random_vec(&mut r, classes)),
        batch_norm: None,
    };
    let logits = b.conv2d("conv", &x, p, w).unwrap();
    let up = Resize {
        mode: ResizeMode::Bilinear {
            align_corners: false,
        },
        target: ResizeTarget::Scale([2.0, 2.0]),
    };
    let up = b.resize("up", &logits, up);
    if classes == 1 {
        b.activation("out", &up, Activation::Sigmoid);
    } else {
        b.activation("out", &up, Activation::None);
    }
    let mut model = b.finish(&["out"]).unwrap();
    model.info.preprocess = Some(PreprocessSpec {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        value_range: [0.0, 1.0],
        channel_order: ChannelOrder::Rgb,
        input_size,
        bands: None,
    });
    model
}

/// A random opaque RGBA image.
pub fn photo(seed: u64, width: u32, height: u32) -> RgbaImage {
    let mut r = rng(seed);
    RgbaImage::from_fn(width, height, |_, _| {
        image::Rgba([r.random(), r.random(), r.random(), 255])
    })
}

/// A segmenter of [`segmentation_model`] at a fixed 24 x 32 input.
pub fn segmenter(gpu: Arc<Gpu>, classes: usize) -> Segmenter {
    let size = InputSize::Fixed {
        height: 24,
        width: 32,
    };
    Segmenter::new(gpu, segmentation_model(classes, size)).unwrap()
}

/// A texture holding `image` in `format`: the same bytes for 8-bit formats (swapped for BGRA; sRGB formats store
/// the encoded bytes, as a PNG does), `byte / 255` as f16 for Rgba16Float.
pub fn frame_texture(gpu: &Gpu, image: &RgbaImage, format: F) -> wgpu::Texture {
    let (w, h) = image.dimensions();
    let bytes: Vec<u8> = match format {
        F::Bgra8Unorm | F::Bgra8UnormSrgb => image
            .pixels()
            .flat_map(|p| [p[2], p[1], p[0], p[3]])
            .collect(),
        F::Rgba16Float => image
            .as_raw()
            .iter()
            .flat_map(|&b| half::f16::from_f32(b as f32 / 255.0).to_le_bytes())
            .collect(),
        _ => image.as_raw().clone(),
    };
    let texture = target_texture(gpu, format, w, h, U::TEXTURE_BINDING | U::COPY_DST);
    let bpp = format.block_copy_size(None).unwrap();
    gpu.queue().write_texture(
        texture.as_image_copy(),
        &bytes,
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some(w * bpp),
            rows_per_image: Some(h),
        },
        texture.size(),
    );
    texture
}

pub fn target_texture(gpu: &Gpu, format: F, w: u32, h: u32, usage: U) -> wgpu::Texture {
    gpu.texture_2d("test texture", format, (w, h), usage)
}

/// A texture's texels, rows tightly packed.
pub fn read_texture(gpu: &Gpu, texture: &wgpu::Texture) -> Vec<u8> {
    let (w, h) = (texture.width(), texture.height());
    let bpp = texture.format().block_copy_size(None).unwrap();
    let row = (w * bpp).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
    let buffer = gpu
        .staging_buffer("texture readback", (row * h) as u64)
        .unwrap();
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    encoder.copy_texture_to_buffer(
        texture.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &buffer,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(row),
                rows_per_image: Some(h),
            },
        },
        texture.size(),
    );
    gpu.queue().submit([encoder.finish()]);
    let bytes = gpu.read_mapped(&buffer, (row * h) as u64).unwrap();
    bytes
        .chunks(row as usize)
        .flat_map(|r| r[..(w * bpp) as usize].to_vec())
        .collect()
}

pub fn read_buffer(gpu: &Gpu, buffer: &wgpu::Buffer) -> Vec<u8> {
    gpu.read_bytes(buffer, 0, buffer.size()).unwrap()
}

pub fn output_buffer(gpu: &Gpu, bytes: u64) -> wgpu::Buffer {
    gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("test output"),
        size: bytes,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

/// Runs a readback future to completion the way an application loop would: poll the device, poll the future.
pub fn drive(mut readback: FrameReadback, gpu: &Gpu) -> atrous::Result<Segmentation> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    for _ in 0..10_000 {
        if let std::task::Poll::Ready(r) = std::pin::Pin::new(&mut readback).poll(&mut cx) {
            return r;
        }
        gpu.poll().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("the readback never completed");
}
