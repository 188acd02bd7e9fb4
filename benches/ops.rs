//! The memory-bound kernels alone, one submit and wait per iteration, batch 1, f32: groups `pooling`, `resize`,
//! `softmax_argmax` and `elementwise_concat`, on shapes from DeepLabV3-ResNet50 at 520 x 520, MobileNetV3-Large and
//! UNet at 256 x 256. Throughput is bytes (every input read once, every output written once), so criterion reports
//! GiB/s.
//!
//!     cargo bench --bench ops
//!     ATROUS_BENCH_ONLY=softmax cargo bench --bench ops

mod common;

use atrous::gpu::Kernel;
use atrous::gpu::Precision::F32;
use atrous::kernels::{elementwise, pool, resize, softmax};
use atrous::ops::{
    Activation, AdaptiveAvgPool2d, Argmax, AvgPool2d, Binary, BinaryOp, MaxPool2d, Resize,
    ResizeMode, ResizeTarget, Softmax, Unary,
};
use atrous::{Gpu, Shape};
use common::{bind_random, dims};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};

/// Benches `kernels` as `name` unless filtered out; `throughput` overrides the kernels' slot bytes.
fn add(
    group: &mut BenchmarkGroup<'_, WallTime>,
    gpu: &Gpu,
    name: &str,
    kernels: impl FnOnce() -> atrous::Result<Vec<Kernel>>,
    throughput: Option<u64>,
) {
    if !common::selected(name) {
        return;
    }
    let bound = bind_random(gpu, kernels().expect("compiling a bench kernel"));
    match throughput {
        None => common::bench(group, gpu, name, &bound),
        Some(bytes) => {
            group.throughput(Throughput::Bytes(bytes));
            group.bench_function(name, |b| b.iter(|| bound.run(gpu)));
        }
    }
}

fn pooling(c: &mut Criterion, gpu: &Gpu) {
    let mut g = common::group(c, "pooling");
    // ResNet stem max-pool 3x3 s2 p1 at 520; UNet's 2x2 max-pool at 256; ASPP's image pooling to 1x1; PSPNet-like
    // 3x3 average pooling
    let stem = Shape::new(1, 64, 260, 260);
    let p = MaxPool2d {
        stride: [2, 2],
        padding: [1, 1],
        ..MaxPool2d::new([3, 3])
    };
    let name = format!("max_pool2d_{}_k3x3_s2", dims(stem));
    add(
        &mut g,
        gpu,
        &name,
        || Ok(vec![pool::max_pool2d(gpu, "bench", &p, stem, F32)?]),
        None,
    );
    let unet = Shape::new(1, 64, 256, 256);
    let p = MaxPool2d::new([2, 2]);
    let name = format!("max_pool2d_{}_k2x2_s2", dims(unet));
    add(
        &mut g,
        gpu,
        &name,
        || Ok(vec![pool::max_pool2d(gpu, "bench", &p, unet, F32)?]),
        None,
    );
    let aspp = Shape::new(1, 2048, 65, 65);
    let p = AdaptiveAvgPool2d { output: [1, 1] };
    let name = format!("adaptive_avg_pool2d_{}_to1x1", dims(aspp));
    let kernel = || {
        Ok(vec![pool::adaptive_avg_pool2d(
            gpu, "bench", &p, aspp, F32,
        )?])
    };
    add(&mut g, gpu, &name, kernel, None);
    let feat = Shape::new(1, 256, 65, 65);
    let p = AvgPool2d {
        stride: [1, 1],
        padding: [1, 1],
        ..AvgPool2d::new([3, 3])
    };
    let name = format!("avg_pool2d_{}_k3x3_s1", dims(feat));
    add(
        &mut g,
        gpu,
        &name,
        || Ok(vec![pool::avg_pool2d(gpu, "bench", &p, feat, F32)?]),
        None,
    );
    g.finish();
}

fn resize_group(c: &mut Criterion, gpu: &Gpu) {
    let mut g = common::group(c, "resize");
    let bilinear = ResizeMode::Bilinear {
        align_corners: false,
    };
    // DeepLab's logits back to the input; the ASPP pooling branch broadcast back to 65x65; UNet-bilinear's 2x
    // upsampling; a nearest-neighbour 2x
    let cases = [
        (Shape::new(1, 21, 65, 65), bilinear, [520, 520]),
        (Shape::new(1, 256, 1, 1), bilinear, [65, 65]),
        (
            Shape::new(1, 512, 32, 32),
            ResizeMode::Bilinear {
                align_corners: true,
            },
            [64, 64],
        ),
        (Shape::new(1, 256, 65, 65), ResizeMode::Nearest, [130, 130]),
    ];
    for (input, mode, [h, w]) in cases {
        let p = Resize {
            mode,
            target: ResizeTarget::Size([h, w]),
        };
        let kind = match mode {
            ResizeMode::Bilinear {
                align_corners: true,
            } => "bilinear_ac",
            ResizeMode::Bilinear { .. } => "bilinear",
            ResizeMode::Nearest => "nearest",
            ResizeMode::Linear { .. } => "linear",
            ResizeMode::NearestOnnx { .. } => "nearest_onnx",
        };
        let name = format!("resize_{kind}_{}_to{h}x{w}", dims(input));
        add(
            &mut g,
            gpu,
            &name,
            || Ok(vec![resize::resize(gpu, "bench", &p, input, F32)?]),
            None,
        );
    }
    g.finish();
}

fn softmax_argmax(c: &mut Criterion, gpu: &Gpu) {
    let mut g = common::group(c, "softmax_argmax");
    // VOC logits at 520 x 520
    let logits = Shape::new(1, 21, 520, 520);
    let name = format!("softmax_{}", dims(logits));
    add(
        &mut g,
        gpu,
        &name,
        || Ok(vec![softmax::softmax(gpu, "bench", &Softmax, logits, F32)?]),
        None,
    );
    let name = format!("argmax_{}", dims(logits));
    add(
        &mut g,
        gpu,
        &name,
        || Ok(vec![softmax::argmax(gpu, "bench", &Argmax, logits, F32)?]),
        None,
    );
    g.finish();
}

fn elementwise_concat(c: &mut Criterion, gpu: &Gpu) {
    let mut g = common::group(c, "elementwise_concat");
    // An unfused residual add; MobileNetV3's squeeze-excitation scale (broadcast over the map); a ReLU
    let feat = Shape::new(1, 256, 65, 65);
    let name = format!("add_{}", dims(feat));
    let add_op = Binary::new(BinaryOp::Add);
    let kernel = || {
        Ok(vec![elementwise::binary(
            gpu, "bench", &add_op, feat, feat, F32,
        )?])
    };
    add(&mut g, gpu, &name, kernel, None);
    let map = Shape::new(1, 960, 33, 33);
    let scale = Shape::new(1, 960, 1, 1);
    let name = format!("mul_{}_by_{}", dims(map), dims(scale));
    let mul = Binary::new(BinaryOp::Mul);
    let kernel = || {
        Ok(vec![elementwise::binary(
            gpu, "bench", &mul, map, scale, F32,
        )?])
    };
    add(&mut g, gpu, &name, kernel, None);
    let relu = Unary {
        activation: Activation::Relu,
    };
    let name = format!("relu_{}", dims(feat));
    let kernel = || {
        Ok(vec![elementwise::activation(
            gpu, "bench", &relu, feat, F32,
        )?])
    };
    add(&mut g, gpu, &name, kernel, None);
    // ASPP's five 256-channel branches into 1280 channels (when not fused into the convs), UNet's skip concat
    let aspp = [feat; 5];
    let skip = [Shape::new(1, 64, 256, 256); 2];
    for parts in [&aspp[..], &skip[..]] {
        let bytes: u64 = parts.iter().map(|s| 2 * s.bytes()).sum();
        let name = format!("concat_{}x{}", parts.len(), dims(parts[0]));
        let kernels = || elementwise::concat(gpu, "bench", parts, F32);
        add(&mut g, gpu, &name, kernels, Some(bytes));
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let gpu = common::gpu();
    pooling(c, &gpu);
    resize_group(c, &gpu);
    softmax_argmax(c, &gpu);
    elementwise_concat(c, &gpu);
}

criterion_group!(op_benches, benches);
criterion_main!(op_benches);
