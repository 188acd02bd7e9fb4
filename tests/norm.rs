//! group_norm on the GPU against the CPU reference.

mod common;

use atrous::gpu::Precision;
use atrous::kernels::norm;
use atrous::ops::{Activation, GroupNorm};
use atrous::{reference, Shape, Tensor};
use common::*;

/// Runs the kernel on random data (offset by `mean`, so a one-pass variance would lose digits) and compares.
fn check(
    gpu: &atrous::Gpu,
    shape: Shape,
    p: GroupNorm,
    mean: f32,
    seed: u64,
    precision: Precision,
) {
    let name = format!("group_norm {shape} groups {} {:?}", p.groups, p.activation);
    let mut r = rng(seed);
    let mut x = random_tensor(&mut r, shape);
    x.data.iter_mut().for_each(|v| *v = *v * 3.0 + mean);
    let x = rounded(precision, &x);
    let weight: Vec<f32> = random_vec(&mut r, p.channels)
        .iter()
        .map(|v| v + 1.5)
        .collect();
    let bias = random_vec(&mut r, p.channels);
    let want = reference::group_norm(&p, &x, &weight, &bias).unwrap();
    let kernel = norm::group_norm(gpu, &name, &p, shape, precision).unwrap();
    let w = norm::upload_weights(gpu, &name, &p, weight, bias).unwrap();
    let gx = upload_in(gpu, "x", &x, precision);
    let out = upload_in(
        gpu,
        "out",
        &Tensor::new(shape, vec![f32::NAN; shape.numel()]).unwrap(),
        precision,
    );
    let bound = kernel
        .bind(
            gpu,
            &[out.binding()],
            &[
                gx.binding(),
                w.weight.as_entire_buffer_binding(),
                w.bias.as_entire_buffer_binding(),
            ],
        )
        .unwrap();
    gpu.run(&[&bound]).unwrap();
    let got = gpu.read_in(&out, precision).unwrap();
    // Normalised values are O(1) whatever the input's mean; f32 statistics keep 2e-4 of them.
    let tol = match precision {
        Precision::F32 => 2e-4,
        Precision::F16 => F16_TOLERANCE,
    };
    assert_close_tol(&format!("{name} ({precision})"), &got.data, &want.data, tol);
}

fn check_cases(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    // (shape, groups): several channels a group, one a group (instance norm), one group (layer norm), 1x1 maps,
    // groups whose span is not a multiple of the workgroup, batch 2.
    let cases = [
        (Shape::new(1, 8, 13, 17), 4),
        (Shape::new(2, 6, 5, 3), 3),
        (Shape::new(2, 64, 9, 11), 32),
        (Shape::new(1, 4, 1, 1), 2),
        (Shape::new(1, 3, 7, 7), 1),
        (Shape::new(1, 5, 20, 20), 5),
        (Shape::new(1, 64, 33, 31), 32),
    ];
    for (i, (shape, groups)) in cases.into_iter().enumerate() {
        let p = GroupNorm::new(groups, shape.c);
        check(&gpu, shape, p, 0.0, i as u64, precision);
        check(&gpu, shape, p, 40.0, 100 + i as u64, precision);
    }
}

#[test]
fn group_norm_should_match_reference() {
    check_cases(Precision::F32);
}

#[test]
fn group_norm_in_f16_should_match_reference() {
    check_cases(Precision::F16);
}

#[test]
fn group_norm_should_apply_every_activation_and_eps() {
    let gpu = gpu_or_skip!();
    for (i, activation) in Activation::ALL.into_iter().enumerate() {
        let p = GroupNorm {
            activation,
            eps: 0.25,
            ..GroupNorm::new(2, 4)
        };
        check(
            &gpu,
            Shape::new(2, 4, 6, 5),
            p,
            1.0,
            200 + i as u64,
            Precision::F32,
        );
    }
}

#[test]
fn group_norm_should_reject_bad_parameters() {
    let x = Tensor::zeros(Shape::new(1, 6, 2, 2));
    let w = vec![1.0; 6];
    for (p, needle) in [
        (GroupNorm::new(4, 6), "do not split into 4 groups"),
        (GroupNorm::new(0, 6), "0 groups"),
        (GroupNorm::new(2, 8), "expects 8 channels"),
        (
            GroupNorm {
                eps: 0.0,
                ..GroupNorm::new(2, 6)
            },
            "eps",
        ),
    ] {
        let err = reference::group_norm(&p, &x, &w, &w)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{err}");
    }
    let err = reference::group_norm(&GroupNorm::new(2, 6), &x, &w[..5], &w)
        .unwrap_err()
        .to_string();
    assert!(err.contains("6 values"), "{err}");
    let gpu = gpu_or_skip!();
    let err =
        norm::group_norm(&gpu, "bad", &GroupNorm::new(4, 6), x.shape, Precision::F32).unwrap_err();
    assert!(err.to_string().contains("groups"), "{err}");
}
