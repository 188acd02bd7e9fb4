//! The shared-memory implicit-GEMM conv (`conv2d::Path::Shared`) against the CPU reference on random data into
//! poisoned destinations, on every block: shapes that divide neither the block's channels nor its pixels nor the
//! reduction chunk, 1x1, strides, dilations, padding, batches, and the fused epilogue (bias and batch norm, residual
//! apart or in place, every activation, channel offset into a wider destination); f32 and f16 storage. Likewise the
//! subgroup-reduction conv (`conv2d::Path::Subgroup`) on few-pixel outputs where the adapter has SUBGROUP, and its
//! refusal where not. No timings: lavapipe is not what these kernels are for.

mod common;

use atrous::gpu::Precision;
use atrous::graph::GraphBuilder;
use atrous::kernels::conv2d::{self, shared, ConvPolicy, Path, WinogradPolicy};
use atrous::ops::{Activation, Conv2d, Padding2d};
use atrous::plan::{Output, Plan, PlanOptions, WeightCache};
use atrous::{reference, Model, Shape};
use common::conv::*;
use common::*;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// Held by the tests that set or read the process-wide conv policy, which run in parallel with each other.
fn policy_lock() -> MutexGuard<'static, ()> {
    static POLICY: Mutex<()> = Mutex::new(());
    POLICY.lock().unwrap_or_else(|e| e.into_inner())
}

fn blocks() -> Vec<Path> {
    shared::BLOCKS
        .iter()
        .map(|&(channels, pixels)| Path::Shared { channels, pixels })
        .collect()
}

/// `base` plain, then with batch norm, a residual, ReLU6 and a channel offset of 2 into a destination 5 channels
/// wider, then with the residual read in place and ReLU, on every block.
fn check_variants(
    gpu: &atrous::Gpu,
    i: usize,
    input: Shape,
    base: &Conv2d,
    paths: &[Path],
    precision: Precision,
) {
    for (v, variant) in ["plain", "offset+residual", "residual in place"]
        .into_iter()
        .enumerate()
    {
        let conv = match v {
            0 => base.clone(),
            1 => Conv2d {
                residual: true,
                activation: Activation::Relu6,
                out_channel_offset: 2,
                out_channels_total: Some(base.out_channels + 5),
                ..base.clone()
            },
            _ => Conv2d {
                residual: true,
                residual_in_place: true,
                activation: Activation::Relu,
                ..base.clone()
            },
        };
        let case = Case {
            input,
            conv,
            bias: true,
            batch_norm: v != 0,
        };
        for &path in paths {
            let name = format!("case {i} {variant} {path:?}: {input}");
            check_on(gpu, &name, &case, 400 + i as u64, Some(path), precision);
        }
    }
}

fn check_shapes(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    let asymmetric = Conv2d {
        padding: Padding2d {
            top: 0,
            left: 2,
            bottom: 1,
            right: 0,
        },
        ..Conv2d::new(3, 4, [2, 3])
    };
    let cases = [
        // 3 -> 5, 391 pixels: one partial channel vec4 and a partial pixel block; 27-long reduction
        (Shape::new(1, 3, 17, 23), conv(3, 5, 3, 1, 1, 1, 1)),
        // 17 -> 33, stride 2, batch 2: a partial pixel block spanning both images
        (Shape::new(2, 17, 13, 11), conv(17, 33, 3, 2, 1, 1, 1)),
        // 40 -> 130: 360-long reduction (22.5 chunks of 16), channel blocks past 128 and 64 * 2
        (Shape::new(1, 40, 9, 10), conv(40, 130, 3, 1, 1, 1, 1)),
        // stride and dilation 2 with padding of more than half the kernel
        (Shape::new(1, 5, 19, 21), conv(5, 6, 3, 2, 3, 2, 1)),
        // ASPP-like: dilation larger than the map, most taps in padding
        (Shape::new(1, 8, 9, 11), conv(8, 12, 3, 1, 12, 12, 1)),
        // 1x1 (reduction = channels), and on 1x1 maps
        (Shape::new(1, 13, 9, 7), conv(13, 3, 1, 1, 0, 1, 1)),
        (Shape::new(2, 9, 1, 1), conv(9, 5, 1, 1, 0, 1, 1)),
        // 4225 pixels: many pixel blocks, the last one with one pixel of 64 (or 1 of 128)
        (Shape::new(1, 3, 65, 65), conv(3, 5, 3, 1, 1, 1, 1)),
        // stem-like 7x7 stride 2, and a 2x3 kernel with asymmetric padding
        (Shape::new(1, 3, 21, 19), conv(3, 8, 7, 2, 3, 1, 1)),
        (Shape::new(1, 3, 8, 10), asymmetric),
    ];
    for (i, (input, base)) in cases.into_iter().enumerate() {
        check_variants(&gpu, i, input, &base, &blocks(), precision);
    }
}

#[test]
fn shared_conv2d_should_match_reference() {
    check_shapes(Precision::F32);
}

#[test]
fn shared_conv2d_in_f16_should_match_reference() {
    check_shapes(Precision::F16);
}

fn check_epilogues(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    for (i, activation) in Activation::ALL.into_iter().enumerate() {
        let conv = Conv2d {
            activation,
            residual: true,
            ..conv(5, 6, 3, 1, 2, 2, 1)
        };
        let case = Case {
            input: Shape::new(2, 5, 9, 11),
            conv,
            bias: true,
            batch_norm: true,
        };
        for path in blocks() {
            let name = format!("{activation:?} residual {path:?}");
            check_on(&gpu, &name, &case, 500 + i as u64, Some(path), precision);
        }
    }
}

#[test]
fn shared_conv2d_epilogue_should_match_reference() {
    check_epilogues(Precision::F32);
}

#[test]
fn shared_conv2d_epilogue_in_f16_should_match_reference() {
    check_epilogues(Precision::F16);
}

/// Offered to a tuner for every ungrouped conv, never for grouped ones; never the heuristic's choice; f32 math
/// only, with the tiled kernel's packed weights.
#[test]
fn shared_conv2d_should_be_a_candidate_not_the_default() {
    let p = conv(64, 64, 3, 1, 1, 1, 1);
    let x = Shape::new(1, 64, 32, 32);
    let gpu_like = 1 << 16;
    let candidates = conv2d::candidates(&p, x, gpu_like);
    for path in blocks() {
        assert!(candidates.contains(&path), "{path:?} in {candidates:?}");
        assert_eq!(path.layout(), conv2d::Layout::Packed);
        assert!(!path.with_f16_math(true).f16_math());
        assert_eq!(path.weight_precision(Precision::F16), Precision::F16);
    }
    let dw = conv(32, 32, 3, 1, 1, 1, 32);
    let grouped = conv2d::candidates(&dw, Shape::new(1, 32, 16, 16), gpu_like);
    assert!(!grouped.iter().any(|p| matches!(p, Path::Shared { .. })));
    // The heuristic (with the environment's policy: unset in the test runs) keeps its own paths.
    let _policy = policy_lock();
    if conv2d::conv_policy() == ConvPolicy::Auto {
        for parallelism in [16, gpu_like] {
            let chosen = conv2d::choose(&p, x, parallelism);
            assert!(!matches!(chosen, Path::Shared { .. }), "{chosen:?}");
        }
    }
}

/// `ConvPolicy::Shared` (`ATROUS_CONV=shared`) makes every ungrouped conv take it, Winograd-shaped ones included,
/// and the conv built that way matches the reference; grouped convs keep their kernels. Also refused by name: a
/// block that is not compiled, and grouped convs.
#[test]
fn conv_policy_shared_should_force_the_shared_kernel() {
    let gpu = gpu_or_skip!();
    let unet = conv(64, 64, 3, 1, 1, 1, 1);
    let wide = conv(256, 256, 1, 1, 0, 1, 1);
    let dw = conv(32, 32, 3, 1, 1, 1, 32);
    let x = |c| Shape::new(1, c, 64, 64);
    let policy = policy_lock();
    conv2d::set_conv_policy(Some(ConvPolicy::Shared));
    let unet_path = conv2d::choose_by_policy(&unet, x(64), 1 << 16, WinogradPolicy::Auto);
    let wide_path = conv2d::choose_by_policy(&wide, x(256), 1 << 16, WinogradPolicy::Auto);
    let dw_path = conv2d::choose_by_policy(&dw, x(32), 1 << 16, WinogradPolicy::Auto);
    // conv2d::conv2d (check's `None`) goes through choose_by_policy too.
    let case = Case {
        input: Shape::new(1, 6, 11, 9),
        conv: Conv2d {
            activation: Activation::Relu,
            ..conv(6, 7, 3, 1, 1, 1, 1)
        },
        bias: true,
        batch_norm: true,
    };
    check(&gpu, "ATROUS_CONV=shared", &case, 600, Precision::F32);
    conv2d::set_conv_policy(None);
    drop(policy);
    assert_eq!(
        unet_path,
        Path::Shared {
            channels: 64,
            pixels: 64
        }
    );
    assert_eq!(
        wide_path,
        Path::Shared {
            channels: 128,
            pixels: 128
        }
    );
    assert_eq!(dw_path, Path::Depthwise);

    let bad_block = Path::Shared {
        channels: 32,
        pixels: 64,
    };
    let err =
        conv2d::conv2d_on(&gpu, "conv3", &unet, x(64), bad_block, Precision::F32).unwrap_err();
    assert!(err.to_string().contains("conv3"), "{err}");
    let grouped = conv(8, 8, 3, 1, 1, 1, 2);
    let path = blocks()[0];
    let err = conv2d::conv2d_on(&gpu, "conv4", &grouped, x(8), path, Precision::F32).unwrap_err();
    assert!(err.to_string().contains("groups 2"), "{err}");
}

/// A plan compiled under `ConvPolicy::Shared` runs every conv of a small UNet-like graph (conv-BN-ReLU, a fused
/// residual add and ReLU, a conv writing into a concat, a valid 3x3, a 1x1 head) on the shared-memory kernel, and
/// matches the CPU executor, in f32 and (where the adapter has it) f16 storage.
#[test]
fn plans_under_conv_policy_shared_should_match_the_executor() {
    let gpu = gpu_or_skip!();
    let model = unet_like(9);
    let input = Shape::new(1, 8, 19, 23);
    let x = random_tensor(&mut rng(10), input);
    let want =
        reference::run_graph(&model, &HashMap::from([("input".to_string(), x.clone())])).unwrap();
    let mut precisions = vec![Precision::F32];
    if gpu.supports(Precision::F16) {
        precisions.push(Precision::F16);
    }
    for precision in precisions {
        let policy = policy_lock();
        conv2d::set_conv_policy(Some(ConvPolicy::Shared));
        let plan = Plan::compile(
            gpu.clone(),
            &model,
            &HashMap::from([("input".to_string(), input)]),
            PlanOptions {
                precision,
                ..Default::default()
            },
            &WeightCache::default(),
        );
        conv2d::set_conv_policy(None);
        drop(policy);
        let plan = plan.unwrap();
        let labels: Vec<&str> = plan.kernels().map(|k| k.label()).collect();
        let shared = labels
            .iter()
            .filter(|l| l.contains("conv2d shared"))
            .count();
        assert_eq!(shared, 5, "{precision}: {labels:?}");
        let got = plan.run(&[("input", &x)], &["out"]).unwrap();
        let (Output::F32(g), Output::F32(w)) = (&got["out"], &want["out"]) else {
            panic!("{precision}: f32 outputs expected");
        };
        assert_eq!(g.shape, w.shape, "{precision}");
        let tol = match precision {
            Precision::F32 => 1e-4,
            Precision::F16 => 2e-3,
        };
        assert_close_tol(&format!("{precision}"), &g.data, &w.data, tol);
    }
}

/// tests/winograd.rs's graph: four 3x3 convs (three padded by 1, one valid) and a 1x1 head.
fn unet_like(seed: u64) -> Model {
    let mut r = rng(seed);
    let mut b = GraphBuilder::new();
    let x = b.input("input", 8);
    let mut add_conv =
        |b: &mut GraphBuilder, name: &str, x: &str, p: Conv2d, bias: bool, bn: bool| {
            let w = conv_weights(&mut r, p.weight_shape(), p.out_channels, bias, bn);
            b.conv2d(name, x, p, w).unwrap()
        };
    let a = add_conv(&mut b, "a", &x, conv(8, 32, 3, 1, 1, 1, 1), false, true);
    let a = b.activation("a.relu", &a, Activation::Relu);
    let c = add_conv(&mut b, "b", &a, conv(32, 32, 3, 1, 1, 1, 1), true, true);
    let c = b.add("b.sum", &c, &a);
    let c = b.activation("b.relu", &c, Activation::Relu);
    let d = add_conv(&mut b, "c", &c, conv(32, 16, 3, 1, 1, 1, 1), true, false);
    let cat = b.concat("cat", &[&d, &a]);
    let e = add_conv(&mut b, "d", &cat, conv(48, 12, 3, 1, 0, 1, 1), true, true);
    let e = b.activation("d.relu", &e, Activation::Relu);
    add_conv(&mut b, "out", &e, conv(12, 5, 1, 1, 0, 1, 1), true, false);
    b.finish(&["out"]).unwrap()
}

fn subgroup_paths() -> Vec<Path> {
    conv2d::subgroup::PIXELS
        .iter()
        .map(|&pixels| Path::Subgroup { pixels })
        .collect()
}

/// Few-pixel outputs: 1x1 maps (squeeze-excitation-like, a reduction of 1000 terms, not a multiple of the 64 threads),
/// 9 and 6 pixels (P = 4 leaves a partial last group) with padding, stride, dilation and batch 2; every epilogue
/// variant. Without SUBGROUP the path is refused by name.
fn check_subgroup(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    if !gpu.features().contains(wgpu::Features::SUBGROUP) {
        let p = conv(8, 8, 1, 1, 0, 1, 1);
        for path in subgroup_paths() {
            let x = Shape::new(1, 8, 1, 1);
            let err = conv2d::conv2d_on(&gpu, "se", &p, x, path, precision).unwrap_err();
            assert!(err.to_string().contains("SUBGROUP"), "{err}");
        }
        eprintln!(
            "{}: no SUBGROUP, subgroup kernels refused as they should be",
            gpu.describe()
        );
        return;
    }
    let cases = [
        (Shape::new(2, 9, 1, 1), conv(9, 5, 1, 1, 0, 1, 1)),
        (Shape::new(1, 1000, 1, 1), conv(1000, 37, 1, 1, 0, 1, 1)),
        (Shape::new(1, 17, 3, 3), conv(17, 33, 3, 1, 1, 1, 1)),
        (Shape::new(2, 13, 5, 4), conv(13, 6, 3, 2, 2, 2, 1)),
    ];
    for (i, (input, base)) in cases.into_iter().enumerate() {
        check_variants(&gpu, 20 + i, input, &base, &subgroup_paths(), precision);
    }
}

#[test]
fn subgroup_conv2d_should_match_reference() {
    check_subgroup(Precision::F32);
}

#[test]
fn subgroup_conv2d_in_f16_should_match_reference() {
    check_subgroup(Precision::F16);
}

/// Offered for outputs of at most `subgroup::MAX_PIXELS` pixels, not for larger ones nor grouped convs.
#[test]
fn subgroup_conv2d_should_be_a_candidate_for_few_pixels_only() {
    let se = conv(960, 240, 1, 1, 0, 1, 1);
    let few = conv2d::candidates(&se, Shape::new(1, 960, 1, 1), 1 << 16);
    for path in subgroup_paths() {
        assert!(few.contains(&path), "{path:?} in {few:?}");
        assert_eq!(path.layout(), conv2d::Layout::Packed);
        assert!(!path.with_f16_math(true).f16_math());
    }
    let many = conv2d::candidates(&se, Shape::new(1, 960, 9, 8), 1 << 16);
    assert!(!many.iter().any(|p| matches!(p, Path::Subgroup { .. })));
    let dw = conv(32, 32, 3, 1, 1, 1, 32);
    let grouped = conv2d::candidates(&dw, Shape::new(1, 32, 1, 1), 1 << 16);
    assert!(!grouped.iter().any(|p| matches!(p, Path::Subgroup { .. })));
}
