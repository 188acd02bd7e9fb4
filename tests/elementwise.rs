//! Elementwise kernels (broadcasting binary ops, activations, concatenation) against the CPU reference.

mod common;

use atrous::gpu::Precision;
use atrous::kernels::elementwise;
use atrous::ops::{Activation, Binary, BinaryOp, Concat, Unary};
use atrous::{reference, Shape};
use common::*;

/// Every elementwise kernel in f16, on inputs rounded to f16 on the host (so the reference sees the GPU's inputs).
#[test]
fn elementwise_in_f16_should_match_reference() {
    check_binary(Precision::F16);
    check_binary_activations(Precision::F16);
    check_activation(Precision::F16);
    check_concat(Precision::F16);
    check_concat_part(Precision::F16);
}

/// `[shapes a, b]` of a binary op.
fn run_binary(
    gpu: &atrous::Gpu,
    name: &str,
    p: &Binary,
    [a, b]: [Shape; 2],
    seed: u64,
    precision: Precision,
) {
    let mut rng = rng(seed);
    // Inputs in [-4, 4): beyond hardsigmoid's and relu6's linear range.
    let mut x = random_tensor(&mut rng, a);
    let mut y = random_tensor(&mut rng, b);
    x.data.iter_mut().chain(&mut y.data).for_each(|v| *v *= 4.0);
    let (x, y) = (rounded(precision, &x), rounded(precision, &y));
    let want = reference::binary(p, &x, &y).unwrap();

    let kernel = elementwise::binary(gpu, name, p, a, b, precision).unwrap();
    let ga = upload_in(gpu, "a", &x, precision);
    let gb = upload_in(gpu, "b", &y, precision);
    let out = gpu.tensor_in("out", want.shape, precision, true).unwrap();
    let bound = kernel
        .bind(gpu, &[out.binding()], &[ga.binding(), gb.binding()])
        .unwrap();
    gpu.run(&[&bound]).unwrap();
    let got = gpu.read_in(&out, precision).unwrap();
    assert_eq!(got.shape, p.output_shape(a, b).unwrap());
    assert_close_in(precision, name, &got.data, &want.data);
}

#[test]
fn binary_should_match_reference() {
    check_binary(Precision::F32);
}

fn check_binary(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    let s = |n, c, h, w| Shape::new(n, c, h, w);
    let full = s(2, 5, 7, 9);
    let add = Binary::new(BinaryOp::Add);
    let mul = Binary::new(BinaryOp::Mul);
    let with = |p: Binary, activation| Binary { activation, ..p };
    let cases = [
        ("same shapes add", add, full, full),
        ("same shapes mul", mul, full, full),
        // squeeze-excitation: x * scale with scale N x C x 1 x 1
        ("se scale", mul, full, s(2, 5, 1, 1)),
        ("per-channel", add, full, s(1, 5, 1, 1)),
        // the broadcast operand on the a side
        ("1x1 map on a", mul, s(2, 5, 1, 1), full),
        ("1 x C x 1 x 1 on a", add, s(1, 5, 1, 1), full),
        // both operands broadcast: the output is larger than either
        ("both sides", add, s(2, 1, 7, 1), s(1, 5, 1, 9)),
        ("row and column", mul, s(1, 3, 1, 11), s(1, 3, 13, 1)),
        ("scalar", add, s(1, 1, 1, 1), s(1, 3, 4, 5)),
        ("1x1 maps", mul, s(2, 7, 1, 1), s(2, 7, 1, 1)),
        ("add relu", with(add, Activation::Relu), full, full),
        (
            "mul sigmoid",
            with(mul, Activation::Sigmoid),
            full,
            s(2, 5, 1, 1),
        ),
        (
            "mul hardsigmoid",
            with(mul, Activation::Hardsigmoid),
            s(1, 6, 1, 1),
            s(1, 6, 5, 3),
        ),
    ];
    for (i, (name, p, a, b)) in cases.into_iter().enumerate() {
        run_binary(
            &gpu,
            &format!("{name}: {a} {:?} {b} {:?}", p.op, p.activation),
            &p,
            [a, b],
            i as u64,
            precision,
        );
    }
}

#[test]
fn binary_should_apply_every_activation() {
    check_binary_activations(Precision::F32);
}

fn check_binary_activations(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    for (i, activation) in Activation::ALL.into_iter().enumerate() {
        for op in [BinaryOp::Add, BinaryOp::Mul] {
            let p = Binary { op, activation };
            let name = format!("{op:?} {activation:?}");
            run_binary(
                &gpu,
                &name,
                &p,
                [Shape::new(1, 3, 5, 7), Shape::new(1, 3, 1, 1)],
                50 + i as u64,
                precision,
            );
        }
    }
}

#[test]
fn activation_should_match_reference() {
    check_activation(Precision::F32);
}

fn check_activation(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    for (i, activation) in Activation::ALL.into_iter().enumerate() {
        for shape in [Shape::new(2, 3, 9, 11), Shape::new(1, 5, 1, 1)] {
            let mut rng = rng(200 + i as u64);
            let mut x = random_tensor(&mut rng, shape);
            x.data.iter_mut().for_each(|v| *v *= 8.0);
            let x = rounded(precision, &x);
            let p = Unary { activation };
            let want = reference::unary(&p, &x).unwrap();
            let name = format!("{activation:?} {shape}");
            let kernel = elementwise::activation(&gpu, &name, &p, shape, precision).unwrap();
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
}

#[test]
fn concat_should_match_reference() {
    check_concat(Precision::F32);
}

fn check_concat(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    let mut rng = rng(300);
    for (h, w) in [(7, 5), (1, 1)] {
        let shapes = [3, 5, 1].map(|c| Shape::new(2, c, h, w));
        let inputs: Vec<_> = shapes
            .iter()
            .map(|&s| rounded(precision, &random_tensor(&mut rng, s)))
            .collect();
        let refs: Vec<_> = inputs.iter().collect();
        let want = reference::concat(&refs).unwrap();
        assert_eq!(want.shape, Concat.output_shape(&shapes).unwrap());

        let kernels = elementwise::concat(&gpu, "cat", &shapes, precision).unwrap();
        assert_eq!(kernels.len(), 3);
        // Poisoned: an element no part writes stays NaN and fails the comparison.
        let out = gpu.tensor_in("out", want.shape, precision, true).unwrap();
        let uploaded: Vec<_> = inputs
            .iter()
            .map(|t| upload_in(&gpu, "part", t, precision))
            .collect();
        let bound: Vec<_> = kernels
            .iter()
            .zip(&uploaded)
            .map(|(k, x)| k.bind(&gpu, &[out.binding()], &[x.binding()]).unwrap())
            .collect();
        gpu.run(&bound.iter().collect::<Vec<_>>()).unwrap();
        let got = gpu.read_in(&out, precision).unwrap();
        // A copy: exact in either precision.
        assert_eq!(got.data, want.data, "concat {h}x{w} ({precision})");
    }
}

#[test]
fn concat_part_should_leave_other_channels_alone() {
    check_concat_part(Precision::F32);
}

fn check_concat_part(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    let mut rng = rng(400);
    let dest_shape = Shape::new(2, 9, 4, 3);
    let part = rounded(precision, &random_tensor(&mut rng, Shape::new(2, 5, 4, 3)));
    let mut want = rounded(precision, &random_tensor(&mut rng, dest_shape));
    let dest = upload_in(&gpu, "dest", &want, precision);
    reference::place_channels(&mut want, &part, 2);

    let kernel =
        elementwise::concat_part(&gpu, "part", part.shape, dest_shape, 2, precision).unwrap();
    let gp = upload_in(&gpu, "part", &part, precision);
    let bound = kernel
        .bind(&gpu, &[dest.binding()], &[gp.binding()])
        .unwrap();
    gpu.run(&[&bound]).unwrap();
    let got = gpu.read_in(&dest, precision).unwrap();
    assert_eq!(got.data, want.data, "part at 2 ({precision})");
}

#[test]
fn elementwise_should_reject_bad_parameters() {
    let s = |n, c, h, w| Shape::new(n, c, h, w);
    let add = Binary::new(BinaryOp::Add);
    let mul = Binary {
        activation: Activation::Sigmoid,
        ..Binary::new(BinaryOp::Mul)
    };
    for (p, a, b, op) in [
        (add, s(1, 3, 4, 4), s(1, 2, 4, 4), "add"),
        (mul, s(2, 3, 4, 4), s(3, 3, 4, 4), "mul"),
        (mul, s(1, 3, 4, 5), s(1, 3, 4, 4), "mul"),
        (add, s(1, 3, 0, 4), s(1, 3, 1, 4), "add"),
    ] {
        let err = p
            .output_shape(a, b)
            .expect_err(&format!("{a} {b} should be rejected"));
        assert!(err.to_string().starts_with(op), "{err}");
    }
    let err = Unary {
        activation: Activation::Relu,
    }
    .output_shape(s(1, 0, 2, 2))
    .unwrap_err();
    assert!(err.to_string().starts_with("activation"), "{err}");
    for shapes in [
        vec![],
        vec![s(1, 3, 4, 4), s(1, 2, 4, 5)],
        vec![s(1, 3, 4, 4), s(2, 2, 4, 4)],
    ] {
        let err = Concat
            .output_shape(&shapes)
            .expect_err(&format!("{shapes:?} should be rejected"));
        assert!(err.to_string().starts_with("concat"), "{err}");
    }

    // Kernel constructors and references report the same errors instead of panicking.
    let mut rng = rng(500);
    let x = random_tensor(&mut rng, s(1, 3, 4, 4));
    let y = random_tensor(&mut rng, s(1, 2, 4, 4));
    assert!(reference::binary(&add, &x, &y)
        .unwrap_err()
        .to_string()
        .starts_with("add"));
    let z = random_tensor(&mut rng, s(1, 2, 4, 5));
    assert!(reference::concat(&[&x, &z])
        .unwrap_err()
        .to_string()
        .starts_with("concat"));
    let Some(gpu) = common::gpu() else { return };
    let f32 = Precision::F32;
    let err = elementwise::binary(&gpu, "bad", &add, x.shape, y.shape, f32).unwrap_err();
    assert!(err.to_string().starts_with("add"), "{err}");
    let err = elementwise::concat(&gpu, "bad", &[x.shape, z.shape], f32).unwrap_err();
    assert!(err.to_string().starts_with("concat"), "{err}");
    for (input, dest, offset) in [
        (s(1, 3, 4, 4), s(1, 5, 4, 4), 3),
        (s(1, 3, 4, 4), s(1, 5, 4, 5), 0),
        (s(2, 3, 4, 4), s(1, 5, 4, 4), 0),
    ] {
        let err = elementwise::concat_part(&gpu, "bad", input, dest, offset, f32).unwrap_err();
        assert!(err.to_string().starts_with("concat"), "{err}");
    }
}
