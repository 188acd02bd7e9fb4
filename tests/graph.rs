//! Graphs built with the builder, compiled into plans, run on the GPU and compared with the CPU executor.

mod common;

use atrous::gpu::Precision;
use atrous::graph::GraphBuilder;
use atrous::ops::{
    Activation, AvgPool2d, Binary, BinaryOp, Conv2d, ConvTranspose2d, ConvWeights,
    CoordinateTransform, GroupNorm, MaxPool2d, MaxUnpool2d, NearestRounding, PadMode, Padding2d,
    Pointwise, Resize, ResizeMode, ResizeTarget, SlicePad,
};
use atrous::plan::{Output, Plan, PlanOptions, WeightCache};
use atrous::{reference, Engine, Gpu, Model, Shape, Tensor};
use common::*;
use std::collections::HashMap;
use std::sync::Arc;

fn conv(cin: usize, cout: usize, k: usize, pad: usize, dilation: usize) -> Conv2d {
    Conv2d {
        padding: Padding2d::uniform(pad),
        dilation: [dilation, dilation],
        ..Conv2d::new(cin, cout, [k, k])
    }
}

/// A ResNet-and-ASPP-like network: residual block, pooling, parallel dilated branches concatenated with a
/// broadcast image-pool branch, squeeze-excitation, upsampling, softmax and argmax.
fn deeplab_like(seed: u64) -> Model {
    let mut rng = rng(seed);
    let mut b = GraphBuilder::new();
    let x = b.input("input", 3);
    let mut add_conv =
        |b: &mut GraphBuilder, name: &str, x: &str, p: Conv2d, bias: bool, bn: bool| {
            let w = conv_weights(&mut rng, p.weight_shape(), p.out_channels, bias, bn);
            b.conv2d(name, x, p, w).unwrap()
        };
    let stem = add_conv(
        &mut b,
        "stem",
        &x,
        Conv2d {
            stride: [2, 2],
            ..conv(3, 8, 3, 1, 1)
        },
        false,
        true,
    );
    let stem = b.activation("stem_relu", &stem, Activation::Relu);
    let pooled = b.max_pool2d(
        "pool",
        &stem,
        MaxPool2d {
            stride: [2, 2],
            padding: [1, 1],
            ..MaxPool2d::new([3, 3])
        },
    );
    let c1 = add_conv(
        &mut b,
        "block.conv1",
        &pooled,
        conv(8, 8, 3, 1, 1),
        false,
        true,
    );
    let c1 = b.activation("block.relu1", &c1, Activation::Relu);
    let c2 = add_conv(&mut b, "block.conv2", &c1, conv(8, 8, 3, 2, 2), false, true);
    let sum = b.add("block.add", &c2, &pooled);
    let block = b.activation("block.relu", &sum, Activation::Relu);
    let a0 = add_conv(&mut b, "aspp.0", &block, conv(8, 6, 1, 0, 1), false, true);
    let a0 = b.activation("aspp.0.relu", &a0, Activation::Relu);
    let a1 = add_conv(&mut b, "aspp.1", &block, conv(8, 6, 3, 3, 3), false, true);
    let a1 = b.activation("aspp.1.relu", &a1, Activation::Relu);
    let gp = b.adaptive_avg_pool2d("aspp.pool", &block, [1, 1]);
    let gp = add_conv(
        &mut b,
        "aspp.pool.conv",
        &gp,
        conv(8, 6, 1, 0, 1),
        false,
        true,
    );
    let gp = b.activation("aspp.pool.relu", &gp, Activation::Relu);
    let up = |h| Resize {
        mode: ResizeMode::Bilinear {
            align_corners: false,
        },
        target: ResizeTarget::Size(h),
    };
    let shape = b.adaptive_avg_pool2d("probe", &block, [5, 6]); // a non-conv input to the concat
    let gp = b.resize("aspp.pool.up", &gp, up([5, 6]));
    let cat = b.concat("aspp.cat", &[&a0, &a1, &gp, &shape]);
    let proj = add_conv(
        &mut b,
        "aspp.project",
        &cat,
        conv(26, 12, 1, 0, 1),
        false,
        true,
    );
    let proj = b.activation("aspp.project.relu", &proj, Activation::Relu);
    // squeeze-excitation
    let se = b.adaptive_avg_pool2d("se.pool", &proj, [1, 1]);
    let se = add_conv(
        &mut b,
        "se.fc1",
        &se,
        Conv2d {
            activation: Activation::Relu,
            ..conv(12, 4, 1, 0, 1)
        },
        true,
        false,
    );
    let se = add_conv(
        &mut b,
        "se.fc2",
        &se,
        Conv2d {
            activation: Activation::Hardsigmoid,
            ..conv(4, 12, 1, 0, 1)
        },
        true,
        false,
    );
    let scaled = b.mul("se.scale", &proj, &se);
    let logits = add_conv(&mut b, "head", &scaled, conv(12, 5, 1, 0, 1), true, false);
    let out = b.resize("out", &logits, up([19, 23]));
    let probs = b.softmax("probs", &out);
    let classes = b.argmax("classes", &out);
    let _ = (probs, classes);
    b.finish(&["out", "probs", "classes"]).unwrap()
}

/// A UNet/SegNet-like network: pooling with indices and unpooling, transposed convolution, skip concatenation.
fn unet_like(seed: u64) -> Model {
    let mut r = rng(seed);
    let mut b = GraphBuilder::new();
    let x = b.input("input", 3);
    let mut w =
        |p: &Conv2d, bias, bn| conv_weights(&mut r, p.weight_shape(), p.out_channels, bias, bn);
    let p = Conv2d {
        activation: Activation::Relu,
        ..conv(3, 6, 3, 1, 1)
    };
    let e1 = b.conv2d("enc1", &x, p.clone(), w(&p, false, true)).unwrap();
    let (pooled, indices) = b.max_pool2d_with_indices("down", &e1, MaxPool2d::new([2, 2]));
    let p2 = Conv2d {
        activation: Activation::Relu6,
        ..conv(6, 6, 3, 1, 1)
    };
    let e2 = b
        .conv2d("enc2", &pooled, p2.clone(), w(&p2, true, false))
        .unwrap();
    let unpooled = b.max_unpool2d("unpool", &e2, &indices, MaxUnpool2d::new([2, 2]));
    let t = ConvTranspose2d {
        activation: Activation::Relu,
        ..ConvTranspose2d::new(6, 4, [2, 2], [2, 2])
    };
    let tw = {
        let mut r = rng(seed + 1);
        conv_weights(&mut r, t.weight_shape(), 4, true, true)
    };
    let upsampled = b.conv_transpose2d("up", &e2, t, tw).unwrap();
    let avg = b.avg_pool2d(
        "smooth",
        &e1,
        AvgPool2d {
            stride: [1, 1],
            padding: [1, 1],
            ..AvgPool2d::new([3, 3])
        },
    );
    let cat = b.concat("cat", &[&e1, &upsampled, &unpooled, &avg]);
    let p3 = conv(22, 2, 3, 1, 1);
    let logits = b
        .conv2d("head", &cat, p3.clone(), w(&p3, true, false))
        .unwrap();
    b.activation("out", &logits, Activation::Sigmoid);
    b.finish(&["out"]).unwrap()
}

fn compile(gpu: &Arc<Gpu>, model: &Model, input: Shape, fuse: bool) -> Plan {
    let options = PlanOptions {
        fuse,
        ..Default::default()
    };
    compile_in(gpu, model, input, options)
}

fn compile_in(gpu: &Arc<Gpu>, model: &Model, input: Shape, options: PlanOptions) -> Plan {
    let shapes = HashMap::from([("input".to_string(), input)]);
    Plan::compile(
        gpu.clone(),
        model,
        &shapes,
        options,
        &WeightCache::default(),
    )
    .unwrap()
}

/// Whole graphs in f16 (every op family, fused and unfused, odd element counts, f32 and f16 conv math) against the
/// f64 CPU executor, and an activation memory plan of half the f32 one.
#[test]
fn graphs_in_f16_should_match_cpu_executor_in_half_the_memory() {
    let gpu = gpu_or_skip!(Precision::F16);
    for (what, model, input) in [
        ("deeplab-like", deeplab_like(1), Shape::new(1, 3, 19, 23)),
        (
            "deeplab-like batch 2",
            deeplab_like(3),
            Shape::new(2, 3, 17, 21),
        ),
        ("unet-like", unet_like(5), Shape::new(1, 3, 12, 14)),
    ] {
        let x = random_tensor(&mut rng(7), input);
        let want = reference::run_graph(&model, &HashMap::from([("input".to_string(), x.clone())]))
            .unwrap();
        let outputs: Vec<&str> = model.graph.outputs.iter().map(String::as_str).collect();
        for (fuse, f16_math) in [(true, false), (false, false), (true, true), (false, true)] {
            let options = PlanOptions {
                fuse,
                ..f16_options(f16_math)
            };
            let plan = compile_in(&gpu, &model, input, options);
            assert_eq!(plan.precision(), Precision::F16);
            assert_eq!(plan.f16_math(), f16_math);
            if plan.can_profile() {
                // `atrous bench` profiles the plan: its upload must be converted like a run's.
                let times = plan.profile(&[("input", &x)]).unwrap();
                assert_eq!(times.len(), plan.dispatches());
            }
            let got = plan.run(&[("input", &x)], &outputs).unwrap();
            for (name, w) in &want {
                let what = format!("{what} fuse={fuse} ({}): {name}", numerics(&options));
                match (&got[name], w) {
                    (Output::F32(g), Output::F32(w)) => {
                        assert_close_tol(&what, &g.data, &w.data, GRAPH_F16_TOLERANCE)
                    }
                    (Output::U32 { data: g, .. }, Output::U32 { data: w, .. }) => {
                        let same = g.iter().zip(w).filter(|(a, b)| a == b).count();
                        assert!(
                            same * 100 >= w.len() * 99,
                            "{what}: {same} of {} agree",
                            w.len()
                        );
                    }
                    _ => panic!("{what}: output types differ"),
                }
            }
            let f32_plan = compile(&gpu, &model, input, fuse);
            let (half, full) = (plan.memory(), f32_plan.memory());
            // Float tensors halve; u32 ones (indices, the class map) and the 4-byte rounding of odd f16 counts
            // keep the plan a little above half.
            for (h, f) in [
                (half.planned_bytes, full.planned_bytes),
                (half.lower_bound_bytes, full.lower_bound_bytes),
            ] {
                assert!(
                    h * 2 >= f && h * 5 <= f * 3,
                    "{what}: f16 plan {half:?} vs f32 {full:?}"
                );
            }
        }
    }
}

/// Whole-graph f16 tolerance relative to max(1, max |reference|), with either conv math: a few convolutions deep,
/// each rounding its output and weights to f16 (and with f16 math, its products and chunk sums; these graphs'
/// reductions are short, so both reach about 4.8e-4).
const GRAPH_F16_TOLERANCE: f32 = 2e-3;

/// f16 math is a choice of f16 plans: an f32 plan refuses it by name, and leaves it off when it is automatic.
#[test]
fn f16_math_should_need_an_f16_plan() {
    let gpu = gpu_or_skip!();
    let model = deeplab_like(1);
    let shapes = HashMap::from([("input".to_string(), Shape::new(1, 3, 19, 23))]);
    let compile = |f16_math| {
        let options = PlanOptions {
            f16_math,
            ..Default::default()
        };
        Plan::compile(
            gpu.clone(),
            &model,
            &shapes,
            options,
            &WeightCache::default(),
        )
    };
    let err = compile(Some(true)).unwrap_err().to_string();
    assert!(
        err.contains("f16_math") && err.contains("f16 storage"),
        "{err}"
    );
    assert!(!compile(None).unwrap().f16_math());
    assert!(!compile(Some(false)).unwrap().f16_math());
}

fn assert_outputs_match(
    what: &str,
    got: &HashMap<String, Output>,
    want: &HashMap<String, Output>,
    rel: f32,
) {
    for (name, want) in want {
        match (&got[name], want) {
            (Output::F32(g), Output::F32(w)) => {
                assert_eq!(g.shape, w.shape, "{what}: {name}");
                assert_close_tol(&format!("{what}: {name}"), &g.data, &w.data, rel);
            }
            (Output::U32 { data: g, .. }, Output::U32 { data: w, .. }) => {
                let same = g.iter().zip(w).filter(|(a, b)| a == b).count();
                // Argmax may flip where two logits tie to within f32 rounding.
                assert!(
                    same * 1000 >= w.len() * 999,
                    "{what}: {name}: {same} of {} agree",
                    w.len()
                );
            }
            _ => panic!("{what}: {name}: output types differ"),
        }
    }
}

fn check_model(gpu: &Arc<Gpu>, what: &str, model: &Model, input: Shape, seed: u64) {
    let x = random_tensor(&mut rng(seed), input);
    let want =
        reference::run_graph(model, &HashMap::from([("input".to_string(), x.clone())])).unwrap();
    let outputs: Vec<&str> = model.graph.outputs.iter().map(String::as_str).collect();
    let fused = compile(gpu, model, input, true);
    let unfused = compile(gpu, model, input, false);
    assert!(
        fused.dispatches() < unfused.dispatches(),
        "{what}: fusion should remove dispatches ({} vs {})",
        fused.dispatches(),
        unfused.dispatches()
    );
    let got_fused = fused.run(&[("input", &x)], &outputs).unwrap();
    let got_unfused = unfused.run(&[("input", &x)], &outputs).unwrap();
    assert_outputs_match(&format!("{what} fused vs CPU"), &got_fused, &want, 1e-4);
    assert_outputs_match(&format!("{what} unfused vs CPU"), &got_unfused, &want, 1e-4);
    assert_outputs_match(
        &format!("{what} fused vs unfused"),
        &got_fused,
        &got_unfused,
        1e-4,
    );
    let m = fused.memory();
    assert!(
        m.planned_bytes >= m.lower_bound_bytes && m.lower_bound_bytes > 0,
        "{m:?}"
    );
}

#[test]
fn deeplab_like_graph_should_match_cpu_executor() {
    let gpu = gpu_or_skip!();
    check_model(
        &gpu,
        "deeplab-like",
        &deeplab_like(1),
        Shape::new(1, 3, 19, 23),
        2,
    );
}

/// FPN's segmentation block: conv, group norm, ReLU (fused into the norm), bilinear x2, added to a lateral conv.
fn group_norm_block(seed: u64) -> Model {
    let mut r = rng(seed);
    let mut b = GraphBuilder::new();
    let x = b.input("input", 3);
    let p = conv(3, 8, 3, 1, 1);
    let w = conv_weights(&mut r, p.weight_shape(), 8, false, false);
    let y = b.conv2d("conv", &x, p, w).unwrap();
    let gamma = random_vec(&mut r, 8).iter().map(|v| v + 1.5).collect();
    let y = b
        .group_norm("gn", &y, GroupNorm::new(4, 8), gamma, random_vec(&mut r, 8))
        .unwrap();
    let y = b.activation("gn.relu", &y, Activation::Relu);
    let up = b.resize(
        "up",
        &y,
        Resize {
            mode: ResizeMode::Bilinear {
                align_corners: true,
            },
            target: ResizeTarget::Scale([2.0, 2.0]),
        },
    );
    let pooled = b.resize(
        "lateral.in",
        &x,
        Resize {
            mode: ResizeMode::Nearest,
            target: ResizeTarget::Scale([2.0, 2.0]),
        },
    );
    let lp = conv(3, 8, 1, 0, 1);
    let lw = conv_weights(&mut r, lp.weight_shape(), 8, true, false);
    let lateral = b.conv2d("lateral", &pooled, lp, lw).unwrap();
    b.add("out", &up, &lateral);
    b.finish(&["out"]).unwrap()
}

#[test]
fn group_norm_graph_should_match_cpu_executor() {
    let gpu = gpu_or_skip!();
    let model = group_norm_block(21);
    check_model(
        &gpu,
        "group norm block",
        &model,
        Shape::new(2, 3, 11, 14),
        22,
    );
    let fused = compile(&gpu, &model, Shape::new(1, 3, 8, 8), true);
    let labels: Vec<String> = fused.kernels().map(|k| k.label().to_string()).collect();
    assert!(
        !labels.iter().any(|l| l.contains("gn.relu")),
        "the ReLU should run in the group norm: {labels:?}"
    );
}

#[test]
fn batch_two_should_match_cpu_executor() {
    let gpu = gpu_or_skip!();
    check_model(
        &gpu,
        "deeplab-like batch 2",
        &deeplab_like(3),
        Shape::new(2, 3, 17, 21),
        4,
    );
}

#[test]
fn unet_like_graph_should_match_cpu_executor() {
    let gpu = gpu_or_skip!();
    check_model(
        &gpu,
        "unet-like",
        &unet_like(5),
        Shape::new(1, 3, 12, 14),
        6,
    );
}

#[test]
fn only_requested_outputs_should_be_read_back() {
    let gpu = gpu_or_skip!();
    let model = deeplab_like(7);
    let plan = compile(&gpu, &model, Shape::new(1, 3, 19, 23), true);
    let x = random_tensor(&mut rng(8), Shape::new(1, 3, 19, 23));
    let got = plan.run(&[("input", &x)], &["classes"]).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got["classes"].shape(), Shape::new(1, 1, 19, 23));
    let err = plan
        .run(&[("input", &x)], &["stem"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"stem\" is not a graph output"), "{err}");
    let wrong = random_tensor(&mut rng(9), Shape::new(1, 3, 20, 23));
    let err = plan
        .run(&[("input", &wrong)], &["out"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("compiled for 1x3x19x23"), "{err}");
}

#[test]
fn plans_of_one_engine_should_share_weights_and_run_from_threads() {
    let gpu = gpu_or_skip!();
    let model = deeplab_like(10);
    let convs = model
        .graph
        .nodes
        .iter()
        .filter(|n| n.op.weight_names().is_some())
        .count();
    let engine = Engine::new(gpu.clone(), model);
    // Both sizes reach the 5 x 6 map the model's fixed-size branches expect.
    let small = random_tensor(&mut rng(11), Shape::new(1, 3, 17, 21));
    let large = random_tensor(&mut rng(12), Shape::new(2, 3, 19, 23));
    let want_small = engine.run(&[("input", &small)], &["out"]).unwrap();
    assert_eq!(engine.weight_cache().len(), convs);
    let want_large = engine.run(&[("input", &large)], &["out"]).unwrap();
    assert_eq!(
        engine.weight_cache().len(),
        convs,
        "a second plan must reuse the uploaded weights"
    );
    std::thread::scope(|s| {
        for i in 0..4 {
            let (engine, small, large) = (&engine, &small, &large);
            let (want_small, want_large) = (&want_small, &want_large);
            s.spawn(move || {
                let (x, want) = if i % 2 == 0 {
                    (small, want_small)
                } else {
                    (large, want_large)
                };
                let got = engine.run(&[("input", x)], &["out"]).unwrap();
                assert_eq!(got["out"], want["out"], "thread {i}");
            });
        }
    });
}

#[test]
fn portable_format_should_round_trip() {
    let gpu = gpu_or_skip!();
    let dir = std::env::temp_dir().join(format!("atrous-roundtrip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    let mut model = unet_like(13);
    model.info.labels = vec!["background".into(), "thing".into()];
    model.save(&path).unwrap();
    let loaded = Model::load(&path).unwrap();
    assert_eq!(loaded.graph, model.graph);
    assert_eq!(loaded.info, model.info);
    let x = random_tensor(&mut rng(14), Shape::new(1, 3, 10, 12));
    let a = Engine::new(gpu.clone(), model)
        .run(&[("input", &x)], &["out"])
        .unwrap();
    let b = Engine::new(gpu.clone(), loaded)
        .run(&[("input", &x)], &["out"])
        .unwrap();
    assert_eq!(a, b, "a saved and reloaded model gives identical results");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn binary_with_broadcast_should_not_fuse_as_residual() {
    let gpu = gpu_or_skip!();
    let mut rng = rng(15);
    let mut b = GraphBuilder::new();
    let x = b.input("input", 4);
    let p = conv(4, 4, 3, 1, 1);
    let c = b
        .conv2d(
            "c",
            &x,
            p.clone(),
            conv_weights(&mut rng, p.weight_shape(), 4, true, false),
        )
        .unwrap();
    let g = b.adaptive_avg_pool2d("g", &x, [1, 1]);
    b.binary(
        "out",
        &c,
        &g,
        Binary {
            op: BinaryOp::Add,
            activation: Activation::Relu,
        },
    );
    let model = b.finish(&["out"]).unwrap();
    check_model_simple(&gpu, &model, Shape::new(2, 4, 7, 9));
}

fn check_model_simple(gpu: &Arc<Gpu>, model: &Model, input: Shape) {
    let x = random_tensor(&mut rng(16), input);
    let want =
        reference::run_graph(model, &HashMap::from([("input".to_string(), x.clone())])).unwrap();
    let got = compile(gpu, model, input, true)
        .run(&[("input", &x)], &["out"])
        .unwrap();
    assert_outputs_match("simple", &got, &want, 1e-4);
}

#[test]
fn input_tensor_values_are_what_the_cpu_executor_sees() {
    // The CPU executor itself: a 1x1 conv with weight 2 and bias 1 doubles and shifts.
    let mut b = GraphBuilder::new();
    let x = b.input("input", 1);
    let w = ConvWeights {
        weight: vec![2.0],
        bias: Some(vec![1.0]),
        batch_norm: None,
    };
    b.conv2d("out", &x, Conv2d::new(1, 1, [1, 1]), w).unwrap();
    let model = b.finish(&["out"]).unwrap();
    let t = Tensor::new(Shape::new(1, 1, 1, 2), vec![3.0, -1.0]).unwrap();
    let out = reference::run_graph(&model, &HashMap::from([("input".to_string(), t)])).unwrap();
    assert_eq!(out["out"].to_f32().data, vec![7.0, -1.0]);
}

#[test]
fn resize_like_should_follow_the_size_the_graph_runs_at() {
    let gpu = gpu_or_skip!();
    let mut r = rng(17);
    let mut b = GraphBuilder::new();
    let x = b.input("input", 3);
    let p = Conv2d {
        stride: [2, 2],
        ..conv(3, 4, 3, 1, 1)
    };
    let w = conv_weights(&mut r, p.weight_shape(), 4, true, false);
    let c = b.conv2d("c", &x, p, w).unwrap();
    let pooled = b.adaptive_avg_pool2d("g", &c, [1, 1]);
    let mode = ResizeMode::Bilinear {
        align_corners: false,
    };
    let g = b.resize_like("g.up", &pooled, &c, mode);
    let sum = b.add("sum", &c, &g);
    b.resize_like("out", &sum, &x, mode);
    let model = b.finish(&["out"]).unwrap();
    for input in [Shape::new(1, 3, 13, 17), Shape::new(2, 3, 8, 5)] {
        let out = compile(&gpu, &model, input, true)
            .run(&[("input", &random_tensor(&mut rng(18), input))], &["out"])
            .unwrap();
        assert_eq!(out["out"].shape(), input.with_c(4));
        check_model_simple(&gpu, &model, input);
    }
}

/// A plan compiled as for a device with many more threads than these tiny shapes fill: long-reduction convs run
/// split-K, with their scratch buffers in the memory plan, fused into residual (one in place), activation and
/// concat epilogues.
#[test]
fn split_k_convs_in_a_plan_should_match_cpu_executor() {
    let gpu = gpu_or_skip!();
    let mut weights_rng = rng(11);
    let mut b = GraphBuilder::new();
    let x = b.input("input", 256);
    let mut add_conv = |b: &mut GraphBuilder, name: &str, x: &str, p: Conv2d, bn: bool| {
        let w = conv_weights(&mut weights_rng, p.weight_shape(), p.out_channels, true, bn);
        b.conv2d(name, x, p, w).unwrap()
    };
    // 12 output channels: too few for the Winograd path, which would take the 3x3 convs otherwise.
    let a = add_conv(&mut b, "a", &x, conv(256, 12, 3, 2, 2), true);
    let a = b.activation("a_relu", &a, Activation::Relu);
    let c = add_conv(&mut b, "c", &x, conv(256, 12, 3, 1, 1), false);
    let s = b.add("sum", &c, &a);
    let s = b.activation("sum_relu", &s, Activation::Relu);
    // t's residual is read by nothing after it: the split-K reduction writes over it in place.
    let r = add_conv(&mut b, "r", &x, conv(256, 12, 1, 0, 1), true);
    let r = b.activation("r_relu", &r, Activation::Relu);
    let t = add_conv(&mut b, "t", &x, conv(256, 12, 3, 1, 1), false);
    let u = b.add("sum2", &t, &r);
    let cat = b.concat("cat", &[&a, &s]);
    let head = add_conv(&mut b, "head", &cat, conv(24, 3, 1, 0, 1), false);
    let side = add_conv(&mut b, "side", &u, conv(12, 3, 1, 0, 1), false);
    let out = b.add("out", &head, &side);
    let model = b.finish(&[&out]).unwrap();

    let input = Shape::new(1, 256, 9, 11);
    let plan = Plan::compile(
        gpu.clone(),
        &model,
        &HashMap::from([("input".to_string(), input)]),
        PlanOptions {
            parallelism: Some(1 << 20),
            ..Default::default()
        },
        &WeightCache::default(),
    )
    .unwrap();
    let labels: Vec<&str> = plan.kernels().map(|k| k.label()).collect();
    let split = labels
        .iter()
        .filter(|l| l.contains("split-K reduce"))
        .count();
    assert_eq!(
        split, 3,
        "the three 256-channel 3x3 convs should run split-K: {labels:?}"
    );
    let x = random_tensor(&mut rng(12), input);
    let want =
        reference::run_graph(&model, &HashMap::from([("input".to_string(), x.clone())])).unwrap();
    let got = plan.run(&[("input", &x)], &[&out]).unwrap();
    assert_outputs_match("split-K plan vs CPU", &got, &want, 1e-4);
    let m = plan.memory();
    assert!(m.planned_bytes >= m.lower_bound_bytes, "{m:?}");
}

/// Two residual blocks in a row: each block's last conv is its residual's last reader, so it writes over the
/// residual (in place) and the blocks' inputs and outputs share memory. Without that, the residual, the conv's
/// input and its output are live together in three buffers.
#[test]
fn residual_convs_should_write_over_their_residual() {
    let gpu = gpu_or_skip!();
    let mut r = rng(21);
    let mut b = GraphBuilder::new();
    let x = b.input("input", 3);
    let mut add_conv = |b: &mut GraphBuilder, name: &str, x: &str, p: Conv2d| {
        let w = conv_weights(&mut r, p.weight_shape(), p.out_channels, true, true);
        b.conv2d(name, x, p, w).unwrap()
    };
    // 12 channels: too few for the Winograd path, whose scratch buffers would dominate the memory compared here.
    let stem = add_conv(&mut b, "stem", &x, conv(3, 12, 3, 1, 1));
    let mut block_input = b.activation("stem.relu", &stem, Activation::Relu);
    for i in 0..2 {
        let c1 = add_conv(
            &mut b,
            &format!("b{i}.conv1"),
            &block_input,
            conv(12, 12, 3, 1, 1),
        );
        let c1 = b.activation(&format!("b{i}.relu1"), &c1, Activation::Relu);
        let c2 = add_conv(&mut b, &format!("b{i}.conv2"), &c1, conv(12, 12, 3, 1, 1));
        let sum = b.add(&format!("b{i}.add"), &c2, &block_input);
        block_input = b.activation(&format!("b{i}.relu"), &sum, Activation::Relu);
    }
    add_conv(&mut b, "out", &block_input, conv(12, 2, 1, 0, 1));
    let model = b.finish(&["out"]).unwrap();

    let input = Shape::new(1, 3, 24, 24);
    check_model(&gpu, "residual chain", &model, input, 22);
    let one = 4 * 12 * 24 * 24;
    let fused = compile(&gpu, &model, input, true).memory();
    let unfused = compile(&gpu, &model, input, false).memory();
    assert!(fused.planned_bytes < 3 * one, "{fused:?}");
    assert_eq!(fused.lower_bound_bytes, 2 * one, "{fused:?}");
    assert!(unfused.planned_bytes >= 3 * one, "{unfused:?}");
}

/// MobileNet's inverted residuals: expand (1x1), depthwise (3x3), project (1x1) added to the block's input. The
/// depthwise conv runs inside the projection, so its output never exists: the block needs its input and the
/// expansion only, where unfused the three tensors meet pairwise in dispatches and need three buffers. A projection
/// to more channels than the fused kernel holds stays two kernels.
#[test]
fn depthwise_convs_should_run_inside_the_projection_that_reads_them() {
    let gpu = gpu_or_skip!();
    let mut r = rng(24);
    let mut b = GraphBuilder::new();
    let x = b.input("input", 3);
    let mut add_conv = |b: &mut GraphBuilder, name: &str, x: &str, p: Conv2d| {
        let w = conv_weights(&mut r, p.weight_shape(), p.out_channels, false, true);
        b.conv2d(name, x, p, w).unwrap()
    };
    let depthwise = |c: usize, stride: usize| Conv2d {
        stride: [stride, stride],
        groups: c,
        ..conv(c, c, 3, 1, 1)
    };
    let stem = add_conv(&mut b, "stem", &x, conv(3, 8, 3, 1, 1));
    let block_input = b.activation("stem.relu", &stem, Activation::Hardswish);
    let e = add_conv(&mut b, "b0.expand", &block_input, conv(8, 32, 1, 0, 1));
    let e = b.activation("b0.expand.relu", &e, Activation::Relu);
    let d = add_conv(&mut b, "b0.dw", &e, depthwise(32, 1));
    let d = b.activation("b0.dw.relu", &d, Activation::Relu);
    let p = add_conv(&mut b, "b0.project", &d, conv(32, 8, 1, 0, 1));
    let block_out = b.add("b0.add", &p, &block_input);
    // Stride 2 into a projection of 40 channels: not fused.
    let d = add_conv(&mut b, "b1.dw", &block_out, depthwise(8, 2));
    let wide = add_conv(&mut b, "b1.project", &d, conv(8, 40, 1, 0, 1));
    add_conv(&mut b, "out", &wide, conv(40, 2, 1, 0, 1));
    let model = b.finish(&["out"]).unwrap();

    let input = Shape::new(1, 3, 24, 24);
    check_model(&gpu, "inverted residual", &model, input, 25);
    let plan = compile(&gpu, &model, input, true);
    let labels: Vec<&str> = plan.kernels().map(|k| k.label()).collect();
    let fused: Vec<_> = labels
        .iter()
        .filter(|l| l.contains("depthwise 3x3 + 1x1"))
        .collect();
    assert_eq!(fused.len(), 1, "{labels:?}");
    assert!(fused[0].starts_with("b0.dw+b0.project"), "{labels:?}");
    let plane = 4 * 24 * 24;
    let m = plan.memory();
    assert!(
        m.planned_bytes < (8 + 32 + 32) * plane,
        "x, E and the depthwise output should not all need memory: {m:?}"
    );
}

/// UNet's up step: a transposed conv padded to the skip's size, concatenated with it. Where the sizes already agree
/// the pad is skipped and the transposed conv writes into the concatenation; where they do not the pad runs; both
/// match the CPU executor.
#[test]
fn pads_that_change_nothing_should_be_skipped() {
    let gpu = gpu_or_skip!();
    let mut r = rng(23);
    let mut b = GraphBuilder::new();
    let x = b.input("input", 4);
    let p = Conv2d {
        stride: [2, 2],
        ..conv(4, 8, 2, 0, 1)
    };
    let w = conv_weights(&mut r, p.weight_shape(), 8, true, false);
    let down = b.conv2d("down", &x, p, w).unwrap();
    let t = ConvTranspose2d::new(8, 4, [2, 2], [2, 2]);
    let w = conv_weights(&mut r, t.weight_shape(), 4, true, false);
    let up = b.conv_transpose2d("up", &down, t, w).unwrap();
    let padded = b.pad_like("pad", &up, &x);
    let cat = b.concat("cat", &[&x, &padded]);
    let p = conv(8, 2, 1, 0, 1);
    let w = conv_weights(&mut r, p.weight_shape(), 2, true, false);
    b.conv2d("out", &cat, p, w).unwrap();
    let model = b.finish(&["out"]).unwrap();
    for (input, pads) in [
        (Shape::new(1, 4, 8, 12), false),
        (Shape::new(1, 4, 9, 13), true),
    ] {
        let plan = compile(&gpu, &model, input, true);
        let labels: Vec<&str> = plan.kernels().map(|k| k.label()).collect();
        assert_eq!(
            labels.iter().any(|l| l.contains("pad")),
            pads,
            "{input}: {labels:?}"
        );
        // Unpadded, the transposed conv writes straight into the concatenation.
        assert_eq!(
            labels.iter().any(|l| l.contains("concat at channel 4")),
            pads,
            "{input}: {labels:?}"
        );
        let x = random_tensor(&mut rng(24), input);
        let want = reference::run_graph(&model, &HashMap::from([("input".to_string(), x.clone())]))
            .unwrap();
        let got = plan.run(&[("input", &x)], &["out"]).unwrap();
        assert_outputs_match(&format!("{input}"), &got, &want, 1e-4);
    }
}

/// What an ONNX graph translates to, on a 3 x 10 x 12 input: constants (per-channel mean, scale and PReLU slope, a
/// full-size map added to a conv, and a constant that is a graph output by itself), Sub / Div / PRelu against them,
/// pointwise functions (one after a conv, which must not fuse), reflect and constant pads, a slice with negative
/// steps, and ONNX resizes. The constants are declared first, so the topological order would run them first.
fn onnx_like(seed: u64) -> Model {
    let mut r = rng(seed);
    let mut b = GraphBuilder::new();
    let x = b.input("input", 3);
    let positive = |r: &mut rand::rngs::SmallRng, n| -> Vec<f32> {
        random_vec(r, n).iter().map(|v| 0.5 + v.abs()).collect()
    };
    let mean = b
        .constant_values("mean", [1, 3, 1, 1], random_vec(&mut r, 3))
        .unwrap();
    let std = b
        .constant_values("std", [1, 3, 1, 1], positive(&mut r, 3))
        .unwrap();
    let slope = b
        .constant_values("slope", [1, 4, 1, 1], random_vec(&mut r, 4))
        .unwrap();
    // Added to a conv of the same shape: the add fuses into the conv as its residual, which may then be written
    // over in place; the constant's copy must run again on every run.
    let bias_map = b
        .constant_values("bias_map", [1, 4, 10, 12], random_vec(&mut r, 4 * 10 * 12))
        .unwrap();
    b.constant_values("table", [1, 2, 1, 3], random_vec(&mut r, 6))
        .unwrap();
    let centred = b.binary("centred", &x, &mean, Binary::new(BinaryOp::Sub));
    let normalised = b.binary("normalised", &centred, &std, Binary::new(BinaryOp::Div));
    let p = conv(3, 4, 3, 1, 1);
    let w = conv_weights(&mut r, p.weight_shape(), 4, true, false);
    let c = b.conv2d("conv", &normalised, p, w).unwrap();
    let c = b.add("conv.bias_map", &c, &bias_map);
    let c = b.binary("prelu", &c, &slope, Binary::new(BinaryOp::Prelu));
    let g = b.pointwise("gelu", &c, Pointwise::Gelu { tanh: false });
    let padded = b.slice_pad(
        "pad",
        &g,
        SlicePad::pad(
            Shape::new(1, 4, 10, 12),
            [0, 0, 2, 1],
            [0, 0, 1, 3],
            PadMode::Reflect,
        )
        .unwrap(),
    );
    let p2 = conv(4, 4, 3, 0, 1);
    let w2 = conv_weights(&mut r, p2.weight_shape(), 4, true, true);
    let c2 = b.conv2d("conv2", &padded, p2, w2).unwrap();
    // A pointwise function right after a conv: a node of its own, never an epilogue.
    let clipped = b.pointwise(
        "clip",
        &c2,
        Pointwise::Clip {
            min: -0.5,
            max: f32::INFINITY,
        },
    );
    // Every other row reversed, every third column from the right, channels reversed: [1, 4, 6, 5].
    let sliced = b.slice_pad(
        "slice",
        &clipped,
        SlicePad {
            start: [0, 3, 10, 13],
            step: [1, -1, -2, -3],
            output: [1, 4, 6, 5],
            mode: PadMode::Constant { value: 0.25 },
        },
    );
    let up = b.resize(
        "up",
        &sliced,
        Resize {
            mode: ResizeMode::Linear {
                transform: CoordinateTransform::HalfPixel,
            },
            target: ResizeTarget::Scale([2.0, 1.5]),
        },
    );
    let e = b.pointwise("elu", &up, Pointwise::Elu { alpha: 0.7 });
    b.resize(
        "out",
        &e,
        Resize {
            mode: ResizeMode::NearestOnnx {
                transform: CoordinateTransform::Asymmetric,
                rounding: NearestRounding::Floor,
            },
            target: ResizeTarget::Size([5, 9]),
        },
    );
    b.finish(&["out", "table", "prelu"]).unwrap()
}

/// The ONNX-like graph on the GPU, fused and unfused, twice each (constants must be copied on every run: the
/// fused plan writes a conv over one in place), in f32 and f16, against the CPU executor.
#[test]
fn onnx_like_graph_should_match_cpu_executor() {
    let gpu = gpu_or_skip!();
    let model = onnx_like(31);
    let input = Shape::new(1, 3, 10, 12);
    let x = random_tensor(&mut rng(32), input);
    let want =
        reference::run_graph(&model, &HashMap::from([("input".to_string(), x.clone())])).unwrap();
    assert_eq!(want["out"].shape(), Shape::new(1, 4, 5, 9));
    assert_eq!(want["table"].shape(), Shape::new(1, 2, 1, 3));
    let outputs = ["out", "table", "prelu"];
    for fuse in [true, false] {
        let plan = compile(&gpu, &model, input, fuse);
        let labels: Vec<&str> = plan.kernels().map(|k| k.label()).collect();
        assert!(
            labels.iter().any(|l| l.starts_with("gelu"))
                && labels.iter().any(|l| l.starts_with("clip")),
            "pointwise nodes must stay kernels of their own: {labels:?}"
        );
        // Constants run just before their first reader, not first.
        let position = |name: &str| labels.iter().position(|l| l.starts_with(name)).unwrap();
        assert!(position("slope") > position("conv"), "{labels:?}");
        assert!(position("std") > position("centred"), "{labels:?}");
        for run in 0..2 {
            let got = plan.run(&[("input", &x)], &outputs).unwrap();
            assert_outputs_match(
                &format!("onnx-like fuse={fuse} run {run}"),
                &got,
                &want,
                1e-4,
            );
        }
    }
    let fused = compile(&gpu, &model, input, true);
    let labels: Vec<&str> = fused.kernels().map(|k| k.label()).collect();
    assert!(
        !labels.iter().any(|l| l.starts_with("conv.bias_map")),
        "the add of the constant map should fuse into the conv: {labels:?}"
    );
    if let Some(gpu) = common::gpu_for(Precision::F16) {
        for fuse in [true, false] {
            let options = PlanOptions {
                fuse,
                ..f16_options(false)
            };
            let plan = compile_in(&gpu, &model, input, options);
            for run in 0..2 {
                let got = plan.run(&[("input", &x)], &outputs).unwrap();
                assert_outputs_match(
                    &format!("onnx-like fuse={fuse} (f16) run {run}"),
                    &got,
                    &want,
                    GRAPH_F16_TOLERANCE,
                );
            }
        }
    }
}

/// The new ops survive the model document: JSON out and back gives the same graph, which runs the same.
#[test]
fn onnx_like_graph_should_round_trip_through_json() {
    let model = onnx_like(31);
    let json = model.to_json().unwrap();
    assert!(
        json.contains(r#""op":"constant","weight":"mean.weight","shape":[1,3,1,1]"#),
        "{json}"
    );
    assert!(
        json.contains(r#""function":"clip","min":-0.5,"max":"inf""#),
        "{json}"
    );
    assert!(json.contains(r#""op":"slice_pad""#), "{json}");
    let back = Model::from_json(&json, onnx_like(31).weights).unwrap();
    assert_eq!(back.graph, model.graph);
    let x = random_tensor(&mut rng(33), Shape::new(1, 3, 10, 12));
    let inputs = HashMap::from([("input".to_string(), x)]);
    assert_eq!(
        reference::run_graph(&back, &inputs).unwrap(),
        reference::run_graph(&model, &inputs).unwrap()
    );
}

/// A constant's tensor may have any rank up to 4 with the NCHW shape's element count; others are refused by node
/// name, when the model is checked and when it is compiled.
#[test]
fn constants_should_check_their_tensor() {
    let build = |tensor_shape: Vec<usize>, values: usize| {
        let mut weights = atrous::weights::Weights::new();
        weights
            .insert("k", tensor_shape, (0..values).map(|v| v as f32).collect())
            .unwrap();
        let mut b = GraphBuilder::with_weights(weights);
        let x = b.input("input", 3);
        let k = b.constant("scale", "k", [1, 3, 1, 1]);
        b.mul("out", &x, &k);
        b.finish(&["out"]).unwrap()
    };
    for shape in [vec![3], vec![3, 1, 1], vec![1, 3, 1, 1], vec![1, 1, 3]] {
        let model = build(shape.clone(), 3);
        model.check_weights().unwrap();
        let x = random_tensor(&mut rng(34), Shape::new(1, 3, 2, 2));
        let out = reference::run_graph(&model, &HashMap::from([("input".to_string(), x.clone())]))
            .unwrap();
        let want: Vec<f32> = x
            .data
            .iter()
            .enumerate()
            .map(|(i, v)| v * (i / 4) as f32)
            .collect();
        assert_eq!(out["out"].to_f32().data, want, "{shape:?}");
    }
    for (shape, values, what) in [
        (vec![4], 4, "[4]"),
        (vec![1, 1, 1, 3, 1], 3, "rank"),
        (vec![3, 2], 6, "[3, 2]"),
    ] {
        let model = build(shape, values);
        let err = model.check_weights().unwrap_err().to_string();
        assert!(
            err.contains("\"scale\" (constant)") && err.contains("\"k\""),
            "{what}: {err}"
        );
        let x = random_tensor(&mut rng(35), Shape::new(1, 3, 2, 2));
        let err = reference::run_graph(&model, &HashMap::from([("input".to_string(), x)]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"k\""), "{what}: {err}");
        if let Some(gpu) = common::gpu() {
            let shapes = HashMap::from([("input".to_string(), Shape::new(1, 3, 2, 2))]);
            let err = Plan::compile(
                gpu,
                &model,
                &shapes,
                PlanOptions::default(),
                &WeightCache::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("\"scale\" (constant)"), "{what}: {err}");
        }
    }
    // A missing tensor, and a constant node given an input.
    let mut b = GraphBuilder::new();
    let x = b.input("input", 3);
    b.constant("scale", "nowhere", [1, 3, 1, 1]);
    b.node(
        "bad",
        atrous::graph::Op::Constant {
            weight: "nowhere".into(),
            shape: [1, 3, 1, 1],
        },
        &[&x],
        &["bad"],
    );
    let model = b.finish(&["scale", "bad"]).unwrap();
    let err = model.check_weights().unwrap_err().to_string();
    assert!(err.contains("\"nowhere\" is missing"), "{err}");
    let shapes = HashMap::from([("input".to_string(), Shape::new(1, 3, 2, 2))]);
    let err = model.graph.infer(&shapes).unwrap_err().to_string();
    assert!(
        err.contains("\"bad\" (constant)") && err.contains("takes 0 inputs"),
        "{err}"
    );
}
