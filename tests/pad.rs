//! pad_like on the GPU against the CPU reference.

mod common;

use atrous::gpu::Precision;
use atrous::kernels::pad;
use atrous::ops::PadLike;
use atrous::{reference, Shape, Tensor};
use common::*;

fn check(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    // (input, like): odd and even differences on each axis, none at all, batch 2, a 1 x 1 map.
    let cases = [
        (Shape::new(1, 3, 32, 46), Shape::new(1, 8, 33, 46)),
        (Shape::new(2, 4, 8, 12), Shape::new(2, 1, 11, 15)),
        (Shape::new(1, 2, 5, 7), Shape::new(1, 2, 5, 7)),
        (Shape::new(1, 5, 1, 1), Shape::new(1, 5, 4, 3)),
    ];
    for (i, (input, like)) in cases.into_iter().enumerate() {
        let name = format!("pad {input} to {like}");
        let x = rounded(precision, &random_tensor(&mut rng(i as u64), input));
        let want = reference::pad_like(&x, like).unwrap();
        let kernel = pad::pad_like(&gpu, &name, input, like, precision).unwrap();
        let gx = upload_in(&gpu, "x", &x, precision);
        let poison = Tensor::new(want.shape, vec![f32::NAN; want.shape.numel()]).unwrap();
        let out = upload_in(&gpu, "out", &poison, precision);
        let bound = kernel
            .bind(&gpu, &[out.binding()], &[gx.binding()])
            .unwrap();
        gpu.run(&[&bound]).unwrap();
        let got = gpu.read_in(&out, precision).unwrap();
        // A copy: exact in either precision.
        assert_eq!(got.data, want.data, "{name} ({precision})");
    }
}

#[test]
fn pad_like_should_match_reference() {
    check(Precision::F32);
}

#[test]
fn pad_like_in_f16_should_match_reference() {
    check(Precision::F16);
}

#[test]
fn pad_like_should_put_the_odd_row_and_column_last() {
    let x = Tensor::new(Shape::new(1, 1, 1, 1), vec![7.0]).unwrap();
    let y = reference::pad_like(&x, Shape::new(1, 1, 2, 4)).unwrap();
    // dy = 1: 0 above, 1 below; dx = 3: 1 left, 2 right.
    assert_eq!(y.data, vec![0.0, 7.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let err = PadLike
        .output_shape(Shape::new(1, 1, 4, 4), Shape::new(1, 1, 3, 5))
        .unwrap_err()
        .to_string();
    assert!(err.contains("smaller"), "{err}");
}
