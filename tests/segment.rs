//! The segmentation pipeline (preprocess, model, resize back, argmax or threshold, all in one submission) against
//! the same steps on the CPU with the reference ops.

mod common;

use atrous::model::InputSize;
use atrous::ops::{ImageLayout, Preprocess, Resize, ResizeMode, ResizeTarget};
use atrous::{reference, Model, Segmenter, Shape, Tensor};
use common::*;
use image::RgbaImage;
use std::collections::HashMap;

/// The pipeline on the CPU: preprocess, run the graph, resize to the photo, softmax.
fn cpu_pipeline(model: &Model, photo: &RgbaImage, size: [usize; 2]) -> Tensor {
    let (w, h) = photo.dimensions();
    let layout = ImageLayout {
        width: w as usize,
        height: h as usize,
        channels: 4,
    };
    let spec = model.info.preprocess.as_ref().unwrap();
    let pre = Preprocess {
        size,
        mean: spec.mean,
        std: spec.std,
        value_scale: 1.0 / 255.0,
        channel_order: spec.channel_order,
    };
    let x = reference::preprocess(&pre, layout, photo.as_raw()).unwrap();
    let out = reference::run_graph(model, &HashMap::from([("input".to_string(), x)])).unwrap()
        ["out"]
        .to_f32();
    let back = Resize {
        mode: ResizeMode::Bilinear {
            align_corners: false,
        },
        target: ResizeTarget::Size([h as usize, w as usize]),
    };
    reference::resize(&back, &out).unwrap()
}

fn agreement(a: &[u32], b: &[u32]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

#[test]
fn multi_class_pipeline_should_match_cpu() {
    let gpu = gpu_or_skip!();
    let model = segmentation_model(
        4,
        InputSize::Fixed {
            height: 24,
            width: 32,
        },
    );
    let photo = photo(1, 45, 37);
    let logits = cpu_pipeline(&model, &photo, [24, 32]);
    let segmenter = Segmenter::new(gpu, model).unwrap();
    assert_eq!(segmenter.labels().len(), 4);
    let result = segmenter.segment(&photo, true).unwrap();
    assert_eq!((result.width, result.height), (45, 37));
    let want_probs = reference::softmax(&logits).unwrap();
    let got_probs = result.probabilities.as_ref().unwrap();
    assert_eq!(got_probs.shape, Shape::new(1, 4, 37, 45));
    assert_close_tol("probabilities", &got_probs.data, &want_probs.data, 1e-3);
    let want = reference::argmax(&logits).unwrap();
    assert!(
        agreement(&result.classes, &want) >= 0.999,
        "{}",
        agreement(&result.classes, &want)
    );
    let shares: f64 = result.shares(4).iter().sum();
    assert!((shares - 1.0).abs() < 1e-9);
    // A second image of another size reuses the model's plan and still agrees.
    let other = photo_and_check(&segmenter, &model_for_check(4), 2, 20, 30, [24, 32]);
    assert!(other >= 0.999);
}

fn model_for_check(classes: usize) -> Model {
    segmentation_model(
        classes,
        InputSize::Fixed {
            height: 24,
            width: 32,
        },
    )
}

fn photo_and_check(
    segmenter: &Segmenter,
    model: &Model,
    seed: u64,
    w: u32,
    h: u32,
    size: [usize; 2],
) -> f64 {
    let photo = photo(seed, w, h);
    let want = reference::argmax(&cpu_pipeline(model, &photo, size)).unwrap();
    agreement(&segmenter.segment(&photo, false).unwrap().classes, &want)
}

/// The whole segmentation pipeline in f16 (preprocessing, model, resize, softmax, argmax and threshold kernels all
/// storing f16) against the f64 CPU pipeline.
#[test]
fn pipelines_in_f16_should_match_cpu() {
    let gpu = gpu_or_skip!(atrous::gpu::Precision::F16);
    let options = atrous::plan::PlanOptions {
        precision: atrous::gpu::Precision::F16,
        ..Default::default()
    };
    for classes in [4, 1] {
        let model = model_for_check(classes);
        let photo = photo(11, 45, 37);
        let logits = cpu_pipeline(&model, &photo, [24, 32]);
        let segmenter = Segmenter::with_options(gpu.clone(), model, options).unwrap();
        assert_eq!(segmenter.engine().options().precision, options.precision);
        let result = segmenter.segment(&photo, true).unwrap();
        let (want_probs, want) = match classes {
            1 => (logits.clone(), reference::threshold(&logits, 0.5).unwrap()),
            _ => (
                reference::softmax(&logits).unwrap(),
                reference::argmax(&logits).unwrap(),
            ),
        };
        let got_probs = result.probabilities.as_ref().unwrap();
        assert_eq!(got_probs.shape, Shape::new(1, classes, 37, 45));
        // Probabilities lie in [0, 1]; f16 keeps them within 1.3e-3 here (measured), bound 5e-3.
        assert_close_tol("f16 probabilities", &got_probs.data, &want_probs.data, 5e-3);
        let agree = agreement(&result.classes, &want);
        assert!(
            agree >= 0.99,
            "{classes} classes: f16 class agreement {agree}"
        );
    }
}

#[test]
fn one_channel_pipeline_should_threshold_the_probability() {
    let gpu = gpu_or_skip!();
    let model = segmentation_model(1, InputSize::Original { multiple_of: 4 });
    let photo = photo(3, 30, 21);
    // Original size rounded up to a multiple of 4: 21 x 30 -> 24 x 32.
    let prob = cpu_pipeline(&model, &photo, [24, 32]);
    let segmenter = Segmenter::new(gpu, model).unwrap();
    assert_eq!(segmenter.labels().len(), 2);
    let result = segmenter.segment(&photo, true).unwrap();
    assert_close_tol(
        "probability",
        &result.probabilities.as_ref().unwrap().data,
        &prob.data,
        1e-3,
    );
    let want = reference::threshold(&prob, 0.5).unwrap();
    assert!(agreement(&result.classes, &want) >= 0.999);
    assert!(
        want.contains(&0) && want.contains(&1),
        "the test image should have both classes"
    );
}

#[test]
fn a_model_without_preprocessing_should_be_refused() {
    let gpu = gpu_or_skip!();
    let mut m = segmentation_model(
        2,
        InputSize::Fixed {
            height: 8,
            width: 8,
        },
    );
    m.info.preprocess = None;
    let err = Segmenter::new(gpu, m).err().unwrap().to_string();
    assert!(err.contains("preprocessing"), "{err}");
}

#[test]
fn an_image_too_large_for_the_device_should_say_what_to_do() {
    let gpu = gpu_or_skip!();
    let limit = gpu.limits().max_storage_buffer_binding_size;
    let segmenter = Segmenter::new(
        gpu,
        segmentation_model(
            21,
            InputSize::Fixed {
                height: 8,
                width: 8,
            },
        ),
    )
    .unwrap();
    // 21 class maps of side s need 84 s^2 bytes: pick s just over the limit without allocating the photo's pixels
    // for real beyond what is needed.
    let side = ((limit as f64 / 84.0).sqrt() as u32) + 64;
    let huge = RgbaImage::new(side, side);
    let err = segmenter.segment(&huge, false).err().unwrap().to_string();
    assert!(err.contains("downscale"), "{err}");
}
