//! conv2d alone on the four shapes of issue 6: one submit and wait per iteration, batch 1, f32.
//!
//!     cargo bench --bench conv                 # criterion; throughput in Gelem/s = GFLOP/s
//!     ATROUS_BENCH_PATHS=naive,4x4,8x8 cargo bench --bench conv   # also time these paths, median of 3 only
//!                                                              # (naive is slow: tens of seconds a run)
//!     ATROUS_BENCH_ONLY=res_ cargo bench --bench conv -- res_      # only shapes whose name contains res_
//!
//! FLOPs count every tap, padding included (2 * N * Cout * Hout * Wout * Cin * Kh * Kw), as the burn peer does.
//! Besides criterion's figures, each shape prints the median of 3 timed runs in GFLOP/s (the peer's method).

use atrous::gpu::{BoundKernel, GpuTensor, Precision, TensorData};
use atrous::kernels::conv2d::{self, Path};
use atrous::ops::{Conv2d, ConvWeights, Padding2d};
use atrous::{Gpu, Shape};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Instant;

struct Bench {
    name: &'static str,
    input: Shape,
    conv: Conv2d,
}

fn shapes() -> Vec<Bench> {
    let conv = |cin, cout, k, pad: usize, dil| Conv2d {
        padding: Padding2d::uniform(pad),
        dilation: [dil, dil],
        ..Conv2d::new(cin, cout, [k, k])
    };
    vec![
        Bench {
            name: "aspp_2048to256_3x3_d12_65x65",
            input: Shape::new(1, 2048, 65, 65),
            conv: conv(2048, 256, 3, 12, 12),
        },
        Bench {
            name: "res_256to256_3x3_65x65",
            input: Shape::new(1, 256, 65, 65),
            conv: conv(256, 256, 3, 1, 1),
        },
        Bench {
            name: "res_1024to256_1x1_65x65",
            input: Shape::new(1, 1024, 65, 65),
            conv: conv(1024, 256, 1, 0, 1),
        },
        Bench {
            name: "unet_64to64_3x3_256x256",
            input: Shape::new(1, 64, 256, 256),
            conv: conv(64, 64, 3, 1, 1),
        },
    ]
}

fn flops(b: &Bench) -> u64 {
    let out = b.conv.output_shape(b.input).unwrap();
    let [co, ci, kh, kw] = b.conv.weight_shape();
    2 * (out.n * co * out.h * out.w * ci * kh * kw) as u64
}

/// Deterministic pseudo-random values in [-1, 1).
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The buffers and the bound kernel of one shape on one path; kept alive together.
struct Prepared {
    bound: BoundKernel,
    _buffers: (GpuTensor, GpuTensor, wgpu::Buffer, wgpu::Buffer),
}

fn prepare(gpu: &Gpu, b: &Bench, path: Path) -> Prepared {
    let p = &b.conv;
    let w = ConvWeights {
        weight: values(p.weight_shape().iter().product(), 1)
            .into_iter()
            .map(|v| v * 0.05)
            .collect(),
        bias: Some(values(p.out_channels, 2)),
        batch_norm: None,
    };
    let (weight, bias) = conv2d::fold_for(p, &w, path).unwrap();
    let weight = gpu.upload_f32("weight", &weight).unwrap();
    let bias = gpu.upload_f32("bias", &bias).unwrap();
    let x = gpu
        .upload("x", b.input, TensorData::F32(&values(b.input.numel(), 3)))
        .unwrap();
    let out = gpu
        .tensor("out", p.output_shape(b.input).unwrap(), false)
        .unwrap();
    let kernel = conv2d::conv2d_on(gpu, b.name, p, b.input, path, Precision::F32).unwrap();
    let bound = kernel
        .bind(
            gpu,
            &[out.binding()],
            &[
                x.binding(),
                weight.as_entire_buffer_binding(),
                bias.as_entire_buffer_binding(),
                gpu.placeholder(),
            ],
        )
        .unwrap();
    Prepared {
        bound,
        _buffers: (x, out, weight, bias),
    }
}

/// Median of 3 timed runs after one warm-up, in GFLOP/s.
fn median_gflops(gpu: &Gpu, prepared: &Prepared, flops: u64) -> f64 {
    gpu.run(&[&prepared.bound]).unwrap();
    let mut times: Vec<f64> = (0..3)
        .map(|_| {
            let t = Instant::now();
            gpu.run(&[&prepared.bound]).unwrap();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    flops as f64 / times[1] / 1e9
}

fn bench(c: &mut Criterion) {
    let gpu = Gpu::new().expect("no GPU adapter");
    println!("adapter: {}", gpu.describe());
    let extra: Vec<Path> = std::env::var("ATROUS_BENCH_PATHS")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once('x') {
            Some((c, p)) => Path::Tiled {
                channels: c.parse().expect("ATROUS_BENCH_PATHS: CxP"),
                pixels: p.parse().expect("ATROUS_BENCH_PATHS: CxP"),
            },
            None => Path::Naive,
        })
        .collect();
    let mut group = c.benchmark_group("conv2d");
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_millis(500));
    group.measurement_time(std::time::Duration::from_secs(3));
    let only = std::env::var("ATROUS_BENCH_ONLY").unwrap_or_default();
    for b in shapes().into_iter().filter(|b| b.name.contains(&only)) {
        let flops = flops(&b);
        let path = conv2d::choose(&b.conv, b.input);
        let prepared = prepare(&gpu, &b, path);
        println!(
            "{}: {path:?}: median of 3: {:.2} GFLOP/s",
            b.name,
            median_gflops(&gpu, &prepared, flops)
        );
        for &other in &extra {
            let prepared = prepare(&gpu, &b, other);
            println!(
                "{}: {other:?}: median of 3: {:.2} GFLOP/s",
                b.name,
                median_gflops(&gpu, &prepared, flops)
            );
        }
        group.throughput(Throughput::Elements(flops));
        group.bench_function(b.name, |bencher| {
            bencher.iter(|| gpu.run(&[&prepared.bound]).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
