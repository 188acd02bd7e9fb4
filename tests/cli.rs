//! The `atrous` binary: `run` on a hand-built graph saved in the portable format gives the CPU executor's result;
//! bad input prints one line and exits non-zero.

mod common;

use atrous::gpu::Precision;
use atrous::graph::GraphBuilder;
use atrous::ops::{Activation, Conv2d, ConvWeights, Padding2d, Resize, ResizeMode, ResizeTarget};
use atrous::weights::Weights;
use atrous::{reference, Model, Shape, Tensor};
use common::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("atrous-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn atrous(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_atrous"))
        .args(args)
        .output()
        .unwrap()
}

fn small_model() -> Model {
    let mut r = rng(1);
    let mut b = GraphBuilder::new();
    let x = b.input("input", 3);
    let p = Conv2d {
        stride: [2, 2],
        padding: Padding2d::uniform(1),
        ..Conv2d::new(3, 4, [3, 3])
    };
    let w = ConvWeights {
        weight: random_vec(&mut r, 4 * 3 * 9),
        bias: Some(random_vec(&mut r, 4)),
        batch_norm: None,
    };
    let c = b.conv2d("conv", &x, p, w).unwrap();
    let c = b.activation("relu", &c, Activation::Relu);
    let resize = Resize {
        mode: ResizeMode::Bilinear {
            align_corners: false,
        },
        target: ResizeTarget::Size([11, 13]),
    };
    b.resize("out", &c, resize);
    b.finish(&["out"]).unwrap()
}

/// `--precision f16` (with f32 or f16 conv math) where the adapter has SHADER_F16 gives the same result within the
/// f16 tolerance; where it has not, one line naming the missing feature. f16 math on f32 storage is one line too.
#[test]
fn run_should_give_the_cpu_executors_result() {
    let Some(gpu) = gpu() else {
        return;
    };
    let dir = temp_dir("run");
    let (model_path, input_path, output_path) = (
        dir.join("model.safetensors"),
        dir.join("in.safetensors"),
        dir.join("out.safetensors"),
    );
    let model = small_model();
    model.save(&model_path).unwrap();
    let x = random_tensor(&mut rng(2), Shape::new(2, 3, 11, 13));
    let mut input = Weights::new();
    input
        .insert("input", x.shape.dims().to_vec(), x.data.clone())
        .unwrap();
    input.save(&input_path, HashMap::new()).unwrap();
    let want = reference::run_graph(&model, &HashMap::from([("input".to_string(), x)])).unwrap();
    let want: Tensor = want["out"].to_f32();

    let runs = [
        (Precision::F32, "auto"),
        (Precision::F16, "off"),
        (Precision::F16, "on"),
    ];
    for (precision, f16_math) in runs {
        let _ = std::fs::remove_file(&output_path);
        let out = atrous(&[
            "run",
            "--model",
            model_path.to_str().unwrap(),
            "--input",
            input_path.to_str().unwrap(),
            "--output",
            output_path.to_str().unwrap(),
            "--precision",
            precision.name(),
            "--f16-math",
            f16_math,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !gpu.supports(precision) {
            assert!(!out.status.success());
            assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
            assert!(stderr.contains("SHADER_F16"), "{stderr}");
            continue;
        }
        assert!(
            out.status.success(),
            "atrous run --precision {precision} failed: {stderr}"
        );
        let got = Weights::open(&output_path).unwrap().get("out").unwrap();
        assert_eq!(got.shape, want.shape.dims().to_vec());
        assert_close_in(precision, "atrous run", &got.data, &want.data);
    }
    // f16 math on f32 storage is refused in one line.
    let out = atrous(&[
        "run",
        "--model",
        model_path.to_str().unwrap(),
        "--input",
        input_path.to_str().unwrap(),
        "--output",
        output_path.to_str().unwrap(),
        "--f16-math",
        "on",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("f16 storage"), "{stderr}");
    let out = atrous(&[
        "run",
        "--model",
        "m",
        "--input",
        "i",
        "--output",
        "o",
        "--precision",
        "f64",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("f64"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_should_print_one_line_and_fail() {
    let dir = temp_dir("bad");
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"not a model").unwrap();
    let out_path = dir.join("out.safetensors");
    let args = [
        "run",
        "--model",
        garbage.to_str().unwrap(),
        "--input",
        "x",
        "--output",
        out_path.to_str().unwrap(),
    ];
    let out = atrous(&args);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("atrous: ") && stderr.contains("garbage.safetensors"),
        "{stderr}"
    );
    assert!(!out_path.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_documented_example_should_be_a_valid_model() {
    let doc = include_str!("../docs/model-format.md");
    let start = doc.find("```json\n").unwrap() + "```json\n".len();
    let json = &doc[start..start + doc[start..].find("```").unwrap()];
    let mut weights = Weights::new();
    weights
        .insert("stem.weight", vec![16, 3, 3, 3], vec![0.1; 16 * 27])
        .unwrap();
    for name in ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"] {
        weights.insert(name, vec![16], vec![1.0; 16]).unwrap();
    }
    let model = Model::from_json(json, weights).unwrap();
    assert_eq!(model.graph.nodes.len(), 2);
    assert_eq!(model.info.labels, ["background", "person"]);
    let shapes = HashMap::from([("input".to_string(), Shape::new(1, 3, 8, 8))]);
    let (_, infos) = model.graph.infer(&shapes).unwrap();
    assert_eq!(infos["out"].shape, Shape::new(1, 16, 8, 8));
}

/// The README's first command: the shipped model on the shipped photo agrees with TFLite's person mask.
#[test]
fn segment_should_write_a_person_mask_that_agrees_with_tflite() {
    if gpu().is_none() {
        return;
    }
    let dir = temp_dir("segment");
    let root = env!("CARGO_MANIFEST_DIR");
    let out = atrous(&[
        "segment",
        "--out",
        dir.to_str().unwrap(),
        &format!("{root}/examples/astronaut.png"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("person") && stdout.contains("background"),
        "{stdout}"
    );
    for suffix in ["mask", "color", "overlay"] {
        assert!(
            dir.join(format!("astronaut.{suffix}.png")).exists(),
            "{suffix}"
        );
    }
    let mask = image::open(dir.join("astronaut.mask.png"))
        .unwrap()
        .to_luma8();
    let tflite = image::open(format!(
        "{root}/tests/fixtures/mediapipe/astronaut_mask.png"
    ))
    .unwrap()
    .to_luma8();
    assert_eq!(mask.dimensions(), tflite.dimensions());
    let agree = mask
        .pixels()
        .zip(tflite.pixels())
        .filter(|(a, b)| (a.0[0] > 0) == (b.0[0] > 0))
        .count();
    let share = agree as f64 / (mask.width() * mask.height()) as f64;
    assert!(share >= 0.99, "agreement with TFLite's mask: {share}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn segment_should_report_each_bad_input_and_go_on() {
    if gpu().is_none() {
        return;
    }
    let dir = temp_dir("segment-bad");
    let root = env!("CARGO_MANIFEST_DIR");
    let truncated = dir.join("truncated.png");
    let bytes = std::fs::read(format!("{root}/examples/astronaut.png")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    // Next to the others: outputs mirror the inputs' tree from the directory holding them all.
    let astronaut = dir.join("astronaut.png");
    std::fs::write(&astronaut, &bytes).unwrap();
    let empty_dir = dir.join("nothing");
    std::fs::create_dir_all(&empty_dir).unwrap();
    let out_dir = dir.join("out");
    let out = atrous(&[
        "segment",
        "--out",
        out_dir.to_str().unwrap(),
        truncated.to_str().unwrap(),
        empty_dir.to_str().unwrap(),
        astronaut.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("truncated.png"), "{stderr}");
    assert!(
        stderr.contains("nothing") && stderr.contains("no images"),
        "{stderr}"
    );
    assert!(
        stderr.lines().all(|l| l.starts_with("atrous: ")),
        "{stderr}"
    );
    // The good image of the batch was still processed, and the run ends with a summary of the failures (a missing
    // file counts as a failed image).
    assert!(out_dir.join("astronaut.mask.png").exists());
    assert_eq!(
        stderr.lines().last(),
        Some("atrous: 1 of 2 images failed, and 1 directory held no images"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 3, "{stderr}");
    let missing = dir.join("missing.png");
    let out = atrous(&[
        "segment",
        "--out",
        out_dir.to_str().unwrap(),
        missing.to_str().unwrap(),
        truncated.to_str().unwrap(),
        astronaut.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(lines[0].contains("missing.png"), "{stderr}");
    assert!(lines[1].contains("truncated.png"), "{stderr}");
    assert_eq!(lines[2], "atrous: 2 of 3 images failed", "{stderr}");

    let blocker = dir.join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let out = atrous(&[
        "segment",
        "--out",
        blocker.join("sub").to_str().unwrap(),
        &format!("{root}/examples/astronaut.png"),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("output directory"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--output` naming the `--input` or the `--model` file (under another spelling too) is refused in one line naming
/// both, before anything is read or written; the files are untouched. Needs no GPU: refused before one is opened.
#[test]
fn run_should_refuse_to_overwrite_its_input_or_model() {
    let dir = temp_dir("run-clobber");
    let (model_path, input_path) = (dir.join("model.safetensors"), dir.join("in.safetensors"));
    small_model().save(&model_path).unwrap();
    let x = random_tensor(&mut rng(3), Shape::new(1, 3, 11, 13));
    let mut input = Weights::new();
    input
        .insert("input", x.shape.dims().to_vec(), x.data)
        .unwrap();
    input.save(&input_path, HashMap::new()).unwrap();
    let (model_bytes, input_bytes) = (
        std::fs::read(&model_path).unwrap(),
        std::fs::read(&input_path).unwrap(),
    );
    let sub = dir.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    let cases = [
        (input_path.clone(), "--input", &input_path),
        (sub.join("../in.safetensors"), "--input", &input_path),
        (model_path.clone(), "--model", &model_path),
        (dir.join("./model.safetensors"), "--model", &model_path),
    ];
    for (output, flag, clobbered) in cases {
        let out = atrous(&[
            "run",
            "--model",
            model_path.to_str().unwrap(),
            "--input",
            input_path.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ]);
        assert!(!out.status.success(), "{}", output.display());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(output.to_str().unwrap())
                && stderr.contains(clobbered.to_str().unwrap())
                && stderr.contains(flag),
            "{stderr}"
        );
    }
    assert_eq!(std::fs::read(&model_path).unwrap(), model_bytes);
    assert_eq!(std::fs::read(&input_path).unwrap(), input_bytes);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn zoo_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/zoo/{name}.safetensors"))
}

#[test]
fn run_on_a_state_dict_should_build_it_by_architecture_and_match_pytorch() {
    if gpu().is_none() {
        return;
    }
    let dir = temp_dir("zoo");
    let output = dir.join("out.safetensors");
    // The fixture holds the state_dict, an "input" and PyTorch's "expected" logits.
    let fixture = zoo_fixture("fcn_resnet101");
    let fixture = fixture.to_str().unwrap();
    for arch in [None, Some("fcn_resnet101")] {
        let mut args = vec![
            "run",
            "--model",
            fixture,
            "--input",
            fixture,
            "--output",
            output.to_str().unwrap(),
        ];
        args.extend(arch.iter().flat_map(|a| ["--arch", a]));
        let out = atrous(&args);
        assert!(
            out.status.success(),
            "atrous run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = Weights::open(&output).unwrap().get("out").unwrap();
        let want = Weights::open(fixture).unwrap().get("expected").unwrap();
        assert_eq!(got.shape, want.shape);
        let err = got
            .data
            .iter()
            .zip(&want.data)
            .fold(0.0f32, |m, (g, w)| m.max((g - w).abs()));
        assert!(err <= 1e-3, "max abs error {err}");
    }
    let out = atrous(&[
        "run",
        "--model",
        fixture,
        "--arch",
        "segformer_b0",
        "--input",
        fixture,
        "--output",
        "x",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("segformer_b0") && stderr.contains("deeplabv3_resnet50"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_on_an_smp_save_pretrained_folder_should_match_pytorch() {
    if gpu().is_none() {
        return;
    }
    let dir = temp_dir("smp");
    let output = dir.join("out.safetensors");
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smp/pspnet");
    let io = folder.join("io.safetensors");
    let out = atrous(&[
        "run",
        "--model",
        folder.to_str().unwrap(),
        "--input",
        io.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "atrous run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = Weights::open(&output).unwrap().get("out").unwrap();
    let want = Weights::open(&io).unwrap().get("expected").unwrap();
    assert_eq!(got.shape, want.shape);
    let err = got
        .data
        .iter()
        .zip(&want.data)
        .fold(0.0f32, |m, (g, w)| m.max((g - w).abs()));
    assert!(err <= 1e-3, "max abs error {err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_plan_only_should_report_memory_without_running() {
    if gpu().is_none() {
        return;
    }
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smp/fpn");
    let out = atrous(&[
        "bench",
        "--model",
        fixture,
        "--size",
        "64x96",
        "--plan-only",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["input"], serde_json::json!([1, 3, 64, 96]));
    let planned = report["memory"]["planned_bytes"].as_u64().unwrap();
    let bound = report["memory"]["lower_bound_bytes"].as_u64().unwrap();
    assert!(planned >= bound && bound > 0, "{report}");
    assert!(report.get("latency_ms").is_none(), "{report}");
}

/// A safetensors file holding one tensor `input` of `dtype` and `shape`, with zeroed data (sparse on disk).
fn raw_input(path: &std::path::Path, dtype: &str, shape: &[u64], element_bytes: u64) {
    let bytes: u64 = shape.iter().product::<u64>() * element_bytes;
    let header = format!(
        r#"{{"input":{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[0,{bytes}]}}}}"#
    );
    let mut file = std::fs::File::create(path).unwrap();
    use std::io::Write;
    file.write_all(&(header.len() as u64).to_le_bytes())
        .unwrap();
    file.write_all(header.as_bytes()).unwrap();
    file.set_len(8 + header.len() as u64 + bytes).unwrap();
}

#[test]
fn run_should_check_input_tensors_against_the_model_before_reading_them() {
    if gpu().is_none() {
        return;
    }
    let dir = temp_dir("inputs");
    let model_path = dir.join("model.safetensors");
    small_model().save(&model_path).unwrap();
    let cases: [(&str, &[u64], u64, &str); 4] = [
        ("I64", &[1, 3, 4, 4], 8, "I64"),
        ("F64", &[1, 3, 4, 4], 8, "F64"),
        ("F32", &[1, 5, 4, 4], 4, "takes 3 channels"),
        // 480 GB claimed by a sparse file: refused from the header, nothing read or allocated.
        (
            "F32",
            &[1, 3, 200_000, 200_000],
            4,
            "largest storage binding",
        ),
    ];
    for (k, (dtype, shape, size, expected)) in cases.into_iter().enumerate() {
        let input = dir.join(format!("in{k}.safetensors"));
        raw_input(&input, dtype, shape, size);
        let output = dir.join("out.safetensors");
        let out = atrous(&[
            "run",
            "--model",
            model_path.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(expected) && stderr.contains(&format!("in{k}.safetensors")),
            "{stderr}"
        );
        assert!(!output.exists());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn segment_should_take_an_onnx_model_with_preprocessing_from_the_command_line() {
    if gpu().is_none() {
        return;
    }
    let dir = temp_dir("segment-onnx");
    let root = env!("CARGO_MANIFEST_DIR");
    // smp's Unet on MobileNetV2 (3 classes), exported at 45 x 61: images are resized to that size.
    let model = format!("{root}/tests/fixtures/onnx/models/smp_mobilenet_ts/model.onnx");
    let photo = format!("{root}/examples/astronaut.png");
    let out_dir = dir.join("out");
    let bare = atrous(&[
        "segment",
        "--model",
        &model,
        "--out",
        out_dir.to_str().unwrap(),
        &photo,
    ]);
    let stderr = String::from_utf8_lossy(&bare.stderr);
    assert!(
        !bare.status.success() && stderr.contains("--mean"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");

    let labels = dir.join("labels.txt");
    std::fs::write(&labels, "sky\nrock\nsuit\n").unwrap();
    let out = atrous(&[
        "segment",
        "--model",
        &model,
        "--mean",
        "0.485,0.456,0.406",
        "--std",
        "0.229,0.224,0.225",
        "--labels",
        labels.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        &photo,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        ["sky", "rock", "suit"].iter().all(|l| stdout.contains(l)),
        "{stdout}"
    );
    let mask = image::open(out_dir.join("astronaut.mask.png"))
        .unwrap()
        .to_luma8();
    let photo = image::open(&photo).unwrap();
    assert_eq!(mask.dimensions(), (photo.width(), photo.height()));
    assert!(mask.pixels().all(|p| p.0[0] < 3));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_on_an_onnx_model_should_match_onnxruntime() {
    if gpu().is_none() {
        return;
    }
    let dir = temp_dir("run-onnx");
    let case = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx/models/unet_dynamic_ts");
    // The second data set (37 x 83): the dynamic export runs at a size other than the one it was exported at.
    let set = case.join("test_data_set_1");
    let (_, dims, x) = atrous::onnx::read_tensor_file(&set.join("input_0.pb")).unwrap();
    let (_, _, want) = atrous::onnx::read_tensor_file(&set.join("output_0.pb")).unwrap();
    let mut input = Weights::new();
    input
        .insert("input", dims, x.iter().map(|&v| v as f32).collect())
        .unwrap();
    let (input_path, output_path) = (dir.join("in.safetensors"), dir.join("out.safetensors"));
    input.save(&input_path, HashMap::new()).unwrap();
    let model = case.join("model.onnx");
    let out = atrous(&[
        "run",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input_path.to_str().unwrap(),
        "--output",
        output_path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = Weights::open(&output_path).unwrap();
    let name = got.names().pop().unwrap();
    let got = got.get(&name).unwrap().data;
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (*g as f64 - w).abs())
        .fold(0.0, f64::max);
    assert!(err <= 1e-3 * scale, "max error {err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
