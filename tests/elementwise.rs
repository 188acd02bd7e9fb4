//! Elementwise kernels (broadcasting binary ops, activations, pointwise functions, concatenation, copies) against
//! the CPU reference.

mod common;

use atrous::gpu::Precision;
use atrous::kernels::elementwise;
use atrous::ops::{Activation, Binary, BinaryOp, Concat, Pointwise, Unary};
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
    check_new_binary_ops(Precision::F16);
    check_pointwise(Precision::F16);
    check_copy(Precision::F16);
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
    if p.op == BinaryOp::Div {
        // Divisors in [0.5, 4.5) in magnitude: a quotient near 0 / 0 measures nothing but the rounding of b.
        y.data
            .iter_mut()
            .for_each(|v| *v = v.signum() * (0.5 + v.abs()));
    }
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
fn sub_div_prelu_should_match_reference() {
    check_new_binary_ops(Precision::F32);
}

fn check_new_binary_ops(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    let s = |n, c, h, w| Shape::new(n, c, h, w);
    let full = s(2, 5, 7, 9);
    let p = |op| Binary::new(op);
    let cases = [
        ("sub", p(BinaryOp::Sub), full, full),
        // operand order matters: the broadcast one on each side
        ("sub per-channel b", p(BinaryOp::Sub), full, s(1, 5, 1, 1)),
        ("sub per-channel a", p(BinaryOp::Sub), s(1, 5, 1, 1), full),
        ("div", p(BinaryOp::Div), full, full),
        ("div by a scalar", p(BinaryOp::Div), full, s(1, 1, 1, 1)),
        ("scalar div", p(BinaryOp::Div), s(1, 1, 1, 1), full),
        (
            "div row by column",
            p(BinaryOp::Div),
            s(1, 3, 1, 11),
            s(1, 3, 13, 1),
        ),
        // PRelu: one slope per channel, one for all, one per element
        ("prelu per-channel", p(BinaryOp::Prelu), full, s(1, 5, 1, 1)),
        ("prelu shared", p(BinaryOp::Prelu), full, s(1, 1, 1, 1)),
        ("prelu elementwise", p(BinaryOp::Prelu), full, full),
        (
            "sub relu",
            Binary {
                activation: Activation::Relu,
                ..p(BinaryOp::Sub)
            },
            full,
            s(2, 5, 1, 1),
        ),
        (
            "div sigmoid",
            Binary {
                activation: Activation::Sigmoid,
                ..p(BinaryOp::Div)
            },
            full,
            s(1, 5, 7, 1),
        ),
    ];
    for (i, (name, p, a, b)) in cases.into_iter().enumerate() {
        run_binary(
            &gpu,
            &format!("{name}: {a} {:?} {b} {:?}", p.op, p.activation),
            &p,
            [a, b],
            600 + i as u64,
            precision,
        );
    }
}

#[test]
fn binary_reference_should_follow_onnx() {
    let t = |v: Vec<f32>| atrous::Tensor::new(Shape::new(1, 1, 1, v.len()), v).unwrap();
    let a = t(vec![3.0, -2.0, 0.0, -4.0]);
    let b = t(vec![2.0, 0.5, -1.0, 0.25]);
    let run = |op| reference::binary(&Binary::new(op), &a, &b).unwrap().data;
    assert_eq!(run(BinaryOp::Sub), [1.0, -2.5, 1.0, -4.25]);
    assert_eq!(run(BinaryOp::Div), [1.5, -4.0, -0.0, -16.0]);
    // PRelu: negative inputs times the slope; zero and positives unchanged.
    assert_eq!(run(BinaryOp::Prelu), [3.0, -1.0, 0.0, -1.0]);
}

#[test]
fn binary_should_apply_every_activation() {
    check_binary_activations(Precision::F32);
}

fn check_binary_activations(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    for (i, activation) in Activation::ALL.into_iter().enumerate() {
        for op in BinaryOp::ALL {
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

/// Every function with its parameters, and the inputs it is tested on: `(function, scale, offset)` maps the
/// uniform [-1, 1) test values to `scale * v + offset` (positive inputs for log and sqrt, away from 0 for the
/// reciprocal, wide for the saturating functions).
fn pointwise_cases() -> Vec<(Pointwise, f32, f32)> {
    vec![
        (Pointwise::LeakyRelu { alpha: 0.01 }, 4.0, 0.0),
        (Pointwise::LeakyRelu { alpha: -1.5 }, 4.0, 0.0),
        (
            Pointwise::Clip {
                min: -0.5,
                max: 1.25,
            },
            3.0,
            0.0,
        ),
        (Pointwise::Clip { min: 0.0, max: 6.0 }, 8.0, 0.0),
        (
            Pointwise::Clip {
                min: f32::NEG_INFINITY,
                max: 0.75,
            },
            3.0,
            0.0,
        ),
        (
            Pointwise::Clip {
                min: -0.25,
                max: f32::INFINITY,
            },
            3.0,
            0.0,
        ),
        // min > max: max everywhere
        (
            Pointwise::Clip {
                min: 1.0,
                max: -1.0,
            },
            3.0,
            0.0,
        ),
        (Pointwise::Elu { alpha: 1.0 }, 4.0, 0.0),
        (Pointwise::Elu { alpha: 0.3 }, 0.02, 0.0),
        (
            Pointwise::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            },
            8.0,
            0.0,
        ),
        (
            Pointwise::HardSigmoid {
                alpha: 1.0 / 6.0,
                beta: 0.5,
            },
            8.0,
            0.0,
        ),
        (Pointwise::Tanh, 6.0, 0.0),
        (Pointwise::Tanh, 60.0, 0.0),
        (Pointwise::Softplus, 8.0, 0.0),
        (Pointwise::Softplus, 100.0, 0.0),
        (Pointwise::Gelu { tanh: false }, 5.0, 0.0),
        (Pointwise::Gelu { tanh: false }, 30.0, 0.0),
        (Pointwise::Gelu { tanh: true }, 5.0, 0.0),
        (Pointwise::Gelu { tanh: true }, 30.0, 0.0),
        (Pointwise::Exp, 4.0, 0.0),
        (Pointwise::Log, 4.0, 4.1),
        (Pointwise::Log, 0.5, 0.51),
        (Pointwise::Sqrt, 8.0, 8.05),
        (Pointwise::Abs, 4.0, 0.0),
        (Pointwise::Neg, 4.0, 0.0),
        (Pointwise::Reciprocal, 1.0, 2.0),
        (Pointwise::Reciprocal, 1.0, -2.0),
        (Pointwise::Floor, 5.0, 0.0),
        (Pointwise::Ceil, 5.0, 0.0),
    ]
}

#[test]
fn pointwise_should_match_reference() {
    check_pointwise(Precision::F32);
}

fn check_pointwise(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    for (i, (function, scale, offset)) in pointwise_cases().into_iter().enumerate() {
        for shape in [Shape::new(2, 3, 9, 11), Shape::new(1, 5, 1, 1)] {
            let mut rng = rng(700 + i as u64);
            let mut x = random_tensor(&mut rng, shape);
            x.data.iter_mut().for_each(|v| *v = *v * scale + offset);
            let x = rounded(precision, &x);
            let want = reference::pointwise(&function, &x).unwrap();
            let name = format!("{function:?} on {scale} v + {offset}, {shape}");
            let kernel = elementwise::pointwise(&gpu, &name, &function, shape, precision).unwrap();
            let gx = upload_in(&gpu, "x", &x, precision);
            let out = gpu.tensor_in("out", shape, precision, true).unwrap();
            let bound = kernel
                .bind(&gpu, &[out.binding()], &[gx.binding()])
                .unwrap();
            gpu.run(&[&bound]).unwrap();
            let got = gpu.read_in(&out, precision).unwrap();
            match function {
                // Exact functions: the same value in either precision (f16 inputs give f16-exact results).
                Pointwise::Abs | Pointwise::Neg | Pointwise::Floor | Pointwise::Ceil => {
                    assert_eq!(got.data, want.data, "{name} ({precision})")
                }
                Pointwise::Clip { .. } => assert_eq!(got.data, want.data, "{name} ({precision})"),
                _ => assert_close_in(precision, &name, &got.data, &want.data),
            }
        }
    }
}

/// Clip keeps NaN (ONNX, NumPy); LeakyRelu, Abs and Neg pass it through too.
#[test]
fn pointwise_should_keep_nan() {
    let gpu = gpu_or_skip!();
    let shape = Shape::new(1, 1, 1, 4);
    let x = atrous::Tensor::new(shape, vec![f32::NAN, -3.0, 0.5, 9.0]).unwrap();
    let clip = Pointwise::Clip {
        min: -1.0,
        max: 1.0,
    };
    for function in [
        clip,
        Pointwise::LeakyRelu { alpha: 0.1 },
        Pointwise::Abs,
        Pointwise::Neg,
    ] {
        let want = reference::pointwise(&function, &x).unwrap();
        assert!(want.data[0].is_nan(), "{function:?}");
        let kernel = elementwise::pointwise(&gpu, "nan", &function, shape, Precision::F32).unwrap();
        let gx = upload(&gpu, "x", &x);
        let out = gpu.tensor("out", shape, false).unwrap();
        let bound = kernel
            .bind(&gpu, &[out.binding()], &[gx.binding()])
            .unwrap();
        gpu.run(&[&bound]).unwrap();
        let got = gpu.read(&out).unwrap();
        assert!(got.data[0].is_nan(), "{function:?}: {:?}", got.data);
        assert_eq!(got.data[1..], want.data[1..], "{function:?}");
    }
    assert_eq!(
        reference::pointwise(&clip, &x).unwrap().data[1..],
        [-1.0, 0.5, 1.0]
    );
}

#[test]
fn pointwise_reference_should_match_known_values() {
    let p = |f: Pointwise, x: f64| f.apply(x);
    // erf-based GELU: 0.5 x (1 + erf(x / sqrt 2)); values from Python's math.erfc in f64.
    let gelu = Pointwise::Gelu { tanh: false };
    for (x, want) in [
        (1.0, 0.841_344_746_068_542_9),
        (-1.0, -0.158_655_253_931_457_05),
        (0.5, 0.345_731_230_637_006_56),
        (-3.0, -0.004_049_694_094_890_287),
        (2.5, 2.484_475_836_685_559_7),
    ] {
        let got = p(gelu, x);
        assert!((got - want).abs() < 1e-14, "gelu({x}) = {got}, want {want}");
    }
    let gelu_tanh = Pointwise::Gelu { tanh: true };
    let want = 0.841_191_990_608_276_8; // 0.5 (1 + tanh(sqrt(2 / pi) * 1.044715))
    assert!((p(gelu_tanh, 1.0) - want).abs() < 1e-14);
    assert!((p(Pointwise::Softplus, 0.0) - std::f64::consts::LN_2).abs() < 1e-15);
    assert_eq!(p(Pointwise::Softplus, 800.0), 800.0);
    assert_eq!(p(Pointwise::Softplus, -800.0), 0.0);
    assert_eq!(
        p(
            Pointwise::HardSigmoid {
                alpha: 0.2,
                beta: 0.5
            },
            1.0
        ),
        0.7000000029802322
    );
    assert_eq!(p(Pointwise::Elu { alpha: 2.0 }, -1e-300), -2e-300);
    assert_eq!(p(Pointwise::LeakyRelu { alpha: 0.5 }, -2.0), -1.0);
    assert_eq!(
        p(
            Pointwise::Clip {
                min: 1.0,
                max: -1.0
            },
            0.0
        ),
        -1.0
    );
}

#[test]
fn pointwise_should_reject_bad_parameters() {
    let x = Shape::new(1, 3, 4, 4);
    for (function, what) in [
        (Pointwise::LeakyRelu { alpha: f32::NAN }, "NaN"),
        (
            Pointwise::Elu {
                alpha: f32::INFINITY,
            },
            "inf",
        ),
        (
            Pointwise::HardSigmoid {
                alpha: 0.2,
                beta: f32::NEG_INFINITY,
            },
            "-inf",
        ),
        (
            Pointwise::Clip {
                min: f32::NAN,
                max: 1.0,
            },
            "NaN",
        ),
    ] {
        let err = function
            .output_shape(x)
            .expect_err(&format!("{function:?} should be rejected"))
            .to_string();
        assert!(err.starts_with("pointwise") && err.contains(what), "{err}");
        let t = atrous::Tensor::zeros(x);
        let err = reference::pointwise(&function, &t).unwrap_err().to_string();
        assert!(err.starts_with("pointwise"), "{err}");
        if let Some(gpu) = common::gpu() {
            let err = elementwise::pointwise(&gpu, "bad", &function, x, Precision::F32)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("pointwise"), "{err}");
        }
    }
    let err = Pointwise::Exp
        .output_shape(Shape::new(1, 0, 2, 2))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("pointwise"), "{err}");
}

/// Pointwise parameters travel in the model document.
#[test]
fn pointwise_should_serialize_with_its_parameters() {
    let p = Pointwise::HardSigmoid {
        alpha: 0.25,
        beta: 0.5,
    };
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(
        json,
        r#"{"function":"hard_sigmoid","alpha":0.25,"beta":0.5}"#
    );
    for p in pointwise_cases().into_iter().map(|c| c.0) {
        let json = serde_json::to_string(&p).unwrap();
        let back: Pointwise = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p, "{json}");
    }
    // Open bounds are infinities, which JSON numbers cannot hold.
    let open = Pointwise::Clip {
        min: f32::NEG_INFINITY,
        max: 6.0,
    };
    let json = serde_json::to_string(&open).unwrap();
    assert_eq!(json, r#"{"function":"clip","min":"-inf","max":6.0}"#);
    assert_eq!(serde_json::from_str::<Pointwise>(&json).unwrap(), open);
    let err = serde_json::from_str::<Pointwise>(r#"{"function":"clip","min":"low","max":1}"#);
    assert!(err.is_err());
    assert_eq!(
        serde_json::to_string(&Pointwise::Gelu { tanh: true }).unwrap(),
        r#"{"function":"gelu","tanh":true}"#
    );
    assert_eq!(
        serde_json::to_string(&Pointwise::Reciprocal).unwrap(),
        r#"{"function":"reciprocal"}"#
    );
}

#[test]
fn copy_should_copy() {
    check_copy(Precision::F32);
}

fn check_copy(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    for shape in [Shape::new(2, 3, 5, 7), Shape::new(1, 1, 1, 1)] {
        let x = rounded(precision, &random_tensor(&mut rng(800), shape));
        let kernel = elementwise::copy(&gpu, "copy", shape, precision).unwrap();
        let gx = upload_in(&gpu, "x", &x, precision);
        let out = gpu.tensor_in("out", shape, precision, true).unwrap();
        let bound = kernel
            .bind(&gpu, &[out.binding()], &[gx.binding()])
            .unwrap();
        gpu.run(&[&bound]).unwrap();
        assert_eq!(gpu.read_in(&out, precision).unwrap().data, x.data);
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
