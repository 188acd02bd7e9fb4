//! segmentation_models_pytorch against PyTorch: each fixture in tests/fixtures/smp (written by
//! tools/make_smp_fixtures.py: an smp `save_pretrained` folder of a narrow random-weight model, plus
//! `io.safetensors` with an input and PyTorch's logits), opened as a folder; and the errors for what is unsupported.

mod common;

use atrous::gpu::Precision;
use atrous::models;
use atrous::plan::PlanOptions;
use atrous::weights::Weights;
use atrous::Engine;
use common::{compare, f16_options, numerics, tensor};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/smp")
        .join(name)
}

/// Opens `name`'s folder, runs its input and checks PyTorch's logits: max abs error <= 1e-3, argmax agreement
/// >= 99.9%.
fn check_fixture(name: &str, arch: &str) {
    let gpu = gpu_or_skip!();
    let (err, agree, _) = run_fixture(gpu, name, arch, PlanOptions::default());
    assert!(err <= 1e-3, "{name}: max abs logit error {err}");
    assert!(agree >= 0.999, "{name}: argmax agreement {agree}");
}

/// Runs `name`'s fixture in `precision`: (max abs logit error, argmax agreement, max |expected logit|).
fn run_fixture(
    gpu: std::sync::Arc<atrous::Gpu>,
    name: &str,
    arch: &str,
    options: PlanOptions,
) -> (f32, f64, f32) {
    let dir = fixture(name);
    let io = Weights::open(dir.join("io.safetensors")).unwrap();
    let x = tensor(&io, "input");
    let want = tensor(&io, "expected");
    let model = models::open(&dir, None).unwrap();
    assert_eq!(model.info.architecture.as_deref(), Some(arch));
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

/// Every smp fixture in f16 against PyTorch's f32 logits, with f32 and with f16 conv math. These narrow, deep
/// random-weight models lose more to f16 than the zoo's (worst measured per math in the README).
#[test]
fn smp_in_f16_should_match_pytorch() {
    let gpu = gpu_or_skip!(Precision::F16);
    for f16_math in [false, true] {
        let (tolerance, argmax) = SMP_F16_BOUNDS[f16_math as usize];
        for (name, arch) in [
            ("unet", "smp_unet"),
            ("unet_d5", "smp_unet"),
            ("deeplabv3", "smp_deeplabv3"),
            ("linknet", "smp_linknet"),
            ("pspnet", "smp_pspnet"),
            ("deeplabv3plus", "smp_deeplabv3plus"),
            ("deeplabv3_r50", "smp_deeplabv3"),
            ("unet_resnext", "smp_unet"),
            ("fpn", "smp_fpn"),
            ("fpn_cat", "smp_fpn"),
        ] {
            let options = f16_options(f16_math);
            let (err, agree, scale) = run_fixture(gpu.clone(), name, arch, options);
            let what = format!("{name} ({})", numerics(&options));
            assert!(
                err <= tolerance * scale.max(1.0),
                "{what}: max abs logit error {err} (max |logit| {scale})"
            );
            assert!(agree >= argmax, "{what}: argmax agreement {agree}");
        }
    }
}

#[test]
fn smp_unet_depth4_batch2_should_match_pytorch() {
    check_fixture("unet", "smp_unet");
}

#[test]
fn smp_unet_depth5_should_match_pytorch() {
    check_fixture("unet_d5", "smp_unet");
}

/// A bare state_dict (no config.json) is recognised by its keys, and a Unet's depth read from its decoder blocks.
#[test]
fn smp_state_dict_alone_should_be_detected_and_built() {
    let w = Weights::open(fixture("unet_d5").join("model.safetensors")).unwrap();
    assert_eq!(models::detect(&w).unwrap(), "smp_unet");
    let gpu = gpu_or_skip!();
    let dir = fixture("unet");
    let io = Weights::open(dir.join("io.safetensors")).unwrap();
    let x = tensor(&io, "input");
    let want = tensor(&io, "expected");
    let model = models::build(Weights::open(dir.join("model.safetensors")).unwrap(), None).unwrap();
    assert_eq!(model.info.architecture.as_deref(), Some("smp_unet"));
    let got = Engine::new(gpu, model)
        .run(&[("input", &x)], &["out"])
        .unwrap()["out"]
        .to_f32();
    let (err, agree) = compare(&got, &want);
    assert!(err <= 1e-3 && agree >= 0.999, "{err} {agree}");
}

#[test]
fn smp_unsupported_encoder_should_be_named() {
    let dir = std::env::temp_dir().join(format!("atrous-smp-encoder-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = fixture("unet_d5");
    let config = std::fs::read_to_string(src.join("config.json"))
        .unwrap()
        .replace("\"resnet18\"", "\"efficientnet-b0\"");
    std::fs::write(dir.join("config.json"), config).unwrap();
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let err = match models::open(&dir, None) {
        Ok(_) => panic!("must fail"),
        Err(e) => e.to_string(),
    };
    std::fs::remove_dir_all(&dir).ok();
    assert!(err.contains("efficientnet-b0"), "{err}");
    assert!(err.contains("resnet34"), "{err}");
}

/// A ResNeXt encoder: grouped 3x3 convolutions, the group count read from the weights.
#[test]
fn smp_unet_resnext_should_match_pytorch() {
    check_fixture("unet_resnext", "smp_unet");
}

#[test]
fn smp_fpn_should_match_pytorch() {
    check_fixture("fpn", "smp_fpn");
}

/// `decoder_merge_policy="cat"`, bilinear top-down upsampling, encoder depth 4 (output twice the input's size).
#[test]
fn smp_fpn_cat_bilinear_depth4_should_match_pytorch() {
    check_fixture("fpn_cat", "smp_fpn");
}

#[test]
fn smp_fpn_on_other_weights_should_name_the_missing_tensor() {
    let dir = std::env::temp_dir().join(format!("atrous-smp-fpn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = fixture("unet_d5");
    let config = std::fs::read_to_string(src.join("config.json"))
        .unwrap()
        .replace("\"Unet\"", "\"FPN\"");
    std::fs::write(dir.join("config.json"), config).unwrap();
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let err = match models::open(&dir, None) {
        Ok(_) => panic!("must fail"),
        Err(e) => e.to_string(),
    };
    std::fs::remove_dir_all(&dir).ok();
    assert!(err.contains("decoder.p5.weight"), "{err}");
}

#[test]
fn smp_fpn_unsupported_options_should_be_named() {
    let src = fixture("fpn");
    let config = std::fs::read_to_string(src.join("config.json")).unwrap();
    for (from, to, named) in [
        ("\"add\"", "\"max\"", "decoder_merge_policy"),
        ("\"nearest\"", "\"bicubic\"", "decoder_interpolation"),
    ] {
        assert!(config.contains(from), "{from} not in {config}");
        let cfg = models::smp::SmpConfig::from_json(&config.replace(from, to)).unwrap();
        let w = Weights::open(src.join("model.safetensors")).unwrap();
        let err = match models::smp::build(w, &cfg) {
            Ok(_) => panic!("{to} must fail"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(named) && err.contains(to.trim_matches('"')),
            "{err}"
        );
    }
}

#[test]
fn smp_deeplabv3_should_match_pytorch() {
    check_fixture("deeplabv3", "smp_deeplabv3");
}

#[test]
fn smp_linknet_should_match_pytorch() {
    check_fixture("linknet", "smp_linknet");
}

#[test]
fn smp_pspnet_batch2_should_match_pytorch() {
    check_fixture("pspnet", "smp_pspnet");
}

#[test]
fn smp_deeplabv3plus_should_match_pytorch() {
    check_fixture("deeplabv3plus", "smp_deeplabv3plus");
}

#[test]
fn smp_deeplabv3_resnet50_dilated_should_match_pytorch() {
    check_fixture("deeplabv3_r50", "smp_deeplabv3");
}

/// smp 0.4 and older named DeepLabV3's decoder `decoder.0` (ASPP), `decoder.1` (conv), `decoder.2` (BN): the same
/// weights under those names, as a bare state_dict, give the same logits.
#[test]
fn smp_deeplabv3_v04_names_should_match_pytorch() {
    let gpu = gpu_or_skip!();
    let dir = fixture("deeplabv3");
    let io = Weights::open(dir.join("io.safetensors")).unwrap();
    let x = tensor(&io, "input");
    let want = tensor(&io, "expected");
    let src = Weights::open(dir.join("model.safetensors")).unwrap();
    let mut old = Weights::new();
    for name in src.names() {
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        let t = src.get(&name).unwrap();
        let renamed = name
            .replace("decoder.aspp.", "decoder.0.")
            .replace("decoder.conv.", "decoder.1.")
            .replace("decoder.bn.", "decoder.2.");
        old.insert(&renamed, t.shape, t.data).unwrap();
    }
    assert!(old.contains("decoder.0.convs.0.0.weight"));
    assert_eq!(models::detect(&old).unwrap(), "smp_deeplabv3");
    let model = models::build(old, None).unwrap();
    let got = Engine::new(gpu, model)
        .run(&[("input", &x)], &["out"])
        .unwrap()["out"]
        .to_f32();
    let (err, agree) = compare(&got, &want);
    assert!(err <= 1e-3, "max abs logit error {err}");
    assert!(agree >= 0.999, "argmax agreement {agree}");
}

/// (max abs logit error relative to max(1, max |logit|), fraction of pixels whose class must agree with PyTorch)
/// in f16 with f32 conv math, then with f16 conv math.
const SMP_F16_BOUNDS: [(f32, f64); 2] = [(1.5e-2, 0.997), (3e-2, 0.995)];
