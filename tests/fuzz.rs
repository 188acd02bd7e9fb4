//! Bounded fuzz runs over everything that parses untrusted bytes, without a GPU: atrous's portable model files
//! (safetensors bytes, and the graph document mutated structurally by `arbitrary`), input tensor files and images.
//! (ONNX files are fuzzed in tests/onnx.rs.) Each input must parse and validate, or fail with an error: never a panic,
//! a hang or an allocation in proportion to a number in the file. `ATROUS_FUZZ_ITERS=N` runs longer (README).

mod common;

use arbitrary::Unstructured;
use atrous::graph::GraphBuilder;
use atrous::ops::{
    Activation, Conv2d, ConvWeights, MaxPool2d, Padding2d, Resize, ResizeMode, ResizeTarget,
};
use atrous::weights::Weights;
use atrous::{Model, Shape};
use rand::{RngCore, SeedableRng};
use serde_json::Value;
use std::collections::HashMap;

fn iterations() -> usize {
    std::env::var("ATROUS_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("atrous-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A small model using most ops: conv (bias, batch norm, padding, dilation), pooling with indices and unpooling,
/// resize, concat, add, softmax.
fn seed_model() -> Model {
    let mut b = GraphBuilder::new();
    let x = b.input("input", 2);
    let conv = |b: &mut GraphBuilder, name: &str, x: &str, dilation| {
        let p = Conv2d {
            padding: Padding2d::uniform(dilation),
            dilation: [dilation; 2],
            activation: Activation::Relu,
            ..Conv2d::new(2, 2, [3, 3])
        };
        let w = ConvWeights {
            weight: vec![0.1; 36],
            bias: Some(vec![0.0; 2]),
            batch_norm: None,
        };
        b.conv2d(name, x, p, w).unwrap()
    };
    let a = conv(&mut b, "a", &x, 1);
    let d = conv(&mut b, "d", &a, 2);
    let (p, i) = b.max_pool2d_with_indices("pool", &d, MaxPool2d::new([2, 2]));
    let u = b.max_unpool2d("unpool", &p, &i, atrous::ops::MaxUnpool2d::new([2, 2]));
    let r = b.resize(
        "up",
        &u,
        Resize {
            mode: ResizeMode::Bilinear {
                align_corners: false,
            },
            target: ResizeTarget::Scale([1.0, 1.0]),
        },
    );
    let s = b.add("sum", &r, &a);
    let c = b.concat("cat", &[&s, &d]);
    let out = b.softmax("out", &c);
    b.finish(&[&out]).unwrap()
}

/// Parses and validates `json` as a model document over `weights` and infers it at a small size.
fn check_document(json: &str, weights: Weights) {
    if let Ok(model) = Model::from_json(json, weights) {
        let shapes = HashMap::from([("input".to_string(), Shape::new(1, 2, 8, 8))]);
        let _ = model.graph.infer(&shapes);
        let _ = model.check_weights();
    }
}

/// Replaces numbers, strings and entries of a JSON value with hostile ones chosen by `u`.
fn mutate(v: &mut Value, u: &mut Unstructured) {
    let hostile = |u: &mut Unstructured| -> Value {
        match u.int_in_range(0..=6u8).unwrap_or(0) {
            0 => Value::from(u64::MAX),
            1 => Value::from(u.arbitrary::<u64>().unwrap_or(1 << 40)),
            2 => Value::from(-(u.arbitrary::<u32>().unwrap_or(1) as i64)),
            3 => Value::from(0),
            4 => Value::from(u.arbitrary::<f64>().unwrap_or(1e300)),
            5 => Value::from(u.arbitrary::<String>().unwrap_or_default()),
            _ => Value::Null,
        }
    };
    match v {
        Value::Number(_) | Value::String(_) | Value::Bool(_) | Value::Null => {
            if u.ratio(1, 8).unwrap_or(false) {
                *v = hostile(u);
            }
        }
        Value::Array(items) => {
            if !items.is_empty() && u.ratio(1, 16).unwrap_or(false) {
                let k = u.choose_index(items.len()).unwrap_or(0);
                if u.arbitrary::<bool>().unwrap_or(false) {
                    items.remove(k);
                } else {
                    let copy = items[k].clone();
                    items.push(copy);
                }
            }
            for item in items {
                mutate(item, u);
            }
        }
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            if !keys.is_empty() && u.ratio(1, 16).unwrap_or(false) {
                map.remove(&keys[u.choose_index(keys.len()).unwrap_or(0)]);
            }
            for (_, item) in map.iter_mut() {
                mutate(item, u);
            }
        }
    }
}

#[test]
fn mutated_graph_documents_should_validate_or_fail_cleanly() {
    let model = seed_model();
    let doc: Value = serde_json::from_str(&model.to_json().unwrap()).unwrap();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(11);
    for _ in 0..iterations() {
        let mut bytes = vec![0u8; 512];
        rng.fill_bytes(&mut bytes);
        let mut u = Unstructured::new(&bytes);
        let mut d = doc.clone();
        mutate(&mut d, &mut u);
        let mut weights = Weights::new();
        for name in model.weights.names() {
            let t = model.weights.get(&name).unwrap();
            weights.insert(name, t.shape, t.data).unwrap();
        }
        check_document(&d.to_string(), weights);
    }
}

#[test]
fn mutated_model_and_tensor_files_should_load_or_fail_cleanly() {
    let model_path = temp("seed.safetensors");
    seed_model().save(&model_path).unwrap();
    let mut inputs = Weights::new();
    inputs
        .insert(
            "input",
            vec![1, 2, 4, 4],
            (0..32).map(|v| v as f32).collect(),
        )
        .unwrap();
    let input_path = temp("input.safetensors");
    inputs.save(&input_path, HashMap::new()).unwrap();
    let seeds = [
        std::fs::read(&model_path).unwrap(),
        std::fs::read(&input_path).unwrap(),
    ];
    let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
    let path = temp("mutated.safetensors");
    for i in 0..iterations() {
        std::fs::write(&path, common::mutate_bytes(&mut rng, &seeds[i % 2])).unwrap();
        if let Ok(model) = Model::load(&path) {
            let shapes = HashMap::from([("input".to_string(), Shape::new(1, 2, 8, 8))]);
            let _ = model.graph.infer(&shapes);
        }
        if let Ok(w) = Weights::open(&path) {
            for name in w.names() {
                let _ = w.get(&name);
            }
        }
    }
}

#[test]
fn mutated_images_should_load_or_fail_cleanly() {
    let mut seeds = Vec::new();
    let img = image::RgbaImage::from_fn(12, 9, |x, y| {
        image::Rgba([x as u8 * 20, y as u8 * 25, 7, 255])
    });
    for ext in ["png", "jpg", "tiff", "webp"] {
        let path = temp(&format!("seed.{ext}"));
        let rgb = image::DynamicImage::ImageRgba8(img.clone()).to_rgb8();
        rgb.save(&path).unwrap();
        seeds.push((ext, std::fs::read(&path).unwrap()));
    }
    let mut rng = rand::rngs::SmallRng::seed_from_u64(9);
    for i in 0..iterations() {
        let (ext, seed) = &seeds[i % seeds.len()];
        let path = temp(&format!("mutated.{ext}"));
        std::fs::write(&path, common::mutate_bytes(&mut rng, seed)).unwrap();
        let _ = atrous::image_io::load_image(&path);
    }
}
