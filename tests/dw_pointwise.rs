//! The fused depthwise + 1 x 1 conv kernel against the CPU reference of the two convs run one after the other.

mod common;

use atrous::gpu::Precision;
use atrous::kernels::{conv2d, dw_pointwise};
use atrous::ops::{Activation, Conv2d, Padding2d};
use atrous::{reference, Shape, Tensor};
use common::*;

struct Case {
    input: Shape,
    dw: Conv2d,
    pw: Conv2d,
}

fn depthwise(c: usize, k: usize, stride: usize, pad: usize, dil: usize, act: Activation) -> Conv2d {
    Conv2d {
        stride: [stride, stride],
        padding: Padding2d::uniform(pad),
        dilation: [dil, dil],
        groups: c,
        activation: act,
        ..Conv2d::new(c, c, [k, k])
    }
}

fn pointwise(cin: usize, cout: usize, act: Activation, residual: bool, in_place: bool) -> Conv2d {
    Conv2d {
        activation: act,
        residual,
        residual_in_place: in_place,
        ..Conv2d::new(cin, cout, [1, 1])
    }
}

fn cases() -> Vec<Case> {
    use Activation::*;
    let case = |input: Shape, dw, pw| Case { input, dw, pw };
    vec![
        // MobileNet's stride-1 block: relu depthwise, projection added to the block's input.
        case(
            Shape::new(1, 12, 13, 11),
            depthwise(12, 3, 1, 1, 1, Relu),
            pointwise(12, 6, None, true, false),
        ),
        // The same with the residual in the destination (the planner's in-place residual).
        case(
            Shape::new(2, 9, 10, 7),
            depthwise(9, 3, 1, 1, 1, Relu6),
            pointwise(9, 24, Relu, true, true),
        ),
        // Stride 2, a 5x5 window, hardswish; 32 outputs (every accumulator of a thread).
        case(
            Shape::new(1, 8, 17, 19),
            depthwise(8, 5, 2, 2, 1, Hardswish),
            pointwise(8, 32, None, false, false),
        ),
        // Dilated, outputs not a multiple of 4, more pixels than one workgroup's 128.
        case(
            Shape::new(1, 5, 40, 37),
            depthwise(5, 3, 1, 2, 2, None),
            pointwise(5, 5, Sigmoid, false, false),
        ),
        // 1x1 maps in a batch: every tap but the centre lies in the padding.
        case(
            Shape::new(3, 7, 1, 1),
            depthwise(7, 3, 1, 1, 1, Relu),
            pointwise(7, 1, None, false, false),
        ),
    ]
}

/// Runs the fused kernel into a destination whose other channels hold known values and whose own channels are
/// poisoned (or hold the residual, in place), and compares with the reference.
fn check(gpu: &atrous::Gpu, name: &str, case: &Case, seed: u64, precision: Precision) {
    let mut rng = rng(seed);
    let (dw, pw) = (&case.dw, &case.pw);
    let x = rounded(precision, &random_tensor(&mut rng, case.input));
    let w_dw = conv_weights(&mut rng, dw.weight_shape(), dw.out_channels, true, true);
    let w_pw = conv_weights(&mut rng, pw.weight_shape(), pw.out_channels, true, true);
    let mid = dw.output_shape(case.input).unwrap();
    let dest = pw.output_shape(mid).unwrap();
    let result_shape = dest.with_c(pw.out_channels);
    let residual = pw
        .residual
        .then(|| rounded(precision, &random_tensor(&mut rng, result_shape)));
    let d = reference::conv2d(dw, &x, &w_dw, None).unwrap();
    let result = reference::conv2d(pw, &d, &w_pw, residual.as_ref()).unwrap();

    let kernel = dw_pointwise::dw_pointwise(gpu, name, dw, pw, case.input, precision).unwrap();
    let gw_dw = conv2d::upload_weights(gpu, name, dw, &w_dw, precision).unwrap();
    let gw_pw = conv2d::upload_weights(gpu, name, pw, &w_pw, precision).unwrap();
    let gx = upload_in(gpu, "x", &x, precision);
    let mut initial = rounded(precision, &random_tensor(&mut rng, dest));
    let poison = Tensor::new(result_shape, vec![f32::NAN; result_shape.numel()]).unwrap();
    reference::place_channels(&mut initial, &poison, pw.out_channel_offset);
    if pw.residual_in_place {
        initial = residual.clone().expect("an in-place residual");
    }
    let out = upload_in(gpu, "out", &initial, precision);
    let gres = residual
        .as_ref()
        .filter(|_| !pw.residual_in_place)
        .map(|r| upload_in(gpu, "residual", r, precision));
    let bound = kernel
        .bind(
            gpu,
            &[out.binding()],
            &[
                gx.binding(),
                gw_dw.weight.as_entire_buffer_binding(),
                gw_dw.bias.as_entire_buffer_binding(),
                gw_pw.weight.as_entire_buffer_binding(),
                gw_pw.bias.as_entire_buffer_binding(),
                gres.as_ref().map_or(gpu.placeholder(), |r| r.binding()),
            ],
        )
        .unwrap();
    gpu.run(&[&bound]).unwrap();
    let got = gpu.read_in(&out, precision).unwrap();
    let mut want = initial.clone();
    reference::place_channels(&mut want, &result, pw.out_channel_offset);
    assert_close_in(precision, name, &got.data, &want.data);
}

fn check_cases(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    for (i, case) in cases().iter().enumerate() {
        let name = format!(
            "case {i}: {} {:?} -> {}",
            case.input, case.dw.kernel, case.pw.out_channels
        );
        check(&gpu, &name, case, 40 + i as u64, precision);
    }
    // Writing at a channel offset of a concatenation.
    let case = Case {
        input: Shape::new(1, 6, 9, 9),
        dw: depthwise(6, 3, 1, 1, 1, Activation::Relu),
        pw: Conv2d {
            out_channel_offset: 3,
            out_channels_total: Some(11),
            ..pointwise(6, 7, Activation::None, false, false)
        },
    };
    check(&gpu, "at channel offset 3", &case, 50, precision);
}

#[test]
fn dw_pointwise_should_match_reference() {
    check_cases(Precision::F32);
}

#[test]
fn dw_pointwise_in_f16_should_match_reference() {
    check_cases(Precision::F16);
}

#[test]
fn dw_pointwise_should_refuse_pairs_it_cannot_fuse() {
    let gpu = gpu_or_skip!();
    let input = Shape::new(1, 8, 6, 6);
    let dw = depthwise(8, 3, 1, 1, 1, Activation::Relu);
    let grouped = Conv2d {
        groups: 2,
        ..Conv2d::new(8, 8, [3, 3])
    };
    let pw = pointwise(8, 4, Activation::None, false, false);
    let refused = [
        (grouped.clone(), pw.clone(), "depthwise"),
        (dw.clone(), Conv2d::new(8, 4, [3, 3]), "1 x 1"),
        (
            dw.clone(),
            pointwise(8, 33, Activation::None, false, false),
            "at most 32",
        ),
        (
            Conv2d {
                residual: true,
                ..dw.clone()
            },
            pw.clone(),
            "no residual",
        ),
    ];
    for (first, second, why) in refused {
        let err = dw_pointwise::dw_pointwise(&gpu, "pair", &first, &second, input, Precision::F32)
            .unwrap_err()
            .to_string();
        assert!(err.contains("pair") && err.contains(why), "{err}");
        assert!(dw_pointwise::unfusable(&first, &second).is_some());
    }
    assert!(dw_pointwise::unfusable(&dw, &pw).is_none());
}
