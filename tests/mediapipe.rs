//! The shipped MediaPipe selfie segmenters against TFLite: each converted model (weights/) runs on the astronaut photo
//! fixture and is compared with the probabilities ai-edge-litert computed from the original .tflite file
//! (tests/fixtures/mediapipe/, made by tools/make_mediapipe_fixtures.py).

mod common;

use atrous::gpu::Precision;
use atrous::model::InputSize;
use atrous::plan::PlanOptions;
use atrous::weights::Weights;
use atrous::{Engine, Model, Shape, Tensor};
use common::{f16_options, numerics};

fn fixture_tensor(weights: &Weights, name: &str) -> Tensor {
    let t = weights.get(name).unwrap();
    let [n, c, h, w] = t.shape[..] else {
        panic!("fixture {name} has shape {:?}, expected NCHW", t.shape)
    };
    Tensor::new(Shape::new(n, c, h, w), t.data).unwrap()
}

/// (max probability error, mask agreement) each precision and conv math must reach against TFLite. f16: see the
/// README.
fn bounds(options: &PlanOptions) -> (f32, f64) {
    match (options.precision, options.f16_math == Some(true)) {
        (Precision::F32, _) => (1e-3, 0.999),
        (Precision::F16, false) => (1e-1, 0.999),
        (Precision::F16, true) => (0.2, 0.999),
    }
}

fn check_model(file: &str, architecture: &str, size: [usize; 2], options: PlanOptions) {
    let gpu = gpu_or_skip!(options.precision);
    let root = env!("CARGO_MANIFEST_DIR");
    let model = Model::load(format!("{root}/weights/{file}")).unwrap();
    assert_eq!(model.info.architecture.as_deref(), Some(architecture));
    assert_eq!(model.info.labels, ["background", "person"]);
    let pre = model
        .info
        .preprocess
        .clone()
        .expect("the model says how to preprocess");
    assert_eq!(
        pre.input_size,
        InputSize::Fixed {
            height: size[0],
            width: size[1]
        }
    );

    let fixture = Weights::open(format!("{root}/tests/fixtures/mediapipe/{file}")).unwrap();
    let input = fixture_tensor(&fixture, "input");
    let expected = fixture_tensor(&fixture, "expected");
    assert_eq!(input.shape, Shape::new(1, 3, size[0], size[1]));

    let out = Engine::with_options(gpu, model, options)
        .run(&[("input", &input)], &["out"])
        .unwrap();
    let got = out["out"].to_f32();
    assert_eq!(got.shape, expected.shape);

    let (mut max_err, mut worst, mut agree) = (0f32, 0, 0);
    for (i, (&g, &e)) in got.data.iter().zip(&expected.data).enumerate() {
        if (g - e).abs() > max_err {
            (max_err, worst) = ((g - e).abs(), i);
        }
        agree += ((g > 0.5) == (e > 0.5)) as usize;
    }
    let agreement = agree as f64 / got.data.len() as f64;
    eprintln!(
        "{file} ({}): max |atrous - tflite| = {max_err:.3e} at {worst}, mask agreement {agreement:.6}",
        numerics(&options)
    );
    let (max_bound, agreement_bound) = bounds(&options);
    assert!(
        max_err <= max_bound,
        "{file}: probability {} at index {worst}, TFLite says {} (error {max_err})",
        got.data[worst],
        expected.data[worst]
    );
    assert!(
        agreement >= agreement_bound,
        "{file}: masks (p > 0.5) agree on only {agreement}"
    );
}

#[test]
fn selfie_segmenter_should_match_tflite() {
    check_model(
        "selfie_segmenter.safetensors",
        "mediapipe_selfie_segmenter",
        [256, 256],
        PlanOptions::default(),
    );
}

/// Both segmenters in f16, with f32 and with f16 conv math.
#[test]
fn selfie_segmenters_in_f16_should_match_tflite() {
    for f16_math in [false, true] {
        check_model(
            "selfie_segmenter.safetensors",
            "mediapipe_selfie_segmenter",
            [256, 256],
            f16_options(f16_math),
        );
        check_model(
            "selfie_segmenter_landscape.safetensors",
            "mediapipe_selfie_segmenter_landscape",
            [144, 256],
            f16_options(f16_math),
        );
    }
}

#[test]
fn selfie_segmenter_landscape_should_match_tflite() {
    check_model(
        "selfie_segmenter_landscape.safetensors",
        "mediapipe_selfie_segmenter_landscape",
        [144, 256],
        PlanOptions::default(),
    );
}
