//! resize on the GPU against the CPU reference: bilinear (both align_corners) and nearest, from sizes and scales.

mod common;

use atrous::gpu::Precision;
use atrous::kernels::resize;
use atrous::ops::{Resize, ResizeMode, ResizeTarget};
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
    let gpu = gpu_or_skip!(precision);
    let mut seed = 0;
    for (input, target) in cases() {
        for mode in MODES {
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
        for mode in MODES {
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
