//! Winograd conv2d (F(2x2, 3x3) and F(4x4, 3x3)) against the f64 reference: partial edge tiles, odd and tiny maps,
//! padding 0 to 2, every epilogue, f32 and f16 (f32 and f16 math); the choice of path; and whole plans with Winograd
//! forced on and off.
//!
//! `ATROUS_REPORT_ERRORS=1 cargo test --test winograd -- --nocapture` prints the worst error of every comparison and
//! of every path and precision.

mod common;

use atrous::gpu::Precision;
use atrous::graph::GraphBuilder;
use atrous::kernels::conv2d::{self, winograd, Path, WinogradPolicy};
use atrous::ops::{Activation, Conv2d, Padding2d};
use atrous::plan::{Output, Plan, PlanOptions, WeightCache};
use atrous::{reference, Gpu, Model, Shape};
use common::conv::*;
use common::*;
use std::collections::HashMap;
use std::sync::Arc;

fn wino(tile: u32, (channels, pixels): (u32, u32), f16_math: bool) -> Path {
    Path::Winograd {
        tile,
        channels,
        pixels,
        f16_math,
    }
}

/// The Winograd paths a precision runs: F(2x2) and F(4x4) in f32 math, and in f16 F(2x2) with f16 math too. The
/// product tile cycles through every compiled one with `i`.
fn paths(precision: Precision, i: usize) -> Vec<Path> {
    let gemm = winograd::TILES[i % winograd::TILES.len()];
    let mut paths = vec![wino(2, gemm, false), wino(4, gemm, false)];
    if precision == Precision::F16 {
        paths.push(wino(2, gemm, true));
    }
    paths
}

/// Prints the worst error per path kind when asked (`ATROUS_REPORT_ERRORS=1`).
fn report(what: &str, worst: &HashMap<String, f32>) {
    if std::env::var("ATROUS_REPORT_ERRORS").is_ok_and(|v| v == "1") {
        let mut rows: Vec<_> = worst.iter().collect();
        rows.sort_by(|a, b| a.0.cmp(b.0));
        for (path, err) in rows {
            eprintln!("{what}: worst {path}: {err:.3e}");
        }
    }
}

fn kind(path: Path) -> String {
    match path {
        Path::Winograd { tile, f16_math, .. } => {
            format!(
                "F({tile}x{tile}, 3x3){}",
                if f16_math { " f16 math" } else { "" }
            )
        }
        other => format!("{other:?}"),
    }
}

/// Maps of 1x1, 2x3, 7x5 and 33x17 (and a batch of 2 at 9x10) with padding 0, 1 and 2 (where the output is not
/// empty): every tile partial, one tile, and many tiles with partial ones at the right and bottom edges. Channels
/// not divisible by 4 or 8, and 40 input channels (two and a half f16 chunks).
fn check_shapes(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    let mut worst = HashMap::new();
    let mut i = 0;
    for (n, h, w, cin, cout) in [
        (1, 1, 1, 3, 5),
        (1, 2, 3, 5, 7),
        (1, 7, 5, 6, 9),
        (1, 33, 17, 40, 13),
        (2, 9, 10, 4, 4),
    ] {
        for pad in 0..=2 {
            let p = conv(cin, cout, 3, 1, pad, 1, 1);
            let input = Shape::new(n, cin, h, w);
            if p.output_shape(input).is_err() {
                continue;
            }
            let case = Case {
                input,
                conv: p,
                bias: true,
                batch_norm: i % 2 == 0,
            };
            for path in paths(precision, i) {
                let name = format!("{input} pad {pad} {path:?}");
                let err = check_on(&gpu, &name, &case, 400 + i as u64, Some(path), precision);
                let e = worst.entry(kind(path)).or_insert(0.0f32);
                *e = e.max(err);
            }
            i += 1;
        }
    }
    report(&format!("shapes ({precision})"), &worst);
}

#[test]
fn winograd_should_match_reference_on_any_map_and_padding() {
    check_shapes(Precision::F32);
}

#[test]
fn winograd_in_f16_should_match_reference_on_any_map_and_padding() {
    check_shapes(Precision::F16);
}

/// Every epilogue: bias alone, batch norm alone, each activation with and without a residual, a residual read in
/// place from the destination, a channel offset into a wider (concat) destination, and asymmetric padding.
fn check_epilogues(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    let mut worst = HashMap::new();
    let mut cases = vec![];
    let base = conv(6, 10, 3, 1, 1, 1, 1);
    let input = Shape::new(2, 6, 11, 9);
    for (bias, batch_norm) in [(true, false), (false, true), (false, false)] {
        cases.push((
            format!("bias={bias} bn={batch_norm}"),
            base.clone(),
            bias,
            batch_norm,
        ));
    }
    for activation in Activation::ALL {
        for residual in [false, true] {
            let p = Conv2d {
                activation,
                residual,
                ..base.clone()
            };
            cases.push((format!("{activation:?} residual={residual}"), p, true, true));
        }
    }
    cases.push((
        "residual in place".into(),
        Conv2d {
            residual: true,
            residual_in_place: true,
            activation: Activation::Relu,
            ..base.clone()
        },
        true,
        true,
    ));
    cases.push((
        "offset 3 of 17 + residual".into(),
        Conv2d {
            out_channel_offset: 3,
            out_channels_total: Some(17),
            residual: true,
            activation: Activation::Relu6,
            ..base.clone()
        },
        true,
        true,
    ));
    cases.push((
        "asymmetric padding".into(),
        Conv2d {
            padding: Padding2d {
                top: 0,
                left: 2,
                bottom: 1,
                right: 0,
            },
            ..base.clone()
        },
        true,
        false,
    ));
    for (i, (what, p, bias, batch_norm)) in cases.into_iter().enumerate() {
        let case = Case {
            input,
            conv: p,
            bias,
            batch_norm,
        };
        for path in paths(precision, i) {
            let name = format!("{what} {path:?}");
            let err = check_on(&gpu, &name, &case, 500 + i as u64, Some(path), precision);
            let e = worst.entry(kind(path)).or_insert(0.0f32);
            *e = e.max(err);
        }
    }
    report(&format!("epilogues ({precision})"), &worst);
}

#[test]
fn winograd_epilogue_should_match_reference() {
    check_epilogues(Precision::F32);
}

#[test]
fn winograd_epilogue_in_f16_should_match_reference() {
    check_epilogues(Precision::F16);
}

/// UNet-sized reductions (64 and 256 input channels), where the products are long: the error stays within the f32
/// tolerance on every tile (README's per-path errors come from here and the tests above).
fn check_long_reductions(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    let mut worst = HashMap::new();
    let mut tiled = HashMap::new();
    for (i, (cin, side)) in [(64, 20), (256, 9)].into_iter().enumerate() {
        let case = Case {
            input: Shape::new(1, cin, side, side + 3),
            conv: conv(cin, 12, 3, 1, 1, 1, 1),
            bias: true,
            batch_norm: true,
        };
        for path in paths(precision, 3) {
            let err = check_on(
                &gpu,
                &format!("{cin} channels {path:?}"),
                &case,
                600 + i as u64,
                Some(path),
                precision,
            );
            let e = worst.entry(kind(path)).or_insert(0.0f32);
            *e = e.max(err);
        }
        // The direct tiled kernel on the same data, for the README's comparison.
        let direct = Path::Tiled {
            channels: 8,
            pixels: 8,
            f16_math: false,
        };
        let err = check_on(
            &gpu,
            &format!("{cin} channels tiled"),
            &case,
            600 + i as u64,
            Some(direct),
            precision,
        );
        let e = tiled.entry("tiled 8x8".to_string()).or_insert(0.0f32);
        *e = e.max(err);
    }
    report(&format!("long reductions ({precision})"), &worst);
    report(&format!("long reductions ({precision})"), &tiled);
}

#[test]
fn winograd_should_match_reference_on_long_reductions() {
    check_long_reductions(Precision::F32);
}

#[test]
fn winograd_in_f16_should_match_reference_on_long_reductions() {
    check_long_reductions(Precision::F16);
}

/// Winograd is never chosen for strided, dilated, grouped or non-3x3 convs, even when forced; Auto takes F(4x4) for
/// 3x3 convs of at least 16 channels on maps of at least 8 x 8 on any adapter, its product tile sized to the pass and
/// the adapter; not on smaller maps or fewer channels; F(4x4) stays f32 math; scratch beyond the cap falls back to the
/// direct kernels.
#[test]
fn winograd_should_be_chosen_only_where_it_applies_and_pays() {
    use WinogradPolicy::{Always, Auto, Never};
    let gpu_like = 1 << 16;
    let cpu_like = 16;
    let is_wino = |p: Path| matches!(p, Path::Winograd { .. });
    let unet = conv(64, 64, 3, 1, 1, 1, 1);
    let at = |c, s| Shape::new(1, c, s, s);
    let choose = conv2d::choose_with;
    for parallelism in [gpu_like, cpu_like] {
        for side in [128, 32, 8] {
            let path = choose(&unet, at(64, side), parallelism, Auto);
            let chunk = winograd::Chunking::new(&unet, at(64, side), 4)
                .unwrap()
                .chunk;
            let (channels, pixels) = winograd::gemm_tile(64, chunk, 4, parallelism);
            let want = Path::Winograd {
                tile: 4,
                channels,
                pixels,
                f16_math: false,
            };
            assert_eq!(path, want, "{side} x {side} for {parallelism} threads");
            assert_eq!(conv2d::choose(&unet, at(64, side), parallelism), path);
            assert!(!path.with_f16_math(true).f16_math());
        }
    }
    // Product tiles: the most tiles per thread on a CPU adapter (8 from 64 tiles), fewer where a GPU needs threads,
    // one where a pass has too few tiles for 8 threads of 2.
    assert_eq!(winograd::gemm_tile(64, 64, 4, cpu_like), (8, 8));
    assert_eq!(winograd::gemm_tile(64, 910, 4, gpu_like), (8, 4));
    assert_eq!(winograd::gemm_tile(64, 64, 4, gpu_like), (8, 1));
    assert_eq!(winograd::gemm_tile(64, 15, 4, cpu_like), (8, 1));
    assert_eq!(winograd::gemm_tile(4, 64, 2, cpu_like), (4, 8));
    assert!(wino(2, (8, 4), false).with_f16_math(true).f16_math());
    // Not on small maps, few channels; unless forced.
    assert!(!is_wino(choose(&unet, at(64, 7), gpu_like, Auto)));
    let narrow = conv(12, 64, 3, 1, 1, 1, 1);
    assert!(!is_wino(choose(&narrow, at(12, 128), gpu_like, Auto)));
    assert!(is_wino(choose(&narrow, at(12, 7), cpu_like, Always)));
    assert!(!is_wino(choose(&unet, at(64, 128), gpu_like, Never)));
    // Never where it does not apply, even forced.
    let never = [
        conv(64, 64, 3, 2, 1, 1, 1),
        conv(64, 64, 3, 1, 2, 2, 1),
        conv(64, 64, 3, 1, 1, 1, 2),
        conv(64, 64, 3, 1, 1, 1, 64),
        conv(64, 64, 1, 1, 0, 1, 1),
        conv(64, 64, 5, 1, 2, 1, 1),
    ];
    for p in &never {
        assert!(!winograd::applies(p), "{p:?}");
        for policy in [Auto, Always] {
            let path = choose(p, at(64, 128), gpu_like, policy);
            assert!(!is_wino(path), "{p:?}: {path:?}");
        }
    }
    // Large maps run in passes whose scratch stays within the chunk budget; beyond the most passes, the direct
    // kernels.
    let chunking = winograd::Chunking::new(&unet, at(64, 256), 4).unwrap();
    assert_eq!(chunking.tiles, 64 * 64);
    assert!(chunking.passes() > 1, "{chunking:?}");
    for bytes in winograd::scratch_bytes(&unet, at(64, 256), 4).unwrap() {
        assert!(bytes <= winograd::CHUNK_BYTES, "{bytes}");
    }
    let huge = at(64, 1024);
    assert!(
        winograd::Chunking::new(&unet, huge, 4).unwrap().passes() > conv2d::WINOGRAD_MAX_PASSES
    );
    assert!(!is_wino(choose(&unet, huge, gpu_like, Always)));
}

/// Maps too large for one pair of scratch buffers run in passes over chunks of tiles through the same buffers
/// (poisoned before the run): 256 input channels at 61 x 67 take 3 passes with F(2x2) (512, 512 and 30 tiles) and 2
/// with F(4x4) (227 and 45).
fn check_passes(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    let p = conv(256, 12, 3, 1, 1, 1, 1);
    let input = Shape::new(1, 256, 61, 67);
    let case = Case {
        input,
        conv: Conv2d {
            residual: true,
            activation: Activation::Relu,
            out_channel_offset: 1,
            out_channels_total: Some(14),
            ..p.clone()
        },
        bias: true,
        batch_norm: true,
    };
    for (tile, passes) in [(2, 3), (4, 2)] {
        let c = winograd::Chunking::new(&p, input, tile).unwrap();
        assert_eq!(c.passes(), passes, "F({tile}): {c:?}");
        let path = wino(
            tile,
            winograd::gemm_tile(12, c.chunk, tile, gpu.parallelism()),
            false,
        );
        let kernels =
            conv2d::conv2d_on(&gpu, "passes", &case.conv, input, path, precision).unwrap();
        let conv2d::Conv2dKernels::Winograd(w) = &kernels else {
            panic!("{kernels:?}");
        };
        assert_eq!(w.passes.len(), passes);
        check_on(
            &gpu,
            &format!("{passes} passes {path:?}"),
            &case,
            700 + tile as u64,
            Some(path),
            precision,
        );
    }
}

#[test]
fn winograd_in_passes_should_match_reference() {
    check_passes(Precision::F32);
}

#[test]
fn winograd_in_passes_in_f16_should_match_reference() {
    check_passes(Precision::F16);
}

/// Winograd kernels refuse what they cannot compute, by name: a strided conv, F(4x4) with f16 math, an unknown tile.
#[test]
fn winograd_should_refuse_what_it_cannot_compute() {
    let gpu = gpu_or_skip!();
    let x = Shape::new(1, 8, 9, 9);
    let strided = conv(8, 8, 3, 2, 1, 1, 1);
    let err = conv2d::conv2d_on(
        &gpu,
        "s2",
        &strided,
        x,
        wino(2, (4, 4), false),
        Precision::F32,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("s2") && err.to_string().contains("stride"),
        "{err}"
    );
    let plain = conv(8, 8, 3, 1, 1, 1, 1);
    let err = conv2d::conv2d_on(
        &gpu,
        "t3",
        &plain,
        x,
        wino(3, (4, 4), false),
        Precision::F32,
    )
    .unwrap_err();
    assert!(err.to_string().contains("F(3x3"), "{err}");
    if gpu.supports(Precision::F16) {
        let err = conv2d::conv2d_on(&gpu, "f4", &plain, x, wino(4, (4, 4), true), Precision::F16)
            .unwrap_err();
        assert!(
            err.to_string().contains("F(4x4, 3x3) has no f16 math"),
            "{err}"
        );
    }
    let w = weights(&mut rng(1), &strided, true, false);
    assert!(conv2d::fold_for(&strided, &w, wino(2, (4, 4), false)).is_err());
}

/// A UNet-like graph of 3x3 convs (batch norm, ReLU, a fused residual, a fused concat, a valid conv with partial
/// edge tiles, a 1x1 head) gives the same output with Winograd forced on as with it off, both matching the CPU
/// executor, and the plan with it on really runs it, with its scratch in the memory plan.
#[test]
fn plans_should_match_with_winograd_forced_on_and_off() {
    let gpu = gpu_or_skip!();
    let _policy = policy_lock();
    // unet_like's four 3x3 convs; one 512-channel conv in two passes (121 tiles of 4 x 4, 113 a pass).
    check_plans(&gpu, &unet_like(7), Shape::new(1, 8, 19, 23), 4);
    check_plans(&gpu, &wide(8), Shape::new(1, 512, 44, 44), 2);
}

/// Held by the tests that compile plans under the process-wide Winograd policy (one sets it while the other needs
/// the default), since tests run side by side.
fn policy_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// [`plans_should_match_with_winograd_forced_on_and_off`] for one model: `passes` Winograd passes in all when
/// forced on.
fn check_plans(gpu: &Arc<Gpu>, model: &Model, input: Shape, passes: usize) {
    let x = random_tensor(&mut rng(8), input);
    let want =
        reference::run_graph(model, &HashMap::from([("input".to_string(), x.clone())])).unwrap();
    let mut precisions = vec![Precision::F32];
    if gpu.supports(Precision::F16) {
        precisions.push(Precision::F16);
    }
    for precision in precisions {
        let mut outputs = vec![];
        for policy in [WinogradPolicy::Never, WinogradPolicy::Always] {
            conv2d::set_winograd_policy(Some(policy));
            let plan = compile(gpu, model, input, precision);
            conv2d::set_winograd_policy(None);
            let labels: Vec<&str> = plan.kernels().map(|k| k.label()).collect();
            let wino = labels
                .iter()
                .filter(|l| l.contains("winograd") && l.contains("output"))
                .count();
            let expected = if policy == WinogradPolicy::Always {
                passes
            } else {
                0
            };
            assert_eq!(wino, expected, "{policy:?} {precision}: {labels:?}");
            let m = plan.memory();
            assert!(m.planned_bytes >= m.lower_bound_bytes, "{m:?}");
            let got = plan.run(&[("input", &x)], &["out"]).unwrap();
            let what = format!("{policy:?} {precision}");
            let (Output::F32(g), Output::F32(w)) = (&got["out"], &want["out"]) else {
                panic!("{what}: f32 outputs expected");
            };
            assert_eq!(g.shape, w.shape, "{what}");
            let tol = match precision {
                Precision::F32 => 1e-4,
                Precision::F16 => 2e-3,
            };
            assert_close_tol(&what, &g.data, &w.data, tol);
            outputs.push(g.data.clone());
        }
        let tol = match precision {
            Precision::F32 => 1e-4,
            Precision::F16 => 4e-3,
        };
        assert_close_tol(
            &format!("Winograd on vs off ({precision})"),
            &outputs[1],
            &outputs[0],
            tol,
        );
    }
}

fn compile(gpu: &Arc<Gpu>, model: &Model, input: Shape, precision: Precision) -> Plan {
    Plan::compile(
        gpu.clone(),
        model,
        &HashMap::from([("input".to_string(), input)]),
        PlanOptions {
            precision,
            f16_math: Some(false),
            ..Default::default()
        },
        &WeightCache::default(),
    )
    .unwrap()
}

/// Four 3x3 stride-1 convs (three padded by 1, one valid) and a 1x1 head: conv-BN-ReLU, a conv whose
/// residual add and ReLU fuse into its epilogue, a conv writing into a concat with the first, a valid 3x3 on the
/// concat (partial edge tiles), and a 1x1 head.
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

/// One 3x3 conv of 512 channels down to 8 with a batch norm and ReLU: two passes of F(2x2) at 40 x 40 (256 and 144
/// tiles).
fn wide(seed: u64) -> Model {
    let mut r = rng(seed);
    let mut b = GraphBuilder::new();
    let x = b.input("input", 512);
    let p = conv(512, 8, 3, 1, 1, 1, 1);
    let w = conv_weights(&mut r, p.weight_shape(), 8, true, true);
    let y = b.conv2d("wide", &x, p, w).unwrap();
    b.activation("out", &y, Activation::Relu);
    b.finish(&["out"]).unwrap()
}

/// Winograd's transformed weights are 4x the conv's (F(4x4)): on a device whose storage bindings cannot hold them
/// (here 1 MiB: a 128 -> 128 3x3 conv's own weights take 576 KiB, transformed 2.25 MiB), an untuned plan runs the
/// conv with the direct kernels rather than failing, and still matches the reference; on the full device the same
/// plan takes Winograd.
#[test]
fn winograd_weights_too_large_for_the_device_should_fall_back_to_direct_kernels() {
    let gpu = gpu_or_skip!();
    let _policy = policy_lock();
    let mut r = rng(9);
    let mut b = GraphBuilder::new();
    let x = b.input("input", 128);
    let p = conv(128, 128, 3, 1, 1, 1, 1);
    let w = conv_weights(&mut r, p.weight_shape(), 128, true, false);
    b.conv2d("out", &x, p, w).unwrap();
    let model = b.finish(&["out"]).unwrap();
    let input = Shape::new(1, 128, 12, 12);

    let small = app_device(&gpu, |limits| wgpu::Limits {
        max_storage_buffer_binding_size: 1 << 20,
        ..limits
    });

    let x = random_tensor(&mut rng(10), input);
    let want =
        reference::run_graph(&model, &HashMap::from([("input".to_string(), x.clone())])).unwrap();
    let Output::F32(want) = &want["out"] else {
        panic!("an f32 reference")
    };
    for (device, winograd) in [(&gpu, true), (&small, false)] {
        let plan = compile(device, &model, input, Precision::F32);
        let labels: Vec<&str> = plan.kernels().map(|k| k.label()).collect();
        assert_eq!(
            labels.iter().any(|l| l.contains("winograd")),
            winograd,
            "{labels:?}"
        );
        let got = plan.run(&[("input", &x)], &["out"]).unwrap();
        let Output::F32(got) = &got["out"] else {
            panic!("an f32 output")
        };
        assert_close_tol(&format!("{labels:?}"), &got.data, &want.data, 1e-4);
    }
}
