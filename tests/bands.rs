//! Multi-band models and frames through the one segmentation flow: an smp Unet(in_channels=4) folder loads as it
//! is, band frames (`Frame::Bands`) are normalised per band by the graph's normalize node (GPU kernel against the
//! CPU reference and against PyTorch's logits), and bad band frames and statistics are refused.

mod common;

use atrous::model::InputSize;
use atrous::ops::Normalize;
use atrous::segment::{Frame, Readback, Request};
use atrous::{models, reference, Error, Segmenter, Shape, Tensor};
use common::*;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smp/unet_4band")
}

fn softmax(t: &Tensor) -> Tensor {
    let s = t.shape;
    let plane = s.h * s.w;
    let mut out = t.clone();
    for p in 0..plane {
        let max = (0..s.c)
            .map(|c| t.data[c * plane + p])
            .fold(f32::MIN, f32::max);
        let sum: f32 = (0..s.c).map(|c| (t.data[c * plane + p] - max).exp()).sum();
        for c in 0..s.c {
            out.data[c * plane + p] = (t.data[c * plane + p] - max).exp() / sum;
        }
    }
    out
}

/// Probabilities of a band frame, read back at the frame's size.
fn probabilities(segmenter: &Segmenter, data: &[f32], shape: Shape) -> atrous::Result<Tensor> {
    let mut stream = segmenter.stream();
    let frame = Frame::Bands {
        data,
        channels: shape.c,
        width: shape.w,
        height: shape.h,
    };
    let request = Request {
        readback: Some(Readback::ClassesAndProbabilities),
        ..Default::default()
    };
    let result = stream.submit(frame, &request)?.readback.unwrap().wait()?;
    Ok(result.probabilities.unwrap())
}

#[test]
fn smp_unet_with_four_bands_should_match_pytorch_through_band_frames() {
    let gpu = gpu_or_skip!();
    let io = atrous::weights::Weights::open(fixture().join("io.safetensors")).unwrap();
    let x = tensor(&io, "input");
    let want = softmax(&tensor(&io, "expected"));
    let model = models::open(&fixture(), None).unwrap();
    assert_eq!(model.graph.inputs[0].channels, 4);
    let segmenter = Segmenter::new(gpu.clone(), model).unwrap();
    assert_eq!(segmenter.input_channels(), 4);
    let got = probabilities(&segmenter, &x.data, x.shape).unwrap();
    let (err, agree) = compare(&got, &want);
    eprintln!("4-band smp Unet: max abs probability error {err:.2e}, argmax agreement {agree}");
    assert!(
        err <= 1e-4 && agree >= 0.999,
        "error {err}, agreement {agree}"
    );

    // The same input as raw values with per-band statistics: the normalize node undoes them.
    let mean = vec![1000.0, 1200.0, 900.0, 2500.0];
    let std = vec![300.0, 250.0, 400.0, 800.0];
    let plane = x.shape.h * x.shape.w;
    let raw: Vec<f32> = x
        .data
        .iter()
        .enumerate()
        .map(|(i, v)| v * std[i / plane] + mean[i / plane])
        .collect();
    let norm = Normalize {
        mean: mean.clone(),
        std: std.clone(),
    };
    let normalised = reference::normalize(&norm, x.shape, &raw).unwrap();
    assert_close_tol("reference normalize", &normalised.data, &x.data, 1e-4);
    let mut model = models::open(&fixture(), None).unwrap();
    model.info.preprocess.as_mut().unwrap().bands = Some(norm);
    let segmenter = Segmenter::new(gpu, model).unwrap();
    let got = probabilities(&segmenter, &raw, x.shape).unwrap();
    let (err, agree) = compare(&got, &want);
    eprintln!(
        "raw bands normalised on the GPU: max abs probability error {err:.2e}, agreement {agree}"
    );
    assert!(
        err <= 1e-3 && agree >= 0.999,
        "error {err}, agreement {agree}"
    );
}

#[test]
fn band_frames_should_be_resized_to_a_fixed_model_size() {
    let gpu = gpu_or_skip!();
    let mut model = models::open(&fixture(), None).unwrap();
    let spec = model.info.preprocess.as_mut().unwrap();
    spec.input_size = InputSize::Fixed {
        height: 32,
        width: 32,
    };
    let segmenter = Segmenter::new(gpu, model).unwrap();
    let shape = Shape::new(1, 4, 20, 44);
    let data = random_vec(&mut rng(3), shape.numel());
    let p = probabilities(&segmenter, &data, shape).unwrap();
    // Probabilities at the frame's size, summing to 1.
    assert_eq!((p.shape.c, p.shape.h, p.shape.w), (3, 20, 44));
    let plane = 20 * 44;
    for i in 0..plane {
        let sum: f32 = (0..3).map(|c| p.data[c * plane + i]).sum();
        assert!((sum - 1.0).abs() < 1e-4);
    }
}

#[test]
fn bad_band_frames_and_statistics_should_be_refused() {
    let gpu = gpu_or_skip!();
    let segmenter = Segmenter::new(gpu.clone(), models::open(&fixture(), None).unwrap()).unwrap();
    let mut stream = segmenter.stream();
    let request = Request {
        readback: Some(Readback::Classes),
        ..Default::default()
    };
    let data = vec![0.0f32; 4 * 16 * 16];
    let bands = |data, channels, width, height| Frame::Bands {
        data,
        channels,
        width,
        height,
    };
    let message = |r: atrous::Result<atrous::segment::Submitted>| match r {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted"),
    };
    let e = message(stream.submit(bands(&data, 4, 16, 15), &request));
    assert!(e.contains("1024"), "{e}");
    let e = message(stream.submit(bands(&data[..3 * 256], 3, 16, 16), &request));
    assert!(
        e.contains("3 bands") && e.contains("4 input channels"),
        "{e}"
    );
    let e = message(stream.submit(bands(&data, 4, 0, 16), &request));
    assert!(e.contains("0x16"), "{e}");
    let image = photo(1, 16, 16);
    let e = message(stream.submit(Frame::Image(&image), &request));
    assert!(
        e.contains("4 input channels") && e.contains("Frame::Bands"),
        "{e}"
    );
    // The stream still works after refusals.
    stream
        .submit(bands(&data, 4, 16, 16), &request)
        .unwrap()
        .readback
        .unwrap()
        .wait()
        .unwrap();

    // Statistics of the wrong length, or a zero std, are refused when the segmenter is made.
    for (mean, std, want) in [
        (vec![0.0; 3], vec![1.0; 4], "3 and 4 values"),
        (vec![0.0; 4], vec![1.0, 0.0, 1.0, 1.0], "non-zero"),
    ] {
        let mut model = models::open(&fixture(), None).unwrap();
        model.info.preprocess.as_mut().unwrap().bands = Some(Normalize { mean, std });
        match Segmenter::new(gpu.clone(), model) {
            Err(e @ Error::Model(_)) | Err(e @ Error::InvalidParams { .. }) => {
                assert!(e.to_string().contains(want), "{e}")
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted"),
        }
    }
}

#[test]
fn reference_normalize_should_check_its_statistics() {
    let n = Normalize {
        mean: vec![1.0, 2.0],
        std: vec![2.0, 4.0],
    };
    let t = reference::normalize(&n, Shape::new(1, 2, 1, 2), &[3.0, 5.0, 6.0, 10.0]).unwrap();
    assert_eq!(t.data, [1.0, 2.0, 1.0, 2.0]);
    assert!(reference::normalize(&n, Shape::new(1, 3, 1, 1), &[0.0; 3]).is_err());
    assert!(reference::normalize(&n, Shape::new(1, 2, 1, 2), &[0.0; 3]).is_err());
}
