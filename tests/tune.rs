//! The tuner ([`atrous::plan::Tuner`], `PlanOptions::tune`): with a fake clock it keeps, for every conv, the candidate
//! it measured fastest (every candidate runs once on the GPU), the tuned plan computes what the CPU executor does,
//! the choices come back from the cache file without timing anything, and a cache that is garbage or names a
//! kernel that cannot run its conv is ignored.

mod common;

use atrous::gpu::Precision;
use atrous::graph::GraphBuilder;
use atrous::kernels::conv2d::{self, Path};
use atrous::ops::{Activation, Conv2d, Padding2d};
use atrous::plan::{ChoiceSource, Clock, Output, Plan, PlanOptions, Tuner, WeightCache};
use atrous::{reference, Model, Result, Shape};
use common::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A clock whose times are a fixed function of the kernel, so the fastest is known: split-K, then Winograd
/// F(2x2), then row tiles, then the 4 x 4 tile, then anything else. Runs each candidate once (it must work) and
/// logs what it timed.
struct FakeClock {
    log: Arc<Mutex<Vec<(String, Path)>>>,
}

fn fake_seconds(path: Path) -> f64 {
    match path {
        Path::SplitK { .. } => 1.0,
        Path::Winograd { tile: 2, .. } => 2.0,
        Path::TiledRows { .. } => 3.0,
        Path::Tiled {
            channels: 4,
            pixels: 4,
            ..
        } => 4.0,
        _ => 10.0,
    }
}

impl Clock for FakeClock {
    fn time(
        &mut self,
        node: &str,
        path: Path,
        _: f64,
        run: &mut dyn FnMut() -> Result<()>,
    ) -> Result<f64> {
        run()?;
        self.log.lock().unwrap().push((node.to_string(), path));
        Ok(fake_seconds(path))
    }
}

/// A clock that must not be asked: every choice should come from the cache.
struct NoClock;

impl Clock for NoClock {
    fn time(
        &mut self,
        node: &str,
        path: Path,
        _: f64,
        _: &mut dyn FnMut() -> Result<()>,
    ) -> Result<f64> {
        panic!("timed {node} on {path} although the cache has it");
    }
}

fn conv(cin: usize, cout: usize, k: usize, stride: usize, groups: usize) -> Conv2d {
    Conv2d {
        stride: [stride, stride],
        padding: Padding2d::uniform(k / 2),
        groups,
        ..Conv2d::new(cin, cout, [k, k])
    }
}

/// Convs with several candidates each (Winograd-able 3x3, 1 x 1, strided, a long reduction that can split) and one
/// grouped conv with a single candidate.
fn model() -> (Model, String) {
    let mut r = rng(41);
    let mut b = GraphBuilder::new();
    let x = b.input("input", 32);
    let mut add = |b: &mut GraphBuilder, name: &str, x: &str, p: Conv2d| {
        let w = conv_weights(&mut r, p.weight_shape(), p.out_channels, true, true);
        let y = b.conv2d(name, x, p, w).unwrap();
        b.activation(&format!("{name}_relu"), &y, Activation::Relu)
    };
    let a = add(&mut b, "wide", &x, conv(32, 48, 3, 1, 1));
    let g = add(&mut b, "grouped", &a, conv(48, 48, 3, 1, 4));
    let p = add(&mut b, "point", &g, conv(48, 128, 1, 1, 1));
    let l = add(&mut b, "long", &p, conv(128, 16, 3, 1, 1));
    let s = add(&mut b, "strided", &l, conv(16, 24, 3, 2, 1));
    let model = b.finish(&[&s]).unwrap();
    (model, s)
}

fn shapes() -> HashMap<String, Shape> {
    HashMap::from([("input".to_string(), Shape::new(1, 32, 20, 20))])
}

fn compile(gpu: &Arc<atrous::Gpu>, model: &Model, tuner: Option<&Tuner>) -> Plan {
    let graph = model.graph_for(&shapes()).unwrap();
    Plan::compile_tuned(
        gpu.clone(),
        model,
        &graph,
        &shapes(),
        PlanOptions::default(),
        &WeightCache::default(),
        tuner,
    )
    .unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("atrous-tune-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("tune.json")
}

#[test]
fn tuner_should_keep_the_fastest_measured_kernel_and_cache_it() {
    let gpu = gpu_or_skip!();
    let (model, out) = model();
    let cache = scratch("fastest");
    let log = Arc::new(Mutex::new(Vec::new()));
    let tuner = Tuner::new(
        Some(cache.clone()),
        Box::new(FakeClock { log: log.clone() }),
    );
    let tuned = compile(&gpu, &model, Some(&tuner));
    let heuristic = compile(&gpu, &model, None);

    let infos = model.graph.infer(&shapes()).unwrap().1;
    let mut changed = 0;
    for (choice, plain) in tuned.conv_choices().iter().zip(heuristic.conv_choices()) {
        assert_eq!(choice.node, plain.node);
        let node = model
            .graph
            .nodes
            .iter()
            .find(|n| n.name == choice.node)
            .unwrap();
        let atrous::graph::Op::Conv2d { params, .. } = &node.op else {
            panic!("{} is not a conv", choice.node);
        };
        let input = infos[&node.inputs[0]].shape;
        let candidates = conv2d::candidates(params, input, gpu.parallelism());
        match &choice.source {
            ChoiceSource::Measured(times) => {
                // Every candidate that builds on this device is timed, in order (the subgroup kernel does not
                // build without SUBGROUP, as on GL).
                let builds = |path: &Path| {
                    conv2d::conv2d_on(&gpu, "check", params, input, *path, Precision::F32).is_ok()
                };
                let buildable: Vec<Path> = candidates.iter().copied().filter(builds).collect();
                let timed: Vec<Path> = times.iter().map(|t| t.0).collect();
                assert_eq!(
                    timed, buildable,
                    "{}: every candidate timed, in order",
                    choice.node
                );
                let fastest = buildable
                    .iter()
                    .copied()
                    .min_by(|a, b| fake_seconds(*a).total_cmp(&fake_seconds(*b)))
                    .unwrap();
                assert_eq!(choice.path, fastest, "{}: {times:?}", choice.node);
            }
            ChoiceSource::Heuristic => {
                assert_eq!(candidates.len(), 1, "{} was not tuned", choice.node);
                assert_eq!(choice.path, plain.path);
            }
            ChoiceSource::Cached => panic!("{}: nothing was cached yet", choice.node),
        }
        changed += usize::from(choice.path != plain.path);
    }
    let nodes: Vec<&str> = tuned
        .conv_choices()
        .iter()
        .map(|c| c.node.as_str())
        .collect();
    assert_eq!(nodes, ["wide", "grouped", "point", "long", "strided"]);
    assert!(
        changed >= 3,
        "the fake clock should overrule the heuristics"
    );
    let logged = log.lock().unwrap();
    assert_eq!(tuner.measured(), logged.len());
    let split = tuned
        .conv_choices()
        .iter()
        .find(|c| c.node == "long")
        .unwrap();
    assert!(matches!(split.path, Path::SplitK { .. }), "{split:?}");

    // The tuned plan, split-K and Winograd included, computes what the CPU executor does.
    let x = random_tensor(&mut rng(42), shapes()["input"]);
    let want =
        reference::run_graph(&model, &HashMap::from([("input".to_string(), x.clone())])).unwrap();
    let got = tuned.run(&[("input", &x)], &[&out]).unwrap();
    let (Output::F32(g), Output::F32(w)) = (&got[&out], &want[&out]) else {
        panic!("float outputs expected");
    };
    assert_close_tol("tuned plan vs CPU", &g.data, &w.data, 1e-4);

    // Saved, the choices come back without timing anything.
    tuner.save().unwrap();
    let again = Tuner::new(Some(cache.clone()), Box::new(NoClock));
    let cached = compile(&gpu, &model, Some(&again));
    assert_eq!(again.measured(), 0);
    for (c, t) in cached.conv_choices().iter().zip(tuned.conv_choices()) {
        assert_eq!(c.path, t.path, "{}", c.node);
        let expected = match t.source {
            ChoiceSource::Heuristic => ChoiceSource::Heuristic,
            _ => ChoiceSource::Cached,
        };
        assert_eq!(c.source, expected, "{}", c.node);
    }
    std::fs::remove_dir_all(cache.parent().unwrap()).unwrap();
}

#[test]
fn tuner_should_ignore_a_garbage_cache_and_kernels_that_cannot_run_a_conv() {
    let gpu = gpu_or_skip!();
    let (model, _) = model();
    let cache = scratch("garbage");
    let fake = || {
        Box::new(FakeClock {
            log: Arc::default(),
        })
    };
    let first = Tuner::new(Some(cache.clone()), fake());
    compile(&gpu, &model, Some(&first));
    let tuned = first.measured();
    assert!(tuned > 0);
    first.save().unwrap();

    // Every cached kernel replaced by the naive one, which no ungrouped conv is offered: each is measured again.
    let text = std::fs::read_to_string(&cache).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    for adapter in json["adapters"].as_object_mut().unwrap().values_mut() {
        for entry in adapter.as_object_mut().unwrap().values_mut() {
            entry["path"] = serde_json::json!("Naive");
        }
    }
    std::fs::write(&cache, json.to_string()).unwrap();
    let edited = Tuner::new(Some(cache.clone()), fake());
    compile(&gpu, &model, Some(&edited));
    assert_eq!(edited.measured(), tuned);

    for garbage in [
        &b"not json"[..],
        b"{\"version\": 1, \"adapters\": 7}",
        &[0xff; 100],
    ] {
        std::fs::write(&cache, garbage).unwrap();
        let fresh = Tuner::new(Some(cache.clone()), fake());
        compile(&gpu, &model, Some(&fresh));
        assert_eq!(fresh.measured(), tuned);
        // Saving over garbage writes a cache that reads back.
        fresh.save().unwrap();
        let reread = Tuner::new(Some(cache.clone()), Box::new(NoClock));
        compile(&gpu, &model, Some(&reread));
        assert_eq!(reread.measured(), 0);
    }
    std::fs::remove_dir_all(cache.parent().unwrap()).unwrap();
}

/// `PlanOptions::tune` through the front door: the plan writes the cache named by `ATROUS_TUNE_CACHE` (the only test
/// in this binary that reads the environment).
#[test]
fn tuned_plans_should_write_the_cache_named_by_the_environment() {
    let gpu = gpu_or_skip!();
    let (model, _) = model();
    let cache = scratch("env");
    std::env::set_var("ATROUS_TUNE_CACHE", &cache);
    let plan = Plan::compile(
        gpu.clone(),
        &model,
        &shapes(),
        PlanOptions {
            tune: true,
            ..Default::default()
        },
        &WeightCache::default(),
    )
    .unwrap();
    assert!(plan
        .conv_choices()
        .iter()
        .any(|c| matches!(c.source, ChoiceSource::Measured(_))));
    let text = std::fs::read_to_string(&cache).unwrap();
    assert!(text.contains("\"version\": 1"), "{text}");
    assert!(text.contains(&gpu.info().name), "{text}");
    std::fs::remove_dir_all(cache.parent().unwrap()).unwrap();
}

/// A clock that times the heuristic's choice at 1 and every other kernel at `others`.
struct MarginClock {
    heuristic: HashMap<String, Path>,
    others: f64,
}

impl Clock for MarginClock {
    fn time(
        &mut self,
        node: &str,
        path: Path,
        _: f64,
        _: &mut dyn FnMut() -> Result<()>,
    ) -> Result<f64> {
        Ok(match self.heuristic[node] == path {
            true => 1.0,
            false => self.others,
        })
    }
}

/// Within the noise (less than 5% faster) the heuristic's choice stands; a clear win replaces it.
#[test]
fn tuner_should_keep_the_heuristic_choice_unless_another_is_clearly_faster() {
    let gpu = gpu_or_skip!();
    let (model, _) = model();
    let heuristic: HashMap<String, Path> = compile(&gpu, &model, None)
        .conv_choices()
        .iter()
        .map(|c| (c.node.clone(), c.path))
        .collect();
    for (others, keeps) in [(0.97, true), (0.8, false)] {
        let clock = MarginClock {
            heuristic: heuristic.clone(),
            others,
        };
        let tuner = Tuner::new(None, Box::new(clock));
        let plan = compile(&gpu, &model, Some(&tuner));
        for c in plan.conv_choices() {
            if matches!(c.source, ChoiceSource::Measured(_)) {
                assert_eq!(
                    c.path == heuristic[&c.node],
                    keeps,
                    "{} at {others}: {} vs {}: {:?}",
                    c.node,
                    c.path,
                    heuristic[&c.node],
                    c.source
                );
            }
        }
    }
}
