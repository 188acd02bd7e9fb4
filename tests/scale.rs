//! Large graphs load, validate and plan in time linear in their node count (no quadratic pass), and a graph too
//! long for one submission is refused by name rather than crashing the driver.

mod common;

use atrous::graph::GraphBuilder;
use atrous::ops::Activation;
use atrous::{Engine, Model, Shape, Tensor};
use std::collections::HashMap;

/// `input` through `n` activations alternating ReLU and sigmoid.
fn chain(n: usize) -> Model {
    let mut b = GraphBuilder::new();
    let mut x = b.input("input", 3);
    for i in 0..n {
        let act = if i % 2 == 0 {
            Activation::Relu
        } else {
            Activation::Sigmoid
        };
        x = b.activation(&format!("act{i}"), &x, act);
    }
    b.finish(&[&x]).unwrap()
}

#[test]
fn a_100000_node_chain_should_load_and_validate() {
    let model = chain(100_000);
    let json = model.to_json().unwrap();
    let loaded = Model::from_json(&json, atrous::weights::Weights::new()).unwrap();
    let shapes = HashMap::from([("input".to_string(), Shape::new(1, 3, 2, 2))]);
    let (order, infos) = loaded.graph.infer(&shapes).unwrap();
    assert_eq!(order.len(), 100_000);
    assert_eq!(infos["act99999"].shape, Shape::new(1, 3, 2, 2));
}

#[test]
fn a_20000_node_chain_should_plan_and_run() {
    let gpu = gpu_or_skip!();
    let n = 20_000;
    let engine = Engine::new(gpu, chain(n));
    let x = Tensor::new(
        Shape::new(1, 3, 2, 2),
        (0..12).map(|i| i as f32 * 0.5 - 3.0).collect(),
    )
    .unwrap();
    let out = engine
        .run(&[("input", &x)], &[&format!("act{}", n - 1)])
        .unwrap();
    let got = out[&format!("act{}", n - 1)].to_f32();
    // ReLU then sigmoid, 10,000 times: every value settles at the fixed point of sigmoid(relu(v)).
    let want: Vec<f32> = x
        .data
        .iter()
        .map(|&v| {
            (0..n).fold(v as f64, |v, i| {
                if i % 2 == 0 {
                    v.max(0.0)
                } else {
                    1.0 / (1.0 + (-v).exp())
                }
            }) as f32
        })
        .collect();
    common::assert_close("chain", &got.data, &want);
}

#[test]
fn a_graph_past_the_dispatch_limit_should_be_refused() {
    let gpu = gpu_or_skip!();
    let engine = Engine::new(gpu, chain(atrous::plan::MAX_DISPATCHES + 1));
    let x = Tensor::zeros(Shape::new(1, 3, 1, 1));
    let e = engine
        .run(&[("input", &x)], &["act0"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("dispatches") && e.contains(&atrous::plan::MAX_DISPATCHES.to_string()),
        "{e}"
    );
}
