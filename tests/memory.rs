//! The activation memory planner: no two live tensors ever share a buffer, over random lifetimes and random graphs.

mod common;

use atrous::graph::GraphBuilder;
use atrous::ops::{Activation, Conv2d, ConvWeights, Padding2d};
use atrous::plan::memory::{self, lower_bound, plan, Lifetime, MemoryPlan};
use atrous::plan::{Plan, PlanOptions, WeightCache};
use atrous::{reference, Shape};
use common::*;
use rand::Rng;
use std::collections::HashMap;

/// Checks every rule of a plan: each tensor inside its buffer at an aligned offset, no two live tensors
/// overlapping in one buffer, no conflicting pair in one buffer, and no less memory than the lower bound.
fn check_plan(lifetimes: &[Lifetime], conflicts: &[(usize, usize)], align: u64) -> MemoryPlan {
    let p = plan(lifetimes, conflicts, align);
    for (i, l) in lifetimes.iter().enumerate() {
        let at = p.placement[i];
        assert!(
            at.offset % align == 0 && at.offset + l.bytes <= p.buffer_bytes[at.buffer],
            "tensor {i} {l:?} at {at:?} does not fit buffer of {} bytes",
            p.buffer_bytes[at.buffer]
        );
        for (j, m) in lifetimes.iter().enumerate().skip(i + 1) {
            let other = p.placement[j];
            let bytes_overlap =
                at.offset < other.offset + m.bytes && other.offset < at.offset + l.bytes;
            if at.buffer == other.buffer && bytes_overlap {
                assert!(
                    !l.overlaps(m),
                    "tensors {i} {l:?} and {j} {m:?} share bytes of buffer {} while both live",
                    at.buffer
                );
            }
        }
    }
    for &(a, b) in conflicts {
        assert_ne!(
            p.placement[a].buffer, p.placement[b].buffer,
            "conflicting tensors {a} and {b} share a buffer"
        );
    }
    assert!(p.planned_bytes() >= lower_bound(lifetimes));
    p
}

#[test]
fn random_lifetimes_should_never_share_live_bytes_or_conflicting_buffers() {
    let mut rng = rng(1);
    for round in 0..300 {
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
        // Conflicts only join tensors live together, as a dispatch's inputs and outputs are.
        let conflicts: Vec<(usize, usize)> = (0..n * 2)
            .map(|_| (rng.random_range(0..n), rng.random_range(0..n)))
            .filter(|&(a, b)| a != b && lifetimes[a].overlaps(&lifetimes[b]))
            .collect();
        let align = [4, 256][round % 2];
        check_plan(&lifetimes, &conflicts, align);
        // Each strategy alone must be valid too, not only the one that wins.
        for p in [
            memory::whole_buffers(&lifetimes),
            memory::arenas(&lifetimes, &conflicts, align),
        ] {
            for &(a, b) in &conflicts {
                assert_ne!(p.placement[a].buffer, p.placement[b].buffer);
            }
        }
    }
}

#[test]
fn a_chain_should_need_two_buffers_of_its_size() {
    let lifetimes: Vec<Lifetime> = (0..10)
        .map(|i| Lifetime {
            bytes: 400,
            first: i,
            last: i + 1,
        })
        .collect();
    // Each step reads tensor i and writes tensor i + 1.
    let conflicts: Vec<(usize, usize)> = (0..9).map(|i| (i, i + 1)).collect();
    let p = check_plan(&lifetimes, &conflicts, 4);
    assert_eq!(p.buffer_bytes.len(), 2);
    assert_eq!(p.planned_bytes(), lower_bound(&lifetimes));
}

/// Two branches read one tensor and are read together (ASPP): whole buffers give each branch its own buffer, while
/// an arena holds both beside each other where the first, larger tensor was.
#[test]
fn arenas_should_pack_live_branches_beside_each_other() {
    let l = |bytes, first, last| Lifetime { bytes, first, last };
    let lifetimes = vec![
        l(1000, 0, 1),
        l(100, 1, 3),
        l(600, 2, 4),
        l(600, 3, 4),
        l(100, 4, 5),
    ];
    let conflicts = vec![(0, 1), (1, 2), (1, 3), (2, 4), (3, 4)];
    let p = check_plan(&lifetimes, &conflicts, 4);
    assert_eq!(memory::whole_buffers(&lifetimes).planned_bytes(), 1700);
    assert_eq!(p.planned_bytes(), lower_bound(&lifetimes), "{p:?}");
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
