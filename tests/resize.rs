//! resize on the GPU against the CPU reference: bilinear (both align_corners) and nearest, from sizes and scales;
//! ONNX Resize's linear and nearest modes with every coordinate transform and rounding; the reference against
//! values from PyTorch and onnxruntime.

mod common;

use atrous::gpu::Precision;
use atrous::kernels::resize;
use atrous::ops::{CoordinateTransform, NearestRounding, Resize, ResizeMode, ResizeTarget};
use atrous::{reference, Shape};
use common::*;

const MODES: [ResizeMode; 3] = [
    ResizeMode::Bilinear {
        align_corners: false,
    },
    ResizeMode::Bilinear {
        align_corners: true,
    },
    ResizeMode::Nearest,
];

const TRANSFORMS: [CoordinateTransform; 5] = [
    CoordinateTransform::HalfPixel,
    CoordinateTransform::PytorchHalfPixel,
    CoordinateTransform::AlignCorners,
    CoordinateTransform::Asymmetric,
    CoordinateTransform::TfHalfPixelForNearest,
];

const ROUNDINGS: [NearestRounding; 4] = [
    NearestRounding::RoundPreferFloor,
    NearestRounding::RoundPreferCeil,
    NearestRounding::Floor,
    NearestRounding::Ceil,
];

/// Every ONNX mode: linear and nearest (each rounding) under every coordinate transform.
fn onnx_modes() -> Vec<ResizeMode> {
    let mut modes = Vec::new();
    for transform in TRANSFORMS {
        modes.push(ResizeMode::Linear { transform });
        for rounding in ROUNDINGS {
            modes.push(ResizeMode::NearestOnnx {
                transform,
                rounding,
            });
        }
    }
    modes
}

fn cases() -> Vec<(Shape, ResizeTarget)> {
    use ResizeTarget::{Scale, Size};
    vec![
        // up and down from sizes, odd sizes, batch 2, channels not divisible by 4
        (Shape::new(2, 3, 7, 9), Size([15, 20])),
        (Shape::new(1, 5, 17, 13), Size([6, 5])),
        (Shape::new(1, 2, 9, 11), Size([27, 4])),
        // from scale factors
        (Shape::new(1, 3, 8, 10), Scale([2.0, 2.0])),
        (Shape::new(2, 1, 16, 13), Scale([0.5, 0.5])),
        (Shape::new(1, 6, 10, 7), Scale([1.7, 1.7])),
        (Shape::new(1, 3, 9, 12), Scale([0.5, 1.7])),
        // out == in, from a size and from a factor that floors back to the input size
        (Shape::new(2, 3, 6, 5), Size([6, 5])),
        (Shape::new(1, 2, 5, 6), Scale([1.1, 1.1])),
        // doubled length from a factor other than 2 (PyTorch's nearest shortcut)
        (Shape::new(1, 2, 5, 5), Scale([2.1, 2.1])),
        // 1x1 map broadcast to a map (ASPP pooling branch), and 1x1 outputs
        (Shape::new(2, 7, 1, 1), Size([9, 11])),
        (Shape::new(1, 4, 1, 1), Scale([8.0, 8.0])),
        (Shape::new(1, 3, 7, 5), Size([1, 1])),
        (Shape::new(1, 1, 1, 6), Size([3, 1])),
        // a scale that is not exact in f32 (0.7) and lands on integers: nearest must agree with PyTorch's f32 product
        (Shape::new(1, 1, 14, 14), Size([20, 20])),
        // DeepLab's final x8 upsampling of an odd map
        (Shape::new(1, 21, 9, 7), Size([65, 49])),
    ]
}

fn check_resize(precision: Precision) {
    check_resize_modes(precision, &MODES, cases());
}

/// ONNX's modes on the same cases, plus coordinates one f32 ulp from a rounding tie (the scale 1 / 3.5 of a
/// 64-row map, whose row 1 maps to 3.4999998) and a scale whose f32 product with the input is an integer.
fn check_onnx_resize(precision: Precision) {
    let mut cases = cases();
    let scale = (1.0f32 / 3.5) as f64;
    cases.push((Shape::new(1, 2, 64, 3), ResizeTarget::Scale([scale, 1.0])));
    cases.push((
        Shape::new(1, 2, 3, 10),
        ResizeTarget::Scale([1.0, 0.7f32 as f64]),
    ));
    check_resize_modes(precision, &onnx_modes(), cases);
}

fn check_resize_modes(
    precision: Precision,
    modes: &[ResizeMode],
    cases: Vec<(Shape, ResizeTarget)>,
) {
    let gpu = gpu_or_skip!(precision);
    let mut seed = 0;
    for (input, target) in cases {
        for &mode in modes {
            seed += 1;
            let p = Resize { mode, target };
            let name = format!("{input} -> {target:?} {mode:?}");
            let mut rng = rng(seed);
            let x = rounded(precision, &random_tensor(&mut rng, input));
            let want = reference::resize(&p, &x).unwrap();
            let kernel = resize::resize(&gpu, &name, &p, input, precision).unwrap();
            let gx = upload_in(&gpu, "x", &x, precision);
            let out = gpu.tensor_in("out", want.shape, precision, true).unwrap();
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
fn resize_should_match_reference() {
    check_resize(Precision::F32);
}

#[test]
fn resize_in_f16_should_match_reference() {
    check_resize(Precision::F16);
}

#[test]
fn onnx_resize_should_match_reference() {
    check_onnx_resize(Precision::F32);
}

#[test]
fn onnx_resize_in_f16_should_match_reference() {
    check_onnx_resize(Precision::F16);
}

/// The reference against onnxruntime 1.23 (CPU provider, opset 19): a 2 x 4 map of 0..8 resized to 3 x 7 by
/// `sizes` with each linear transform, and the indices each nearest mode picks; a near-tie coordinate; an output
/// size from an f32 product.
#[test]
fn onnx_resize_reference_should_match_onnxruntime() {
    let x =
        atrous::Tensor::new(Shape::new(1, 1, 2, 4), (0..8).map(|v| v as f32).collect()).unwrap();
    let run = |mode| {
        let p = Resize {
            mode,
            target: ResizeTarget::Size([3, 7]),
        };
        reference::resize(&p, &x).unwrap().data
    };
    let half_pixel = [
        0.0,
        0.357_142_87,
        0.928_571_46,
        1.5,
        2.071_428_5,
        2.642_857,
        3.0,
        2.0,
        2.357_143,
        2.928_571_7,
        3.5,
        4.071_429,
        4.642_857,
        5.0,
        4.0,
        4.357_143,
        4.928_571_7,
        5.5,
        6.071_428_3,
        6.642_857_6,
        7.0,
    ];
    let align_corners = [
        0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 4.0, 4.5, 5.0, 5.5,
        6.0, 6.5, 7.0,
    ];
    let asymmetric = [
        0.0,
        0.571_428_6,
        1.142_857_2,
        1.714_285_7,
        2.285_714_4,
        2.857_143,
        3.0,
        2.666_666_7,
        3.238_095_3,
        3.809_523_8,
        4.380_952_4,
        4.952_381,
        5.523_809_4,
        5.666_667,
        4.0,
        4.571_428_3,
        5.142_857_6,
        5.714_285_4,
        6.285_714_6,
        6.857_143,
        7.0,
    ];
    for (transform, want) in [
        (CoordinateTransform::HalfPixel, &half_pixel),
        (CoordinateTransform::PytorchHalfPixel, &half_pixel),
        (CoordinateTransform::AlignCorners, &align_corners),
        (CoordinateTransform::Asymmetric, &asymmetric),
    ] {
        assert_close(
            &format!("linear {transform:?}"),
            &run(ResizeMode::Linear { transform }),
            want,
        );
    }
    use CoordinateTransform::{AlignCorners, Asymmetric, HalfPixel};
    use NearestRounding::{Ceil, Floor, RoundPreferCeil, RoundPreferFloor};
    let nearest: [(CoordinateTransform, NearestRounding, [u8; 21]); 12] = [
        (
            HalfPixel,
            RoundPreferFloor,
            [
                0, 0, 1, 1, 2, 3, 3, 0, 0, 1, 1, 2, 3, 3, 4, 4, 5, 5, 6, 7, 7,
            ],
        ),
        (
            HalfPixel,
            RoundPreferCeil,
            [
                0, 0, 1, 2, 2, 3, 3, 4, 4, 5, 6, 6, 7, 7, 4, 4, 5, 6, 6, 7, 7,
            ],
        ),
        (
            HalfPixel,
            Floor,
            [
                0, 0, 0, 1, 2, 2, 3, 0, 0, 0, 1, 2, 2, 3, 4, 4, 4, 5, 6, 6, 7,
            ],
        ),
        (
            HalfPixel,
            Ceil,
            [
                0, 1, 1, 2, 3, 3, 3, 4, 5, 5, 6, 7, 7, 7, 4, 5, 5, 6, 7, 7, 7,
            ],
        ),
        (
            Asymmetric,
            RoundPreferFloor,
            [
                0, 1, 1, 2, 2, 3, 3, 4, 5, 5, 6, 6, 7, 7, 4, 5, 5, 6, 6, 7, 7,
            ],
        ),
        (
            Asymmetric,
            RoundPreferCeil,
            [
                0, 1, 1, 2, 2, 3, 3, 4, 5, 5, 6, 6, 7, 7, 4, 5, 5, 6, 6, 7, 7,
            ],
        ),
        (
            Asymmetric,
            Floor,
            [
                0, 0, 1, 1, 2, 2, 3, 0, 0, 1, 1, 2, 2, 3, 4, 4, 5, 5, 6, 6, 7,
            ],
        ),
        (
            Asymmetric,
            Ceil,
            [
                0, 1, 2, 2, 3, 3, 3, 4, 5, 6, 6, 7, 7, 7, 4, 5, 6, 6, 7, 7, 7,
            ],
        ),
        (
            AlignCorners,
            RoundPreferFloor,
            [
                0, 0, 1, 1, 2, 2, 3, 0, 0, 1, 1, 2, 2, 3, 4, 4, 5, 5, 6, 6, 7,
            ],
        ),
        (
            AlignCorners,
            RoundPreferCeil,
            [
                0, 1, 1, 2, 2, 3, 3, 4, 5, 5, 6, 6, 7, 7, 4, 5, 5, 6, 6, 7, 7,
            ],
        ),
        (
            AlignCorners,
            Floor,
            [
                0, 0, 1, 1, 2, 2, 3, 0, 0, 1, 1, 2, 2, 3, 4, 4, 5, 5, 6, 6, 7,
            ],
        ),
        (
            AlignCorners,
            Ceil,
            [
                0, 1, 1, 2, 2, 3, 3, 4, 5, 5, 6, 6, 7, 7, 4, 5, 5, 6, 6, 7, 7,
            ],
        ),
    ];
    for (transform, rounding, want) in nearest {
        let want: Vec<f32> = want.iter().map(|&v| v as f32).collect();
        let got = run(ResizeMode::NearestOnnx {
            transform,
            rounding,
        });
        assert_eq!(got, want, "nearest {transform:?} {rounding:?}");
    }
    // Row 1 of a 64-row map at scale f32(1 / 3.5) maps to 3.4999998, one ulp short of a tie: onnxruntime rounds it as
    // the tie (3 preferring the floor, 4 the ceiling), and so does the reference.
    let rows =
        atrous::Tensor::new(Shape::new(1, 1, 64, 1), (0..64).map(|v| v as f32).collect()).unwrap();
    for (rounding, want) in [
        (RoundPreferFloor, [0.0, 3.0, 7.0, 10.0, 14.0, 17.0]),
        (RoundPreferCeil, [0.0, 4.0, 7.0, 11.0, 14.0, 18.0]),
    ] {
        let p = Resize {
            mode: ResizeMode::NearestOnnx {
                transform: Asymmetric,
                rounding,
            },
            target: ResizeTarget::Scale([(1.0f32 / 3.5) as f64, 1.0]),
        };
        let got = reference::resize(&p, &rows).unwrap();
        assert_eq!(got.shape, Shape::new(1, 1, 18, 1));
        assert_eq!(got.data[..6], want, "{rounding:?}");
    }
    // 10 x f32(0.7) is 7 in f32 (6.9999998 exactly): onnxruntime's output is 7 wide where PyTorch's f64 floor gives 6.
    let p = |mode| Resize {
        mode,
        target: ResizeTarget::Scale([1.0, 0.7f32 as f64]),
    };
    let row = Shape::new(1, 1, 1, 10);
    let onnx = p(ResizeMode::NearestOnnx {
        transform: Asymmetric,
        rounding: Floor,
    });
    assert_eq!(onnx.output_shape(row).unwrap().w, 7);
    assert_eq!(p(ResizeMode::Nearest).output_shape(row).unwrap().w, 6);
    let x = atrous::Tensor::new(row, (0..10).map(|v| v as f32).collect()).unwrap();
    assert_eq!(
        reference::resize(&onnx, &x).unwrap().data,
        [0.0, 1.0, 2.0, 4.0, 5.0, 7.0, 8.0]
    );
}

/// Linear ONNX resizes clamp the source coordinate to the input, as onnxruntime does (and the ONNX reference, whose
/// edge-padded neighbours give the same values): half-pixel coordinates below 0 read the first element, those past
/// the end the last.
#[test]
fn onnx_linear_resize_should_clamp_to_the_edges() {
    let x = atrous::Tensor::new(Shape::new(1, 1, 1, 2), vec![1.0, 3.0]).unwrap();
    let p = Resize {
        mode: ResizeMode::Linear {
            transform: CoordinateTransform::HalfPixel,
        },
        target: ResizeTarget::Size([1, 8]),
    };
    // x_original = (x + 0.5) / 4 - 0.5: -0.375, -0.125, 0.125, ... 1.375
    assert_eq!(
        reference::resize(&p, &x).unwrap().data,
        [1.0, 1.0, 1.25, 1.75, 2.25, 2.75, 3.0, 3.0]
    );
}

/// The ONNX modes travel in the model document.
#[test]
fn onnx_resize_modes_should_serialize() {
    let mode = ResizeMode::NearestOnnx {
        transform: CoordinateTransform::TfHalfPixelForNearest,
        rounding: NearestRounding::RoundPreferCeil,
    };
    let json = serde_json::to_string(&mode).unwrap();
    assert_eq!(
        json,
        r#"{"nearest_onnx":{"transform":"tf_half_pixel_for_nearest","rounding":"round_prefer_ceil"}}"#
    );
    for mode in onnx_modes().into_iter().chain(MODES) {
        let json = serde_json::to_string(&mode).unwrap();
        assert_eq!(serde_json::from_str::<ResizeMode>(&json).unwrap(), mode);
    }
    assert_eq!(
        serde_json::to_string(&ResizeMode::Nearest).unwrap(),
        r#""nearest""#
    );
}

#[test]
fn resize_reference_should_follow_pytorch_conventions() {
    // 1x4 -> 1x8 bilinear on [0, 1, 2, 3]; values from torch.nn.functional.interpolate.
    let x = atrous::Tensor::new(Shape::new(1, 1, 1, 4), vec![0.0, 1.0, 2.0, 3.0]).unwrap();
    let run = |mode| {
        let p = Resize {
            mode,
            target: ResizeTarget::Size([1, 8]),
        };
        reference::resize(&p, &x).unwrap().data
    };
    let half_pixel = run(MODES[0]);
    let corners = run(MODES[1]);
    let nearest = run(MODES[2]);
    assert_close(
        "align_corners=False",
        &half_pixel,
        &[0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0],
    );
    let step = 3.0 / 7.0;
    let want: Vec<f32> = (0..8).map(|i| i as f32 * step).collect();
    assert_close("align_corners=True", &corners, &want);
    assert_eq!(nearest, [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
}

#[test]
fn resize_should_reject_bad_parameters() {
    let x = Shape::new(1, 3, 8, 8);
    let bad = [
        ResizeTarget::Scale([0.0, 1.0]),
        ResizeTarget::Scale([1.0, f64::NAN]),
        ResizeTarget::Scale([f64::INFINITY, 1.0]),
        ResizeTarget::Scale([-2.0, 2.0]),
        // floors to an empty output
        ResizeTarget::Scale([0.1, 1.0]),
        ResizeTarget::Size([0, 4]),
        ResizeTarget::Size([4, 0]),
    ];
    for target in bad {
        for mode in MODES.into_iter().chain(onnx_modes()) {
            let p = Resize { mode, target };
            let err = p
                .output_shape(x)
                .expect_err(&format!("{p:?} should be rejected"));
            assert!(err.to_string().starts_with("resize"), "{err}");
            let err = reference::resize(&p, &atrous::Tensor::zeros(x)).unwrap_err();
            assert!(err.to_string().starts_with("resize"), "{err}");
        }
    }
    let empty = Resize {
        mode: MODES[0],
        target: ResizeTarget::Size([4, 4]),
    };
    let err = empty.output_shape(Shape::new(1, 0, 8, 8)).unwrap_err();
    assert!(err.to_string().starts_with("resize"), "{err}");
}
