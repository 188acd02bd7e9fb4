//! Whole models end to end through the Engine, one bench per model: upload the input, one submit, read back the
//! output (the latency `atrous bench` reports), batch 1. The committed fixtures (tests/fixtures/zoo: torchvision
//! and UNet builders; tests/fixtures/smp: segmentation_models_pytorch folders; both small random-weight variants at
//! the fixtures' input sizes) and the shipped selfie segmenters (weights/) at their own input sizes; plus any model
//! named by the environment, e.g. a full-size export:
//!
//!     cargo bench --bench models
//!     ATROUS_BENCH_MODEL=deeplabv3.safetensors ATROUS_BENCH_SIZE=520x520 cargo bench --bench models -- env
//!
//! ATROUS_BENCH_MODEL takes what `atrous run --model` does (an atrous model, a state_dict, an smp folder;
//! ATROUS_BENCH_ARCH for a bare state_dict's architecture); ATROUS_BENCH_SIZE defaults to the model's own size,
//! else 520x520. Throughput: the FLOPs of the plan's convolutions (Gelem/s = GFLOP/s).

mod common;

use atrous::weights::Weights;
use atrous::{models, Engine, Gpu, Model, Shape, Tensor};
use common::dims;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Any model file, as the CLI loads it.
fn load(path: &Path, arch: Option<&str>) -> atrous::Result<Model> {
    models::open(path, arch)
}

/// The input size a model asks for, else `fallback`.
fn own_size(model: &Model, fallback: [usize; 2]) -> [usize; 2] {
    match &model.info.preprocess {
        Some(spec) => {
            let (h, w) = atrous::segment::input_size(&spec.input_size, fallback[0], fallback[1]);
            [h, w]
        }
        None => fallback,
    }
}

/// The 4-D shape of a fixture's `input` tensor.
fn fixture_input(io: &Path) -> Shape {
    let shape = Weights::open(io)
        .and_then(|w| {
            w.shape("input")
                .ok_or_else(|| atrous::Error::Model("no input".into()))
        })
        .unwrap_or_else(|e| panic!("{}: {e}", io.display()));
    Shape::new(shape[0], shape[1], shape[2], shape[3])
}

/// (bench name, model path, input shape) of every committed model.
fn committed() -> Vec<(String, PathBuf, Shape)> {
    let mut found = Vec::new();
    let sorted = |dir: PathBuf| {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        entries.sort();
        entries
    };
    for path in sorted(root().join("tests/fixtures/zoo")) {
        if path.extension().is_some_and(|e| e == "safetensors") {
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            found.push((format!("zoo_{stem}"), path.clone(), fixture_input(&path)));
        }
    }
    for dir in sorted(root().join("tests/fixtures/smp")) {
        if dir.join("config.json").is_file() {
            let stem = dir.file_name().unwrap().to_string_lossy().to_string();
            let input = fixture_input(&dir.join("io.safetensors"));
            found.push((format!("smp_{stem}"), dir, input));
        }
    }
    for name in ["selfie_segmenter", "selfie_segmenter_landscape"] {
        let path = root().join("weights").join(format!("{name}.safetensors"));
        if let Ok(model) = Model::load(&path) {
            let [h, w] = own_size(&model, [256, 256]);
            let channels = model.graph.inputs[0].channels;
            found.push((name.to_string(), path, Shape::new(1, channels, h, w)));
        }
    }
    found
}

fn bench_model(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    gpu: &Arc<Gpu>,
    name: &str,
    model: Model,
    shape: Shape,
) {
    let input_name = model.graph.inputs[0].name.clone();
    let output = match model.graph.outputs.iter().any(|o| o == "out") {
        true => "out".to_string(),
        false => model.graph.outputs[0].clone(),
    };
    let engine = Engine::new(gpu.clone(), model);
    let plan = engine
        .plan(&[(&input_name, shape)])
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let x = Tensor {
        shape,
        data: common::values(shape.numel(), 7),
    };
    let flops: u64 = plan.kernels().map(|k| k.flops()).sum();
    group.throughput(Throughput::Elements(flops.max(1)));
    group.bench_function(format!("{name}_{}", dims(shape)), |b| {
        b.iter(|| plan.run(&[(&input_name, &x)], &[&output]).unwrap())
    });
}

fn benches(c: &mut Criterion) {
    let gpu = Arc::new(common::gpu());
    let mut group = common::group(c, "models");
    for (name, path, shape) in committed() {
        if !common::selected(&name) {
            continue;
        }
        let model = load(&path, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        bench_model(&mut group, &gpu, &name, model, shape);
    }
    if let Some(path) = std::env::var_os("ATROUS_BENCH_MODEL").map(PathBuf::from) {
        let arch = std::env::var("ATROUS_BENCH_ARCH").ok();
        let model = load(&path, arch.as_deref())
            .unwrap_or_else(|e| panic!("ATROUS_BENCH_MODEL {}: {e}", path.display()));
        let [h, w] = match std::env::var("ATROUS_BENCH_SIZE") {
            Ok(s) => {
                let parse = |t: &str| t.trim().parse::<usize>().ok();
                match s.split_once('x').map(|(h, w)| (parse(h), parse(w))) {
                    Some((Some(h), Some(w))) => [h, w],
                    _ => panic!("ATROUS_BENCH_SIZE {s:?}: expected HEIGHTxWIDTH"),
                }
            }
            Err(_) => own_size(&model, [520, 520]),
        };
        let shape = Shape::new(1, model.graph.inputs[0].channels, h, w);
        let stem = path
            .file_stem()
            .map_or("model".into(), |s| s.to_string_lossy().to_string());
        bench_model(&mut group, &gpu, &format!("env_{stem}"), model, shape);
    }
    group.finish();
}

criterion_group!(models_group, benches);
criterion_main!(models_group);
