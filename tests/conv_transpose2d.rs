//! conv_transpose2d on the GPU (gather and tiled kernels) against the CPU reference (scatter form) over a grid of
//! shapes.

mod common;

use atrous::gpu::Precision;
use atrous::kernels::conv_transpose2d::{self, Path};
use atrous::ops::{Activation, BatchNorm, ConvTranspose2d, ConvWeights};
use atrous::{reference, Shape, Tensor};
use common::*;
use rand::Rng;

struct Case {
    input: Shape,
    conv: ConvTranspose2d,
    bias: bool,
    batch_norm: bool,
}

#[allow(clippy::too_many_arguments)]
fn deconv(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    out_pad: usize,
    dil: usize,
    groups: usize,
) -> ConvTranspose2d {
    ConvTranspose2d {
        padding: [pad, pad],
        output_padding: [out_pad, out_pad],
        dilation: [dil, dil],
        groups,
        ..ConvTranspose2d::new(cin, cout, [k, k], [stride, stride])
    }
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |n, c, h, w, conv: ConvTranspose2d, bias, batch_norm| {
        cases.push(Case {
            input: Shape::new(n, c, h, w),
            conv,
            bias,
            batch_norm,
        })
    };
    // UNet's k2 s2 upsampling, LinkNet's k4 s2 p1, and k3 s2 p1 with output_padding 1
    add(1, 6, 8, 9, deconv(6, 3, 2, 2, 0, 0, 1, 1), true, false);
    add(2, 5, 7, 6, deconv(5, 7, 4, 2, 1, 0, 1, 1), false, false);
    add(1, 4, 9, 7, deconv(4, 5, 3, 2, 1, 1, 1, 1), true, true);
    // dilation with stride, and output_padding below dilation but not below stride
    add(1, 3, 6, 5, deconv(3, 4, 3, 2, 1, 1, 2, 1), true, false);
    add(1, 3, 5, 6, deconv(3, 2, 3, 1, 0, 1, 2, 1), false, true);
    // groups and depthwise
    add(1, 6, 7, 5, deconv(6, 10, 3, 2, 1, 1, 1, 2), true, false);
    add(2, 7, 6, 7, deconv(7, 7, 4, 2, 1, 0, 1, 7), false, true);
    // 1x1 inputs, 1x1 kernel, stride 1, odd sizes, channels not divisible by 4
    add(2, 9, 1, 1, deconv(9, 5, 2, 2, 0, 0, 1, 1), true, true);
    add(1, 3, 1, 1, deconv(3, 2, 3, 2, 1, 1, 1, 1), true, false);
    add(1, 13, 5, 3, deconv(13, 3, 1, 1, 0, 0, 1, 1), true, false);
    add(1, 3, 11, 13, deconv(3, 5, 3, 1, 1, 0, 1, 1), false, false);
    add(1, 2, 5, 7, deconv(2, 3, 5, 3, 2, 2, 1, 1), true, false);
    // the tiled kernel across several channel blocks and column blocks, c_out not a multiple of 8, stride 3
    add(2, 16, 5, 19, deconv(16, 20, 2, 2, 0, 0, 1, 1), true, false);
    add(1, 12, 9, 11, deconv(12, 13, 4, 2, 1, 0, 1, 1), true, true);
    add(1, 9, 4, 23, deconv(9, 11, 5, 3, 2, 1, 2, 1), false, false);
    // into channels 3..8 of a 9-channel destination (a concatenation), tiled across two column blocks
    add(
        1,
        6,
        4,
        10,
        ConvTranspose2d {
            out_channel_offset: 3,
            out_channels_total: Some(9),
            ..deconv(6, 5, 2, 2, 0, 0, 1, 1)
        },
        true,
        false,
    );
    // non-square kernel, stride and padding
    add(
        2,
        3,
        6,
        5,
        ConvTranspose2d {
            padding: [1, 0],
            output_padding: [0, 2],
            ..ConvTranspose2d::new(3, 4, [3, 2], [1, 3])
        },
        true,
        false,
    );
    cases
}

fn weights(
    rng: &mut rand::rngs::SmallRng,
    p: &ConvTranspose2d,
    bias: bool,
    batch_norm: bool,
) -> ConvWeights {
    let c = p.out_channels;
    ConvWeights {
        weight: random_vec(rng, p.weight_shape().iter().product()),
        bias: bias.then(|| random_vec(rng, c)),
        batch_norm: batch_norm.then(|| BatchNorm {
            weight: random_vec(rng, c),
            bias: random_vec(rng, c),
            running_mean: random_vec(rng, c),
            running_var: (0..c).map(|_| rng.random_range(0.2f32..2.0)).collect(),
            eps: 1e-5,
        }),
    }
}

/// Runs one transposed conv on every path that takes it into a poisoned output and compares with the reference. In
/// f16 the input is rounded on the host first; the weights are not (their rounding is part of the tolerance).
fn check(gpu: &atrous::Gpu, name: &str, case: &Case, seed: u64, precision: Precision) {
    for path in [Path::Gather, Path::Tiled] {
        if path == Path::Tiled && case.conv.groups != 1 {
            continue;
        }
        check_on(
            gpu,
            &format!("{name} {path:?}"),
            case,
            seed,
            precision,
            path,
        );
    }
}

fn check_on(
    gpu: &atrous::Gpu,
    name: &str,
    case: &Case,
    seed: u64,
    precision: Precision,
    path: Path,
) {
    let mut rng = rng(seed);
    let p = &case.conv;
    let x = rounded(precision, &random_tensor(&mut rng, case.input));
    let w = weights(&mut rng, p, case.bias, case.batch_norm);
    let dest = p.output_shape(case.input).unwrap();
    let result = reference::conv_transpose2d(p, &x, &w).unwrap();
    assert_eq!(result.shape, dest.with_c(p.out_channels));
    // The destination's other channels must survive: start from known values, poison only our channels.
    let mut initial = rounded(precision, &random_tensor(&mut rng, dest));
    let poison = Tensor::new(result.shape, vec![f32::NAN; result.shape.numel()]).unwrap();
    reference::place_channels(&mut initial, &poison, p.out_channel_offset);
    let mut want = initial.clone();
    reference::place_channels(&mut want, &result, p.out_channel_offset);

    let kernel =
        conv_transpose2d::conv_transpose2d_on(gpu, name, p, case.input, path, precision).unwrap();
    let folded = conv_transpose2d::fold_for(p, &w, path).unwrap();
    let gw = atrous::kernels::upload_folded(gpu, name, folded, precision).unwrap();
    let gx = upload_in(gpu, "x", &x, precision);
    let out = upload_in(gpu, "out", &initial, precision);
    let bound = kernel
        .bind(
            gpu,
            &[out.binding()],
            &[
                gx.binding(),
                gw.weight.as_entire_buffer_binding(),
                gw.bias.as_entire_buffer_binding(),
            ],
        )
        .unwrap();
    gpu.run(&[&bound]).unwrap();
    let got = gpu.read_in(&out, precision).unwrap();
    assert_close_in(precision, name, &got.data, &want.data);
}

#[test]
fn conv_transpose2d_should_match_reference() {
    check_cases(Precision::F32);
}

#[test]
fn conv_transpose2d_in_f16_should_match_reference() {
    check_cases(Precision::F16);
}

fn check_cases(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    for (i, case) in cases().iter().enumerate() {
        let p = &case.conv;
        let name = format!(
            "case {i}: {} k{:?} s{:?} p{:?} op{:?} d{:?} g{} bias={} bn={}",
            case.input,
            p.kernel,
            p.stride,
            p.padding,
            p.output_padding,
            p.dilation,
            p.groups,
            case.bias,
            case.batch_norm
        );
        check(&gpu, &name, case, i as u64, precision);
    }
}

#[test]
fn conv_transpose2d_epilogue_should_match_reference() {
    check_epilogues(Precision::F32);
}

#[test]
fn conv_transpose2d_epilogue_in_f16_should_match_reference() {
    check_epilogues(Precision::F16);
}

fn check_epilogues(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    for (i, activation) in Activation::ALL.into_iter().enumerate() {
        let case = Case {
            input: Shape::new(2, 5, 6, 7),
            conv: ConvTranspose2d {
                activation,
                ..deconv(5, 6, 3, 2, 1, 1, 1, 1)
            },
            bias: true,
            batch_norm: true,
        };
        check(
            &gpu,
            &format!("{activation:?}"),
            &case,
            100 + i as u64,
            precision,
        );
    }
}

/// The textbook sizes: `(in - 1) * s - 2p + d(k - 1) + output_padding + 1`.
#[test]
fn conv_transpose2d_should_compute_pytorch_output_sizes() {
    let x = Shape::new(1, 4, 16, 16);
    let size = |p: ConvTranspose2d| {
        let s = p.output_shape(x).unwrap();
        (s.h, s.w)
    };
    assert_eq!(size(deconv(4, 2, 2, 2, 0, 0, 1, 1)), (32, 32));
    assert_eq!(size(deconv(4, 2, 4, 2, 1, 0, 1, 1)), (32, 32));
    assert_eq!(size(deconv(4, 2, 3, 2, 1, 1, 1, 1)), (32, 32));
    assert_eq!(size(deconv(4, 2, 3, 2, 1, 0, 1, 1)), (31, 31));
    assert_eq!(size(deconv(4, 2, 3, 2, 1, 1, 2, 1)), (34, 34));
}

#[test]
fn conv_transpose2d_should_reject_bad_parameters() {
    let x = Shape::new(1, 4, 8, 8);
    let bad = [
        ConvTranspose2d::new(4, 4, [3, 3], [0, 2]),
        ConvTranspose2d {
            output_padding: [2, 0],
            ..ConvTranspose2d::new(4, 4, [3, 3], [2, 2])
        },
        ConvTranspose2d {
            output_padding: [0, 1],
            ..ConvTranspose2d::new(4, 4, [3, 3], [1, 1])
        },
        ConvTranspose2d {
            groups: 3,
            ..ConvTranspose2d::new(4, 6, [3, 3], [2, 2])
        },
        ConvTranspose2d {
            groups: 2,
            ..ConvTranspose2d::new(4, 3, [3, 3], [2, 2])
        },
        ConvTranspose2d::new(5, 4, [2, 2], [2, 2]),
        ConvTranspose2d {
            dilation: [0, 1],
            ..ConvTranspose2d::new(4, 4, [3, 3], [2, 2])
        },
        ConvTranspose2d {
            padding: [9, 9],
            ..ConvTranspose2d::new(4, 4, [2, 2], [1, 1])
        },
    ];
    for p in bad {
        let err = p
            .output_shape(x)
            .expect_err(&format!("{p:?} should be rejected"));
        assert!(err.to_string().starts_with("conv_transpose2d"), "{err}");
    }
    // The same errors come from the kernel constructor and the reference, never a panic.
    if let Some(gpu) = common::gpu() {
        let p = ConvTranspose2d::new(5, 4, [2, 2], [2, 2]);
        let err =
            conv_transpose2d::conv_transpose2d(&gpu, "bad", &p, x, Precision::F32).unwrap_err();
        assert!(err.to_string().starts_with("conv_transpose2d"), "{err}");
    }
    if let Some(gpu) = common::gpu() {
        let p = ConvTranspose2d {
            groups: 2,
            ..ConvTranspose2d::new(4, 4, [2, 2], [2, 2])
        };
        let err =
            conv_transpose2d::conv_transpose2d_on(&gpu, "g2", &p, x, Path::Tiled, Precision::F32)
                .unwrap_err();
        assert!(err.to_string().contains("groups == 1"), "{err}");
    }
    let p = ConvTranspose2d::new(4, 4, [2, 2], [2, 2]);
    let short = ConvWeights {
        weight: vec![0.5; 3],
        bias: None,
        batch_norm: None,
    };
    let err = conv_transpose2d::fold(&p, &short).unwrap_err();
    assert!(err.to_string().starts_with("conv_transpose2d"), "{err}");
}
