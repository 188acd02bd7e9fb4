//! Untrusted models and inputs: every failure is an error naming what is wrong, before any GPU allocation.

mod common;

use atrous::graph::{ConvWeightNames, GraphBuilder, Op};
use atrous::ops::{Conv2d, ConvWeights};
use atrous::plan::{Plan, PlanOptions, WeightCache};
use atrous::weights::Weights;
use atrous::{Error, Model, Shape};
use std::collections::HashMap;
use std::path::PathBuf;

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("atrous-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn tiny_model() -> Model {
    let mut b = GraphBuilder::new();
    let x = b.input("input", 2);
    let w = ConvWeights {
        weight: vec![0.5; 2 * 2 * 9],
        bias: Some(vec![0.1, 0.2]),
        batch_norm: None,
    };
    b.conv2d("conv", &x, Conv2d::new(2, 2, [3, 3]), w).unwrap();
    b.finish(&["conv"]).unwrap()
}

#[test]
fn files_that_are_not_models_should_be_errors_naming_the_file() {
    let missing = Model::load("/nonexistent/model.safetensors")
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("/nonexistent/model.safetensors"),
        "{missing}"
    );

    let garbage = temp("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a safetensors file at all").unwrap();
    let err = Model::load(&garbage).unwrap_err().to_string();
    assert!(
        err.contains("garbage.safetensors") && err.contains("not a valid safetensors"),
        "{err}"
    );

    let good = temp("good.safetensors");
    tiny_model().save(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let truncated = temp("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 10]).unwrap();
    let err = Model::load(&truncated).unwrap_err().to_string();
    assert!(err.contains("truncated.safetensors"), "{err}");

    let plain = temp("plain.safetensors");
    let mut w = Weights::new();
    w.insert("x", vec![2], vec![1.0, 2.0]).unwrap();
    w.save(&plain, HashMap::new()).unwrap();
    // Model::load opens any model file: a state_dict of no known architecture says so, naming the file.
    let err = Model::load(&plain).unwrap_err().to_string();
    assert!(
        err.contains("plain.safetensors") && err.contains("cannot tell the architecture"),
        "{err}"
    );
}

#[test]
fn invalid_documents_should_be_errors() {
    let weights = || {
        let mut w = Weights::new();
        w.insert("conv.weight", vec![2, 2, 3, 3], vec![0.5; 36])
            .unwrap();
        w
    };
    let err = Model::from_json("{not json", weights())
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid model document"), "{err}");
    let err = Model::from_json(
        r#"{"format_version": 99, "inputs": [], "nodes": [], "outputs": []}"#,
        weights(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("version 99"), "{err}");
    let unknown_op = r#"{"format_version": 1, "inputs": [{"name": "input", "channels": 2}],
        "nodes": [{"name": "n", "op": "teleport", "inputs": ["input"], "outputs": ["out"]}], "outputs": ["out"]}"#;
    assert!(Model::from_json(unknown_op, weights())
        .unwrap_err()
        .to_string()
        .contains("teleport"));
}

#[test]
fn weights_that_are_missing_or_misshapen_should_name_the_tensor() {
    let mut model = tiny_model();
    if let Op::Conv2d { weights, .. } = &mut model.graph.nodes[0].op {
        *weights = ConvWeightNames {
            weight: "nowhere.weight".into(),
            bias: None,
            batch_norm: None,
        };
    }
    let err = model.check_weights().unwrap_err().to_string();
    assert!(
        err.contains("\"conv\"") && err.contains("nowhere.weight"),
        "{err}"
    );

    let mut model = tiny_model();
    if let Op::Conv2d { params, .. } = &mut model.graph.nodes[0].op {
        params.out_channels = 3;
    }
    let err = model.check_weights().unwrap_err().to_string();
    assert!(
        err.contains("conv.weight") && err.contains("[2, 2, 3, 3]") && err.contains("[3, 2, 3, 3]"),
        "{err}"
    );
}

#[test]
fn structural_errors_should_name_the_node() {
    let mut b = GraphBuilder::new();
    let x = b.input("input", 1);
    b.add("a", &x, "b");
    b.add("b", &x, "a");
    let err = b.finish(&["b"]).unwrap_err().to_string();
    assert!(
        err.contains("cycle") && err.contains("\"a\"") && err.contains("\"b\""),
        "{err}"
    );

    let mut b = GraphBuilder::new();
    let x = b.input("input", 1);
    b.add("sum", &x, "ghost");
    let err = b.finish(&["sum"]).unwrap_err().to_string();
    assert!(err.contains("\"sum\"") && err.contains("ghost"), "{err}");

    let mut b = GraphBuilder::new();
    b.input("input", 1);
    let err = b.finish(&["nothing"]).unwrap_err().to_string();
    assert!(err.contains("nothing"), "{err}");
}

#[test]
fn bad_shapes_and_attributes_should_fail_before_allocating() {
    let gpu = match common::gpu() {
        Some(g) => g,
        None => return,
    };
    let compile = |model: &Model, shape: Shape| {
        let shapes = HashMap::from([("input".to_string(), shape)]);
        Plan::compile(
            gpu.clone(),
            model,
            &shapes,
            PlanOptions::default(),
            &WeightCache::default(),
        )
    };
    // Channel mismatch: the graph input has 2 channels.
    let err = compile(&tiny_model(), Shape::new(1, 3, 8, 8))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"input\"") && err.contains("2 channels"),
        "{err}"
    );
    // stride 0
    let mut model = tiny_model();
    if let Op::Conv2d { params, .. } = &mut model.graph.nodes[0].op {
        params.stride = [0, 1];
    }
    let err = compile(&model, Shape::new(1, 2, 8, 8))
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"conv\"") && err.contains("stride"), "{err}");
    // kernel larger than the input
    let err = compile(&tiny_model(), Shape::new(1, 2, 2, 2))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"conv\"") && err.contains("larger than the padded input"),
        "{err}"
    );
    // absurd size: over the device's limits
    let err = compile(&tiny_model(), Shape::new(64, 2, 16384, 16384)).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
}

#[test]
fn a_batch_norm_with_a_negative_variance_should_be_refused_by_node() {
    let gpu = match common::gpu() {
        Some(g) => g,
        None => return,
    };
    let mut b = GraphBuilder::new();
    let x = b.input("input", 2);
    let bn = atrous::ops::BatchNorm {
        weight: vec![1.0, 1.0],
        bias: vec![0.0, 0.0],
        running_mean: vec![0.0, 0.0],
        running_var: vec![1.0, -2.0],
        eps: 1e-5,
    };
    let w = ConvWeights {
        weight: vec![0.5; 4],
        bias: None,
        batch_norm: Some(bn),
    };
    b.conv2d("bn_conv", &x, Conv2d::new(2, 2, [1, 1]), w)
        .unwrap();
    let model = b.finish(&["bn_conv"]).unwrap();
    let input = atrous::Tensor::zeros(atrous::Shape::new(1, 2, 3, 3));
    let e = atrous::Engine::new(gpu, model)
        .run(&[("input", &input)], &["bn_conv"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bn_conv") && e.contains("running_var[1] = -2"),
        "{e}"
    );
}

#[test]
fn duplicate_graph_outputs_should_be_refused() {
    let mut model = tiny_model();
    model.graph.outputs.push("conv".into());
    let e = model.graph.topological_order().unwrap_err().to_string();
    assert!(e.contains("\"conv\"") && e.contains("twice"), "{e}");
}

#[test]
fn zero_groups_should_be_named_as_such() {
    let mut model = tiny_model();
    if let Op::Conv2d { params, .. } = &mut model.graph.nodes[0].op {
        params.groups = 0;
    }
    let e = model.check_weights().unwrap_err().to_string();
    assert!(
        e.contains("\"conv\"") && e.contains("groups must be >= 1"),
        "{e}"
    );
}

/// Op parameters a hostile file may hold: each is refused by shape inference naming the node and the value, with no
/// overflow, wrap-around or loop over the number (these once hung, panicked or wrapped).
#[test]
fn absurd_op_parameters_should_be_errors_naming_the_node() {
    use atrous::ops::{AdaptiveAvgPool2d, ConvTranspose2d, Padding2d};
    let conv_w = |n: usize| ConvWeights {
        weight: vec![0.5; n],
        bias: None,
        batch_norm: None,
    };
    type AddNode = Box<dyn Fn(&mut GraphBuilder, &str) -> String>;
    let cases: Vec<(&str, AddNode)> = vec![
        (
            "pool",
            Box::new(|b: &mut GraphBuilder, x: &str| {
                b.node(
                    "pool",
                    Op::AdaptiveAvgPool2d {
                        params: AdaptiveAvgPool2d {
                            output: [1 << 32, 1],
                        },
                    },
                    &[x],
                    &["pool"],
                );
                "pool".into()
            }),
        ),
        (
            "up",
            Box::new(move |b: &mut GraphBuilder, x: &str| {
                let p = ConvTranspose2d::new(2, 2, [2, 2], [1 << 33, 1]);
                b.conv_transpose2d("up", x, p, conv_w(16)).unwrap()
            }),
        ),
        (
            "dilated",
            Box::new(move |b: &mut GraphBuilder, x: &str| {
                let p = ConvTranspose2d {
                    dilation: [1 << 40, 1],
                    ..ConvTranspose2d::new(2, 2, [2, 2], [1, 1])
                };
                b.conv_transpose2d("dilated", x, p, conv_w(16)).unwrap()
            }),
        ),
        (
            "padded",
            Box::new(move |b: &mut GraphBuilder, x: &str| {
                let p = Conv2d {
                    padding: Padding2d::uniform(1 << 62),
                    ..Conv2d::new(2, 2, [3, 3])
                };
                b.conv2d("padded", x, p, conv_w(36)).unwrap()
            }),
        ),
        (
            "wrapped",
            Box::new(move |b: &mut GraphBuilder, x: &str| {
                let p = Conv2d {
                    padding: Padding2d::uniform(usize::MAX),
                    ..Conv2d::new(2, 2, [3, 3])
                };
                b.conv2d("wrapped", x, p, conv_w(36)).unwrap()
            }),
        ),
    ];
    for (name, add) in cases {
        let mut b = GraphBuilder::new();
        let x = b.input("input", 2);
        let out = add(&mut b, &x);
        let model = b.finish(&[&out]).unwrap();
        let shapes = HashMap::from([("input".to_string(), Shape::new(1, 2, 8, 8))]);
        let e = model.graph.infer(&shapes).unwrap_err().to_string();
        assert!(
            e.contains(&format!("{name:?}")) && e.contains("over the limit"),
            "{name}: {e}"
        );
    }
}

#[test]
fn a_plan_over_the_memory_limit_should_be_refused_before_allocating() {
    let gpu = match common::gpu() {
        Some(g) => g,
        None => return,
    };
    // Tensors each within the device's limits whose sum is over the plan's memory limit (1 MiB here).
    let mut b = GraphBuilder::new();
    let x = b.input("input", 2);
    let w = ConvWeights {
        weight: vec![0.5; 36],
        bias: None,
        batch_norm: None,
    };
    let p = Conv2d {
        padding: atrous::ops::Padding2d::uniform(1),
        ..Conv2d::new(2, 2, [3, 3])
    };
    let a = b.conv2d("a", &x, p.clone(), w.clone()).unwrap();
    let c = b.conv2d("c", &a, p, w).unwrap();
    let cat = b.concat("cat", &[&a, &c]);
    let model = b.finish(&[&cat]).unwrap();
    let shapes = HashMap::from([("input".to_string(), Shape::new(1, 2, 512, 512))]);
    let options = PlanOptions {
        memory_limit: 1 << 20,
        ..PlanOptions::default()
    };
    let e = Plan::compile(gpu, &model, &shapes, options, &WeightCache::default()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::TooLarge {
                limit_name: "ATROUS_MAX_MEMORY",
                ..
            }
        ),
        "{e}"
    );
}
