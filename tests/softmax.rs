//! softmax and argmax over channels on the GPU against the CPU reference.

mod common;

use atrous::gpu::Precision;
use atrous::kernels::softmax;
use atrous::ops::{Argmax, Softmax, Threshold};
use atrous::{reference, Shape, Tensor};
use common::*;

fn shapes() -> Vec<Shape> {
    let mut shapes = Vec::new();
    for c in [1, 2, 3, 21] {
        shapes.push(Shape::new(1, c, 13, 17));
        shapes.push(Shape::new(2, c, 5, 3));
        shapes.push(Shape::new(2, c, 1, 1));
    }
    shapes
}

/// Random data spread wide enough that the max subtraction matters.
fn logits(seed: u64, shape: Shape) -> Tensor {
    let mut t = random_tensor(&mut rng(seed), shape);
    t.data.iter_mut().for_each(|v| *v *= 30.0);
    t
}

fn run_argmax(gpu: &atrous::Gpu, name: &str, x: &Tensor, precision: Precision) -> Vec<u32> {
    let kernel = softmax::argmax(gpu, name, &Argmax, x.shape, precision).unwrap();
    let gx = upload_in(gpu, "x", x, precision);
    let out = gpu.tensor("classes", x.shape.with_c(1), true).unwrap();
    let bound = kernel.bind(gpu, &[out.binding()], &[gx.binding()]).unwrap();
    gpu.run(&[&bound]).unwrap();
    gpu.read_u32(&out).unwrap()
}

fn check_softmax(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    for (i, shape) in shapes().into_iter().enumerate() {
        let name = format!("softmax {shape}");
        let x = rounded(precision, &logits(i as u64, shape));
        let want = reference::softmax(&x).unwrap();
        let kernel = softmax::softmax(&gpu, &name, &Softmax, shape, precision).unwrap();
        let gx = upload_in(&gpu, "x", &x, precision);
        let out = gpu.tensor_in("out", shape, precision, true).unwrap();
        let bound = kernel
            .bind(&gpu, &[out.binding()], &[gx.binding()])
            .unwrap();
        gpu.run(&[&bound]).unwrap();
        let got = gpu.read_in(&out, precision).unwrap();
        assert_close_in(precision, &name, &got.data, &want.data);
    }
}

#[test]
fn softmax_should_match_reference() {
    check_softmax(Precision::F32);
}

#[test]
fn softmax_in_f16_should_match_reference() {
    check_softmax(Precision::F16);
}

/// Argmax is exact on the values it is given: in f16 the reference sees the same rounded logits.
fn check_argmax(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    for (i, shape) in shapes().into_iter().enumerate() {
        let name = format!("argmax {shape} ({precision})");
        let x = rounded(precision, &logits(100 + i as u64, shape));
        let want = reference::argmax(&x).unwrap();
        assert_eq!(run_argmax(&gpu, &name, &x, precision), want, "{name}");
    }
}

#[test]
fn argmax_should_match_reference() {
    check_argmax(Precision::F32);
}

#[test]
fn argmax_in_f16_should_match_reference() {
    check_argmax(Precision::F16);
}

#[test]
fn argmax_should_pick_the_first_of_tied_channels() {
    // A 1 x 4 x 1 x 5 map: row c holds channel c of the five pixels.
    let channels = [
        [1.0, -1.0, -4.0, -4.0, -2.0],
        [1.0, 2.0, -4.0, -4.0, -1.0],
        [1.0, 0.5, 3.0, -4.0, -1.0],
        [1.0, 2.0, 3.0, 5.0, -3.0],
    ];
    let x = Tensor::new(Shape::new(1, 4, 1, 5), channels.concat()).unwrap();
    // all equal; channels 1 and 3 tie; 2 and 3 tie; 3 alone; 1 and 2 tie below zero.
    let want = vec![0, 1, 2, 3, 1];
    assert_eq!(reference::argmax(&x).unwrap(), want);
    let gpu = gpu_or_skip!();
    assert_eq!(run_argmax(&gpu, "ties", &x, Precision::F32), want);
    // The values are exact in f16 too.
    let Some(gpu) = gpu_for(Precision::F16) else {
        return;
    };
    assert_eq!(run_argmax(&gpu, "ties", &x, Precision::F16), want);
}

#[test]
fn softmax_and_argmax_should_reject_empty_inputs() {
    for shape in [
        Shape::new(1, 0, 4, 4),
        Shape::new(0, 3, 4, 4),
        Shape::new(1, 3, 0, 4),
    ] {
        let err = Softmax.output_shape(shape).unwrap_err();
        assert!(err.to_string().starts_with("softmax"), "{err}");
        let err = Argmax.output_shape(shape).unwrap_err();
        assert!(err.to_string().starts_with("argmax"), "{err}");
        let err = reference::softmax(&Tensor::zeros(shape)).unwrap_err();
        assert!(err.to_string().starts_with("softmax"), "{err}");
        let err = reference::argmax(&Tensor::zeros(shape)).unwrap_err();
        assert!(err.to_string().starts_with("argmax"), "{err}");
    }
}

fn check_threshold(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    let mut values = random_tensor(&mut common::rng(40), Shape::new(2, 1, 9, 13));
    values.data[0] = 0.5; // exactly at the threshold: background (0.5 is exact in f16)
    let values = rounded(precision, &values);
    let want = reference::threshold(&values, 0.5).unwrap();
    assert_eq!(want[0], 0);
    assert!(want.contains(&1) && want.contains(&0));
    let kernel = softmax::threshold(
        &gpu,
        "threshold",
        &Threshold { value: 0.5 },
        values.shape,
        precision,
    )
    .unwrap();
    let gx = upload_in(&gpu, "x", &values, precision);
    let out = gpu.tensor("classes", values.shape, true).unwrap();
    let bound = kernel
        .bind(&gpu, &[out.binding()], &[gx.binding()])
        .unwrap();
    gpu.run(&[&bound]).unwrap();
    assert_eq!(gpu.read_u32(&out).unwrap(), want, "{precision}");
    let err = softmax::threshold(
        &gpu,
        "bad",
        &Threshold { value: 0.5 },
        Shape::new(1, 2, 3, 3),
        precision,
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("threshold"), "{err}");
}

#[test]
fn threshold_should_match_reference() {
    check_threshold(Precision::F32);
}

#[test]
fn threshold_in_f16_should_match_reference() {
    check_threshold(Precision::F16);
}
