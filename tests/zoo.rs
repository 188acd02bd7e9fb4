//! The model zoo against PyTorch: each builder on its fixture (tests/fixtures/zoo, written by
//! tools/make_fixtures.py: a small random-weight variant's state_dict, an input and PyTorch's logits), plus the
//! errors for missing, misshapen and unrecognised state_dicts.

mod common;

use atrous::gpu::Precision;
use atrous::models;
use atrous::plan::PlanOptions;
use atrous::weights::Weights;
use atrous::{Engine, Model};
use common::{compare, f16_options, numerics, tensor};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/zoo")
        .join(format!("{name}.safetensors"))
}

const FIXTURES: [&str; 10] = [
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "fcn_resnet50",
    "fcn_resnet101",
    "deeplabv3_mobilenet_v3_large",
    "lraspp_mobilenet_v3_large",
    "unet",
    "unet_bilinear",
    "unet_odd",
    "unet_bilinear_odd",
];

/// Builds `name`'s fixture from its state_dict (architecture from the metadata), runs it, and checks it against
/// PyTorch: max abs logit error <= 1e-3, argmax agreement >= 99.9%.
fn check_fixture(name: &str) {
    let gpu = gpu_or_skip!();
    let (err, agree, _) = run_fixture(gpu, name, PlanOptions::default());
    assert!(err <= 1e-3, "{name}: max abs logit error {err}");
    assert!(agree >= 0.999, "{name}: argmax agreement {agree}");
}

/// Runs `name`'s fixture in `precision`: (max abs logit error, argmax agreement, max |expected logit|).
fn run_fixture(
    gpu: std::sync::Arc<atrous::Gpu>,
    name: &str,
    options: PlanOptions,
) -> (f32, f64, f32) {
    let weights = Weights::open(fixture(name)).unwrap();
    let x = tensor(&weights, "input");
    let want = tensor(&weights, "expected");
    let model = models::build(weights, None).unwrap();
    assert_eq!(model.graph.outputs, ["out"]);
    let got = Engine::with_options(gpu, model, options)
        .run(&[("input", &x)], &["out"])
        .unwrap()["out"]
        .to_f32();
    let (err, agree) = compare(&got, &want);
    let scale = want.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    eprintln!(
        "{name} ({}): input {}, max abs logit error {err:.3e} (max |logit| {scale:.3}), argmax agreement {:.4}%",
        numerics(&options),
        x.shape,
        agree * 100.0
    );
    (err, agree, scale)
}

/// Every fixture in f16 against PyTorch's f32 logits, with f32 and with f16 conv math. f16 storage of every
/// activation and weight loses about three decimal digits per layer, f16 products about as much again; the bounds
/// are what each reaches on these fixtures with a margin (measured values in the README).
#[test]
fn zoo_in_f16_should_match_pytorch() {
    let gpu = gpu_or_skip!(Precision::F16);
    for f16_math in [false, true] {
        let (tolerance, argmax) = ZOO_F16_BOUNDS[f16_math as usize];
        for name in FIXTURES {
            let options = f16_options(f16_math);
            let (err, agree, scale) = run_fixture(gpu.clone(), name, options);
            let what = format!("{name} ({})", numerics(&options));
            assert!(
                err <= tolerance * scale.max(1.0),
                "{what}: max abs logit error {err} (max |logit| {scale})"
            );
            assert!(agree >= argmax, "{what}: argmax agreement {agree}");
        }
    }
}

/// (max abs logit error relative to max(1, max |logit|), fraction of pixels whose class must agree with PyTorch)
/// in f16 with f32 conv math, then with f16 conv math.
const ZOO_F16_BOUNDS: [(f32, f64); 2] = [(5e-3, 0.998), (1e-2, 0.998)];

#[test]
fn deeplabv3_resnet50_should_match_pytorch() {
    check_fixture("deeplabv3_resnet50");
}

#[test]
fn deeplabv3_resnet101_should_match_pytorch() {
    check_fixture("deeplabv3_resnet101");
}

#[test]
fn fcn_resnet50_should_match_pytorch() {
    check_fixture("fcn_resnet50");
}

#[test]
fn fcn_resnet101_should_match_pytorch() {
    check_fixture("fcn_resnet101");
}

#[test]
fn deeplabv3_mobilenet_v3_large_should_match_pytorch() {
    check_fixture("deeplabv3_mobilenet_v3_large");
}

#[test]
fn lraspp_mobilenet_v3_large_should_match_pytorch() {
    check_fixture("lraspp_mobilenet_v3_large");
}

#[test]
fn unet_transposed_should_match_pytorch() {
    check_fixture("unet");
}

#[test]
fn unet_bilinear_should_match_pytorch() {
    check_fixture("unet_bilinear");
}

/// 67 x 93 and 45 x 61 inputs: every level pads its upsampled map to the skip's size, as PyTorch's `F.pad` does.
#[test]
fn unet_at_sizes_that_need_padding_should_match_pytorch() {
    check_fixture("unet_odd");
    check_fixture("unet_bilinear_odd");
}

/// Every tensor of a fixture except `drop` (and the ones atrous cannot read, such as int64 counters), in memory,
/// with `replace` substituted.
fn copy_weights(name: &str, drop: &str, replace: Option<(&str, Vec<usize>)>) -> Weights {
    let file = Weights::open(fixture(name)).unwrap();
    let mut w = Weights::new();
    for n in file.names() {
        if n == drop {
            continue;
        }
        if let Ok(t) = file.get(&n) {
            w.insert(n, t.shape, t.data).unwrap();
        }
    }
    if let Some((n, shape)) = replace {
        let len = shape.iter().product();
        w.insert(n, shape, vec![0.5; len]).unwrap();
    }
    w
}

/// The error building `w` gives; a build that succeeds fails the test (without printing the whole model).
fn build_error(w: Weights, arch: Option<&str>) -> String {
    match models::build(w, arch) {
        Ok(m) => panic!("{arch:?}: built a model of {} nodes", m.graph.nodes.len()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_missing_tensor_should_be_named() {
    for (fixture, arch, missing) in [
        (
            "deeplabv3_resnet50",
            "deeplabv3_resnet50",
            "backbone.layer3.1.conv2.weight",
        ),
        (
            "deeplabv3_resnet50",
            "deeplabv3_resnet50",
            "classifier.0.convs.2.1.running_var",
        ),
        (
            "lraspp_mobilenet_v3_large",
            "lraspp_mobilenet_v3_large",
            "backbone.5.block.2.fc2.bias",
        ),
        ("unet", "unet", "up2.conv.double_conv.4.weight"),
    ] {
        let w = copy_weights(fixture, missing, None);
        let err = build_error(w, Some(arch));
        assert!(
            err.contains(missing) && err.contains("missing"),
            "{arch} without {missing}: {err}"
        );
    }
}

#[test]
fn a_misshapen_tensor_should_be_named_with_both_shapes() {
    let w = copy_weights(
        "fcn_resnet50",
        "",
        Some(("backbone.layer2.0.bn2.running_mean", vec![7])),
    );
    let err = build_error(w, Some("fcn_resnet50"));
    assert!(
        err.contains("backbone.layer2.0.bn2.running_mean")
            && err.contains("[7]")
            && err.contains("[8]"),
        "{err}"
    );
}

#[test]
fn an_unknown_layout_should_list_the_supported_architectures() {
    let mut w = Weights::new();
    w.insert("encoder.stem.weight", vec![4, 3, 3, 3], vec![0.0; 108])
        .unwrap();
    let err = build_error(w, None);
    for arch in models::architectures() {
        assert!(err.contains(arch), "{err}");
    }
    assert!(err.contains("encoder.stem.weight"), "{err}");

    let w = Weights::new();
    let err = build_error(w, Some("segformer_b0"));
    assert!(
        err.contains("segformer_b0") && err.contains("lraspp_mobilenet_v3_large"),
        "{err}"
    );
}

#[test]
fn architecture_should_be_detected_from_key_names() {
    for (fixture, arch) in [
        ("deeplabv3_resnet50", "deeplabv3_resnet50"),
        ("fcn_resnet101", "fcn_resnet50"), // a shallow variant: layer3 has 3 blocks, not 23
        (
            "deeplabv3_mobilenet_v3_large",
            "deeplabv3_mobilenet_v3_large",
        ),
        ("lraspp_mobilenet_v3_large", "lraspp_mobilenet_v3_large"),
        ("unet_bilinear", "unet"),
    ] {
        // In-memory copies carry no metadata, so the keys decide.
        let w = copy_weights(fixture, "", None);
        assert_eq!(models::detect(&w).unwrap(), arch, "{fixture}");
        let model = models::build(w, None).unwrap();
        assert_eq!(model.info.architecture.as_deref(), Some(arch));
    }
}

#[test]
fn a_zoo_model_should_round_trip_through_the_portable_format() {
    let gpu = gpu_or_skip!();
    let weights = Weights::open(fixture("lraspp_mobilenet_v3_large")).unwrap();
    let x = tensor(&weights, "input");
    let model = models::build(weights, None).unwrap();
    assert_eq!(model.info.labels.len(), 21);
    let dir = std::env::temp_dir().join(format!("atrous-zoo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lraspp.safetensors");
    model.save(&path).unwrap();
    let loaded = Model::load(&path).unwrap();
    assert_eq!(loaded.info, model.info);
    let a = Engine::new(gpu.clone(), model)
        .run(&[("input", &x)], &["out"])
        .unwrap();
    let b = Engine::new(gpu, loaded)
        .run(&[("input", &x)], &["out"])
        .unwrap();
    assert_eq!(a, b);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Full-size torchvision models (520x520, random weights) against PyTorch. Ignored by default: it needs files this
/// repository does not ship and minutes of GPU time. To run it:
///
/// ```text
/// for a in deeplabv3_resnet50 deeplabv3_resnet101 deeplabv3_mobilenet_v3_large fcn_resnet50 fcn_resnet101 \
///          lraspp_mobilenet_v3_large; do
///   python tools/export.py --arch $a --random --seed 1 --out $DIR/$a.safetensors \
///       --reference $DIR/$a.reference.safetensors --size 520 520
/// done
/// ATROUS_ZOO_DIR=$DIR cargo test --release --test zoo -- --ignored --nocapture
/// ```
///
/// Each `<arch>.safetensors` found is built, run on the reference's `input` and compared with its `expected`:
/// max abs error <= 1e-3 x max(1, max |expected|), argmax agreement >= 99.9%.
#[test]
#[ignore = "needs ATROUS_ZOO_DIR with tools/export.py outputs"]
fn full_size_torchvision_models_should_match_pytorch() {
    let gpu = gpu_or_skip!();
    let dir = PathBuf::from(
        std::env::var("ATROUS_ZOO_DIR").expect("set ATROUS_ZOO_DIR to the tools/export.py outputs"),
    );
    let mut ran = 0;
    for arch in &models::architectures()[..6] {
        let (model_path, reference) = (
            dir.join(format!("{arch}.safetensors")),
            dir.join(format!("{arch}.reference.safetensors")),
        );
        if !model_path.exists() || !reference.exists() {
            eprintln!("{arch}: no files in {}, skipped", dir.display());
            continue;
        }
        let r = Weights::open(&reference).unwrap();
        let (x, want) = (tensor(&r, "input"), tensor(&r, "expected"));
        let model = models::build(Weights::open(&model_path).unwrap(), None).unwrap();
        let start = std::time::Instant::now();
        let got = Engine::new(gpu.clone(), model)
            .run(&[("input", &x)], &["out"])
            .unwrap()["out"]
            .to_f32();
        let (err, agree) = compare(&got, &want);
        let scale = want.data.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        eprintln!(
            "{arch}: {} in {:.1?}, max abs error {err:.3e} (max |logit| {scale:.2}), argmax agreement {:.4}%",
            x.shape,
            start.elapsed(),
            agree * 100.0
        );
        assert!(err <= 1e-3 * scale, "{arch}: max abs error {err}");
        assert!(agree >= 0.999, "{arch}: argmax agreement {agree}");
        ran += 1;
    }
    assert!(ran > 0, "no exports found in {}", dir.display());
}
