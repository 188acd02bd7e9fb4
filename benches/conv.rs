//! Convolutions alone, one submit and wait per iteration, batch 1, f32: groups `conv2d` (by path), `depthwise`,
//! `dw_pointwise` (a depthwise conv and the 1 x 1 conv reading it, fused or as two kernels) and `conv_transpose2d`,
//! on shapes from DeepLabV3-ResNet50 at 520 x 520 (65 x 65 features, output stride 8),
//! DeepLabV3+ at output stride 16 (33 x 33 ASPP), MobileNetV3-Large and UNet at 256 x 256.
//!
//!     cargo bench --bench conv                                  # criterion; Gelem/s = GFLOP/s
//!     ATROUS_BENCH_PATHS=chosen,8x8,split4 cargo bench --bench conv -- conv2d/   # paths side by side
//!     ATROUS_BENCH_ONLY=2048x65 cargo bench --bench conv        # only the ASPP shapes at 65 x 65
//!     ATROUS_BENCH_MEDIAN3=3 cargo bench --bench conv -- nomatch  # only 3 rounds of the burn peer's median of
//!                                                               # 3 runs, the paths interleaved in each round
//!
//! Paths (ATROUS_BENCH_PATHS, default `chosen`): `chosen` (what `conv2d::choose` picks for this adapter), `naive`,
//! `CxP` (tiled), `rowsCxP` (tiled, row-consecutive pixels), `splitS` (split-K in S slices on the chosen tile),
//! `splitCxPxS`, `winoM` (Winograd F(MxM, 3x3) on the product tile `winograd::gemm_tile` picks; 3x3 stride-1
//! undilated convs only, skipped for the others), `winoMxCxP`, `shared` (the shared-memory implicit GEMM on the block
//! `conv2d::shared::block_for` picks) or `sharedBxQ` (on a B x Q block of `conv2d::shared::BLOCKS`), `subgroupP`
//! (subgroup reduction, P pixels per workgroup; adapters with SUBGROUP). Names: op, input NxCxHxW, output
//! channels, kernel, stride, dilation, groups; then `/path`. FLOPs count every tap, padding included
//! (`2 * N * Cout * Hout * Wout * Cin/groups * Kh * Kw`, `ops::Conv2d::flops`), as the burn peer does.

mod common;

use atrous::gpu::{BoundKernel, Precision};
use atrous::kernels::conv2d::{self, winograd, Path};
use atrous::kernels::conv_transpose2d::{self, Path as DeconvPath};
use atrous::kernels::dw_pointwise;
use atrous::ops::{Conv2d, ConvTranspose2d, Padding2d};
use atrous::{Gpu, Shape};
use common::{bind_random, dims, Bound};
use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Instant;

struct Case {
    input: Shape,
    conv: Conv2d,
}

fn conv(cin: usize, cout: usize, k: usize, stride: usize, dil: usize, groups: usize) -> Conv2d {
    Conv2d {
        stride: [stride, stride],
        padding: Padding2d::uniform(dil * (k - 1) / 2),
        dilation: [dil, dil],
        groups,
        ..Conv2d::new(cin, cout, [k, k])
    }
}

fn case(n: usize, c: usize, s: usize, conv: Conv2d) -> Case {
    Case {
        input: Shape::new(n, c, s, s),
        conv,
    }
}

fn name(op: &str, c: &Case) -> String {
    let p = &c.conv;
    let mut name = format!(
        "{op}_{}_to{}_k{}x{}",
        dims(c.input),
        p.out_channels,
        p.kernel[0],
        p.kernel[1]
    );
    for (tag, v) in [("s", p.stride[0]), ("d", p.dilation[0]), ("g", p.groups)] {
        if v != 1 {
            name += &format!("_{tag}{v}");
        }
    }
    name
}

/// Dense convs. The first four are BENCHMARKS.md's (issue 6) shapes.
fn conv2d_cases() -> Vec<Case> {
    let mut cases = vec![
        // DeepLabV3-ResNet50 at 520: ASPP 3x3 branch, layer3-like 3x3, bottleneck 1x1
        case(1, 2048, 65, conv(2048, 256, 3, 1, 12, 1)),
        case(1, 256, 65, conv(256, 256, 3, 1, 1, 1)),
        case(1, 1024, 65, conv(1024, 256, 1, 1, 1, 1)),
        // UNet at 256: the first double conv
        case(1, 64, 256, conv(64, 64, 3, 1, 1, 1)),
        // UNet-like 3x3 convs for Winograd: 64 -> 64 at 128 x 128 and 256 -> 256 at 32 x 32
        case(1, 64, 128, conv(64, 64, 3, 1, 1, 1)),
        case(1, 256, 32, conv(256, 256, 3, 1, 1, 1)),
        // ResNet-34 layer4 in a UNet at 512 x 512 (few tiles a pass), and that UNet's first decoder conv
        case(1, 512, 16, conv(512, 512, 3, 1, 1, 1)),
        case(1, 768, 32, conv(768, 256, 3, 1, 1, 1)),
        // ASPP at output stride 16 (DeepLabV3+ at 520): the split-K candidate
        case(1, 2048, 33, conv(2048, 256, 3, 1, 12, 1)),
        // ResNet stem, ASPP 1x1 branch, MobileNetV3 squeeze-excitation 1x1s on 1x1 maps
        case(1, 3, 520, conv(3, 64, 7, 2, 1, 1)),
        case(1, 2048, 65, conv(2048, 256, 1, 1, 1, 1)),
        case(1, 960, 1, conv(960, 240, 1, 1, 1, 1)),
        case(1, 240, 1, conv(240, 960, 1, 1, 1, 1)),
    ];
    if common::full() {
        // The other ASPP rates: ~4-5 s a run each on lavapipe.
        cases.push(case(1, 2048, 65, conv(2048, 256, 3, 1, 24, 1)));
        cases.push(case(1, 2048, 65, conv(2048, 256, 3, 1, 36, 1)));
    }
    cases
}

/// MobileNetV3-Large depthwise convs (DeepLabV3-MobileNetV3 at 520, dilated last stage).
fn depthwise_cases() -> Vec<Case> {
    vec![
        case(1, 64, 260, conv(64, 64, 3, 2, 1, 64)),
        case(1, 72, 130, conv(72, 72, 5, 2, 1, 72)),
        case(1, 120, 65, conv(120, 120, 5, 1, 1, 120)),
        case(1, 960, 33, conv(960, 960, 5, 1, 2, 960)),
    ]
}

fn parse_path(text: &str, chosen: Path, c: &Case, parallelism: u64) -> Path {
    let tile = |s: &str| -> Option<(u32, u32)> {
        let (c, p) = s.split_once('x')?;
        Some((c.parse().ok()?, p.parse().ok()?))
    };
    let chosen_tile = match chosen {
        Path::Tiled {
            channels, pixels, ..
        }
        | Path::SplitK {
            channels, pixels, ..
        } => (channels, pixels),
        _ => (8, 8),
    };
    fn bad<T>(text: &str) -> T {
        panic!("ATROUS_BENCH_PATHS: unknown path {text:?}")
    }
    if let Some(rest) = text.strip_prefix("wino") {
        // winoM (the product tile winograd::gemm_tile picks for this conv) or winoMxCxP
        let (tile, gemm) = match rest.split_once('x') {
            Some((m, t)) => (m, tile(t).unwrap_or_else(|| bad(text))),
            None => {
                let m = rest.parse().unwrap_or_else(|_| bad(text));
                let tiles = winograd::tile_count(&c.conv, c.input, m).expect("a valid bench shape");
                let m_side = rest.parse().unwrap_or_else(|_| bad(text));
                (
                    rest,
                    winograd::gemm_tile(c.conv.out_channels, tiles, m_side, parallelism),
                )
            }
        };
        return Path::Winograd {
            tile: tile.parse().unwrap_or_else(|_| bad(text)),
            channels: gemm.0,
            pixels: gemm.1,
            f16_math: false,
        };
    }
    match text {
        "chosen" => chosen,
        "naive" => Path::Naive,
        "depthwise" => Path::Depthwise,
        "shared" => {
            let (channels, pixels) = conv2d::shared::block_for(&c.conv);
            Path::Shared { channels, pixels }
        }
        _ if text.starts_with("subgroup") => Path::Subgroup {
            pixels: text[8..].parse().unwrap_or_else(|_| bad(text)),
        },
        _ if text.starts_with("shared") => {
            let (channels, pixels) = tile(&text[6..]).unwrap_or_else(|| bad(text));
            Path::Shared { channels, pixels }
        }
        _ if text.starts_with("rows") => {
            let (channels, pixels) = tile(&text[4..]).unwrap_or_else(|| bad(text));
            Path::TiledRows {
                channels,
                pixels,
                f16_math: false,
            }
        }
        _ => match text.strip_prefix("split") {
            Some(rest) => {
                let ((channels, pixels), splits) = match rest.rsplit_once('x') {
                    Some((t, s)) => (tile(t).unwrap_or_else(|| bad(text)), s),
                    None => (chosen_tile, rest),
                };
                let splits = splits.parse().unwrap_or_else(|_| bad(text));
                Path::SplitK {
                    channels,
                    pixels,
                    splits,
                    f16_math: false,
                }
            }
            None => {
                let (channels, pixels) = tile(text).unwrap_or_else(|| bad(text));
                Path::Tiled {
                    channels,
                    pixels,
                    f16_math: false,
                }
            }
        },
    }
}

fn path_name(path: Path) -> String {
    match path {
        Path::Naive => "naive".into(),
        Path::Depthwise => "depthwise".into(),
        Path::Tiled {
            channels, pixels, ..
        } => format!("tiled{channels}x{pixels}"),
        Path::TiledRows {
            channels, pixels, ..
        } => format!("rows{channels}x{pixels}"),
        Path::SplitK {
            channels,
            pixels,
            splits,
            ..
        } => format!("split{channels}x{pixels}x{splits}"),
        Path::Winograd {
            tile,
            channels,
            pixels,
            ..
        } => format!("winograd{tile}_{channels}x{pixels}"),
        Path::Shared { channels, pixels } => format!("shared{channels}x{pixels}"),
        Path::Subgroup { pixels } => format!("subgroup{pixels}"),
    }
}

/// The conv's dispatches on `path` bound to buffers of random values (weights too: the speed does not depend on
/// them), the split-K and Winograd scratch included.
fn prepare(gpu: &Gpu, c: &Case, path: Path) -> Bound {
    let p = &c.conv;
    let kernels = conv2d::conv2d_on(gpu, "bench", p, c.input, path, Precision::F32)
        .expect("compiling the bench conv")
        .with_flops(p.flops(c.input));
    let scratch_bytes = kernels.scratch_bytes();
    let (output, [input, weight, bias, residual]) = match &kernels {
        conv2d::Conv2dKernels::Direct(k) => (&k.outputs()[0], [0, 1, 2, 3].map(|i| &k.inputs()[i])),
        conv2d::Conv2dKernels::SplitK(s) => (
            &s.reduce.outputs()[0],
            [
                &s.partial.inputs()[0],
                &s.partial.inputs()[1],
                &s.reduce.inputs()[1],
                &s.reduce.inputs()[2],
            ],
        ),
        conv2d::Conv2dKernels::Winograd(w) => (
            &w.passes[0].output.outputs()[0],
            [
                &w.passes[0].input.inputs()[0],
                &w.passes[0].gemm.inputs()[1],
                &w.passes[0].output.inputs()[1],
                &w.passes[0].output.inputs()[2],
            ],
        ),
    };
    let mut buffers = vec![gpu.storage_buffer("output", output.bytes).unwrap()];
    for (i, slot) in [input, weight, bias, residual].into_iter().enumerate() {
        let words = (slot.bytes as usize / 4).max(1);
        buffers.push(
            gpu.upload_f32(slot.name, &common::values(words, i as u64))
                .unwrap(),
        );
    }
    for &bytes in &scratch_bytes {
        buffers.push(gpu.storage_buffer("scratch", bytes.max(4)).unwrap());
    }
    let b = |i: usize| buffers[i].as_entire_buffer_binding();
    let scratch: Vec<_> = (0..scratch_bytes.len()).map(|i| b(5 + i)).collect();
    let bound: Vec<BoundKernel> = kernels
        .bind(gpu, b(0), [b(1), b(2), b(3), b(4)], &scratch)
        .expect("binding the bench conv");
    Bound {
        kernels: bound,
        buffers,
    }
}

/// The burn peer's figure: median of 3 timed runs after one warm-up, in GFLOP/s.
fn median_of_3(gpu: &Gpu, bound: &Bound, flops: u64) -> f64 {
    bound.run(gpu);
    let mut times: Vec<f64> = (0..3)
        .map(|_| {
            let t = Instant::now();
            bound.run(gpu);
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    flops as f64 / times[1] / 1e9
}

fn conv_group(c: &mut Criterion, gpu: &Gpu, group_name: &str, cases: Vec<Case>, paths: &[String]) {
    let mut group = common::group(c, group_name);
    // Rounds of the peer's median of 3, the paths interleaved within each round, so that a shared machine's load
    // drifts over all paths alike.
    let rounds: usize = match std::env::var("ATROUS_BENCH_MEDIAN3") {
        Ok(r) => r.parse().unwrap_or(1),
        Err(_) => 0,
    };
    for case in cases {
        let name = name(group_name, &case);
        if !common::selected(&name) {
            continue;
        }
        let chosen = conv2d::choose(&case.conv, case.input, gpu.parallelism());
        let mut bound: Vec<(String, Bound)> = Vec::new();
        for text in paths {
            // Winograd paths apply to 3x3 stride-1 undilated convs only: the others skip them.
            if text.starts_with("wino") && !winograd::applies(&case.conv) {
                continue;
            }
            let path = parse_path(text, chosen, &case, gpu.parallelism());
            let id = format!("{name}/{}", path_name(path));
            if bound.iter().all(|(done, _)| *done != id) {
                bound.push((id, prepare(gpu, &case, path)));
            }
        }
        for round in 1..=rounds {
            for (id, b) in &bound {
                let gflops = median_of_3(gpu, b, case.conv.flops(case.input));
                eprintln!("{group_name}/{id}: round {round}: median of 3: {gflops:.2} GFLOP/s");
            }
        }
        for (id, b) in &bound {
            common::bench(&mut group, gpu, id, b);
        }
    }
    group.finish();
}

/// UNet's transposed 2x2 stride-2 upsampling convs (milesial UNet at 256 x 256: up4 and up1), on both kernels.
fn conv_transpose2d_group(c: &mut Criterion, gpu: &Gpu) {
    let mut group = common::group(c, "conv_transpose2d");
    for (cin, cout, side) in [(128, 64, 128), (1024, 512, 16)] {
        for path in [DeconvPath::Tiled, DeconvPath::Gather] {
            // The gather kernel's up1 takes ~7 s a run on lavapipe (one thread per output, 1024-long reductions).
            if path == DeconvPath::Gather && cin == 1024 && !common::full() {
                continue;
            }
            let p = ConvTranspose2d::new(cin, cout, [2, 2], [2, 2]);
            let input = Shape::new(1, cin, side, side);
            let name = format!("conv_transpose2d_{}_to{cout}_k2x2_s2_{path:?}", dims(input));
            if !common::selected(&name) {
                continue;
            }
            let kernel = conv_transpose2d::conv_transpose2d_on(
                gpu,
                "bench",
                &p,
                input,
                path,
                Precision::F32,
            )
            .expect("compiling the bench transposed conv")
            .with_flops(p.flops(input));
            let bound = bind_random(gpu, vec![kernel]);
            common::bench(&mut group, gpu, &name, &bound);
        }
    }
    group.finish();
}

/// MobileNetV3-Large's inverted residuals without squeeze-excitation at high resolution (DeepLabV3-MobileNetV3 at
/// 520: blocks 1, 2 and 3), depthwise 3x3 then the 1 x 1 projection: the fused kernel, and the two kernels the plan
/// would otherwise run (depthwise, then the chosen 1 x 1 path).
fn dw_pointwise_group(c: &mut Criterion, gpu: &Gpu) {
    let mut group = common::group(c, "dw_pointwise");
    for (mid, side, stride, out) in [(16, 260, 1, 16), (64, 260, 2, 24), (72, 130, 1, 24)] {
        let dw = Conv2d {
            padding: Padding2d::uniform(1),
            activation: atrous::ops::Activation::Relu,
            ..conv(mid, mid, 3, stride, 1, mid)
        };
        let pw = conv(mid, out, 1, 1, 1, 1);
        let input = Shape::new(1, mid, side, side);
        let between = dw.output_shape(input).expect("a valid bench shape");
        for fused in [true, false] {
            let name = format!(
                "dw_pointwise_{}_k3x3_s{stride}_to{out}_{}",
                dims(input),
                if fused { "fused" } else { "two_kernels" }
            );
            if !common::selected(&name) {
                continue;
            }
            let kernels = match fused {
                true => {
                    vec![
                        dw_pointwise::dw_pointwise(gpu, "bench", &dw, &pw, input, Precision::F32)
                            .expect("compiling the bench kernel"),
                    ]
                }
                false => [(&dw, input), (&pw, between)]
                    .into_iter()
                    .map(|(p, x)| {
                        match conv2d::conv2d(gpu, "bench", p, x, Precision::F32)
                            .expect("compiling the bench conv")
                        {
                            conv2d::Conv2dKernels::Direct(k) => k.with_flops(p.flops(x)),
                            _ => {
                                panic!("no split-K or Winograd from conv2d::conv2d at these sizes")
                            }
                        }
                    })
                    .collect(),
            };
            // Either way the throughput counts both convs' FLOPs once.
            let bound = bind_random(gpu, kernels);
            common::bench(&mut group, gpu, &name, &bound);
        }
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let gpu = common::gpu();
    let paths: Vec<String> = std::env::var("ATROUS_BENCH_PATHS")
        .unwrap_or_else(|_| "chosen".into())
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    conv_group(c, &gpu, "conv2d", conv2d_cases(), &paths);
    conv_group(c, &gpu, "depthwise", depthwise_cases(), &["chosen".into()]);
    dw_pointwise_group(c, &gpu);
    conv_transpose2d_group(c, &gpu);
}

criterion_group!(conv_benches, benches);
criterion_main!(conv_benches);
