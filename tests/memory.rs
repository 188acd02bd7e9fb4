//! The activation memory planner: no two live tensors ever share a buffer, over random lifetimes and random graphs.

mod common;

use atrous::graph::GraphBuilder;
use atrous::ops::{Activation, Conv2d, ConvWeights, Padding2d};
use atrous::plan::memory::{lower_bound, plan, Lifetime};
use atrous::plan::{Plan, PlanOptions, WeightCache};
use atrous::{reference, Shape};
use common::*;
use rand::Rng;
use std::collections::HashMap;

fn check_plan(lifetimes: &[Lifetime]) {
    let p = plan(lifetimes);
    for i in 0..lifetimes.len() {
        assert!(
            p.buffer_bytes[p.assignment[i]] >= lifetimes[i].bytes,
            "tensor {i} does not fit its buffer"
        );
        for j in i + 1..lifetimes.len() {
            if p.assignment[i] == p.assignment[j] {
                assert!(
                    !lifetimes[i].overlaps(&lifetimes[j]),
                    "tensors {i} {:?} and {j} {:?} share buffer {} while both live",
                    lifetimes[i],
                    lifetimes[j],
                    p.assignment[i]
                );
            }
        }
    }
    assert!(p.planned_bytes() >= lower_bound(lifetimes));
}

#[test]
fn random_lifetimes_should_never_share_a_live_buffer() {
    let mut rng = rng(1);
    for _ in 0..300 {
        let steps = rng.random_range(1..40);
        let n = rng.random_range(1..60);
        let lifetimes: Vec<Lifetime> = (0..n)
            .map(|_| {
                let first = rng.random_range(0..steps);
                let last = rng.random_range(first..steps + 1);
                Lifetime {
                    bytes: 4 * rng.random_range(1..5000),
                    first,
                    last,
                }
            })
            .collect();
        check_plan(&lifetimes);
    }
}

#[test]
fn a_chain_should_need_two_buffers() {
    let lifetimes: Vec<Lifetime> = (0..10)
        .map(|i| Lifetime {
            bytes: 400,
            first: i,
            last: i + 1,
        })
        .collect();
    let p = plan(&lifetimes);
    assert_eq!(p.buffer_bytes.len(), 2);
    assert_eq!(p.planned_bytes(), lower_bound(&lifetimes));
}

/// Random DAGs of convs, adds, concats and activations, run through the fused planner and compared with the CPU:
/// a tensor overwritten while still live would show as a mismatch.
#[test]
fn random_graphs_should_match_cpu_executor() {
    let gpu = gpu_or_skip!();
    let mut rng = rng(2);
    for graph in 0..6 {
        let mut b = GraphBuilder::new();
        let mut tensors = vec![(b.input("input", 3), 3usize)];
        for k in 0..rng.random_range(4..12) {
            let name = format!("n{k}");
            let pick = |rng: &mut rand::rngs::SmallRng, tensors: &Vec<(String, usize)>| {
                tensors[rng.random_range(0..tensors.len())].clone()
            };
            let (x, c) = pick(&mut rng, &tensors);
            let node = match rng.random_range(0..4) {
                0 | 1 => {
                    let out = rng.random_range(1..6);
                    let k = [1, 3][rng.random_range(0..2)];
                    let p = Conv2d {
                        padding: Padding2d::uniform(k / 2),
                        ..Conv2d::new(c, out, [k, k])
                    };
                    let w = ConvWeights {
                        weight: random_vec(&mut rng, p.weight_shape().iter().product()),
                        bias: Some(random_vec(&mut rng, out)),
                        batch_norm: None,
                    };
                    (b.conv2d(&name, &x, p, w).unwrap(), out)
                }
                2 => {
                    let same: Vec<_> = tensors.iter().filter(|t| t.1 == c).cloned().collect();
                    let (y, _) = same[rng.random_range(0..same.len())].clone();
                    (b.add(&name, &x, &y), c)
                }
                _ => {
                    if rng.random_bool(0.5) {
                        (b.activation(&name, &x, Activation::Relu), c)
                    } else {
                        let (y, cy) = pick(&mut rng, &tensors);
                        (b.concat(&name, &[&x, &y]), c + cy)
                    }
                }
            };
            tensors.push(node);
        }
        let last = tensors.last().unwrap().0.clone();
        let middle = tensors[tensors.len() / 2].0.clone();
        let outputs: Vec<&str> = if middle == last || middle == "input" {
            vec![&last]
        } else {
            vec![&last, &middle]
        };
        let model = b.finish(&outputs).unwrap();
        let shape = Shape::new(1, 3, 6, 7);
        let x = random_tensor(&mut rng, shape);
        let want = reference::run_graph(&model, &HashMap::from([("input".to_string(), x.clone())]))
            .unwrap();
        let plan = Plan::compile(
            gpu.clone(),
            &model,
            &HashMap::from([("input".to_string(), shape)]),
            PlanOptions::default(),
            &WeightCache::default(),
        )
        .unwrap();
        let got = plan.run(&[("input", &x)], &outputs).unwrap();
        for name in &outputs {
            assert_close(
                &format!("graph {graph}: {name}"),
                &got[*name].to_f32().data,
                &want[*name].to_f32().data,
            );
        }
    }
}
