//! pad_like and slice_pad on the GPU against the CPU reference.

mod common;

use atrous::gpu::Precision;
use atrous::kernels::pad;
use atrous::ops::{PadLike, PadMode, SlicePad};
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

const ZERO: PadMode = PadMode::Constant { value: 0.0 };

fn sp(start: [i64; 4], step: [i64; 4], output: [usize; 4], mode: PadMode) -> SlicePad {
    SlicePad {
        start,
        step,
        output,
        mode,
    }
}

/// (name, input, params): slices with positive and negative steps on every axis, pads of every mode (beyond one
/// reflection too), negative pads, and slices that run off the input into the padding.
fn slice_pad_cases() -> Vec<(&'static str, Shape, SlicePad)> {
    let x = Shape::new(2, 5, 7, 9);
    let pad = |begin, end, mode| SlicePad::pad(x, begin, end, mode).unwrap();
    let half = PadMode::Constant { value: -1.25 };
    vec![
        ("identity", x, sp([0; 4], [1; 4], [2, 5, 7, 9], ZERO)),
        (
            "slice with steps",
            x,
            sp([0, 1, 2, 1], [1, 2, 2, 3], [2, 2, 3, 3], ZERO),
        ),
        (
            "reverse width",
            x,
            sp([0, 0, 0, 8], [1, 1, 1, -1], [2, 5, 7, 9], ZERO),
        ),
        (
            "negative steps everywhere",
            x,
            sp([1, 4, 6, 8], [-1, -2, -3, -4], [2, 3, 3, 3], ZERO),
        ),
        (
            "channel slice",
            x,
            sp([0, 2, 0, 0], [1; 4], [2, 2, 7, 9], ZERO),
        ),
        (
            "one batch item",
            x,
            sp([1, 0, 0, 0], [1; 4], [1, 5, 7, 9], ZERO),
        ),
        ("zero pad", x, pad([0, 0, 1, 2], [0, 0, 3, 1], ZERO)),
        (
            "constant pad on every axis",
            x,
            pad([1, 2, 1, 0], [0, 1, 2, 3], half),
        ),
        (
            "-inf pad",
            x,
            pad(
                [0, 0, 1, 1],
                [0, 0, 1, 1],
                PadMode::Constant {
                    value: f32::NEG_INFINITY,
                },
            ),
        ),
        (
            "reflect",
            x,
            pad([0, 0, 2, 3], [0, 0, 3, 4], PadMode::Reflect),
        ),
        (
            "reflect beyond one reflection",
            Shape::new(1, 2, 3, 2),
            SlicePad::pad(
                Shape::new(1, 2, 3, 2),
                [0, 0, 5, 3],
                [0, 0, 4, 6],
                PadMode::Reflect,
            )
            .unwrap(),
        ),
        (
            "reflect channels",
            x,
            pad([0, 3, 0, 0], [0, 2, 0, 0], PadMode::Reflect),
        ),
        ("edge", x, pad([0, 0, 4, 1], [0, 0, 2, 11], PadMode::Edge)),
        ("edge of a 1-wide map", Shape::new(1, 3, 1, 1), {
            SlicePad::pad(
                Shape::new(1, 3, 1, 1),
                [0, 0, 2, 3],
                [0, 0, 1, 2],
                PadMode::Edge,
            )
            .unwrap()
        }),
        ("crop", x, pad([0, -1, -2, -3], [0, -1, -1, 0], ZERO)),
        (
            "crop one side, pad the other",
            x,
            pad([0, 0, -2, 3], [0, 0, 2, -4], PadMode::Reflect),
        ),
        (
            "slice off the input into constant padding",
            x,
            sp([0, 0, -3, 10], [1, 1, 2, -2], [2, 5, 6, 8], half),
        ),
        (
            "slice off the input into reflections",
            x,
            sp(
                [0, -2, -3, 10],
                [1, 3, 2, -2],
                [2, 3, 6, 8],
                PadMode::Reflect,
            ),
        ),
        (
            "slice off the input into edges",
            x,
            sp([-1, 0, 9, -4], [2, 1, -3, 5], [2, 5, 5, 4], PadMode::Edge),
        ),
    ]
}

fn check_slice_pad(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    for (i, (name, input, p)) in slice_pad_cases().into_iter().enumerate() {
        let x = rounded(precision, &random_tensor(&mut rng(100 + i as u64), input));
        let want = reference::slice_pad(&p, &x).unwrap();
        assert_eq!(want.shape, p.output_shape(input).unwrap(), "{name}");
        let kernel = pad::slice_pad(&gpu, name, &p, input, precision).unwrap();
        let gx = upload_in(&gpu, "x", &x, precision);
        let out = gpu.tensor_in("out", want.shape, precision, true).unwrap();
        let bound = kernel
            .bind(&gpu, &[out.binding()], &[gx.binding()])
            .unwrap();
        gpu.run(&[&bound]).unwrap();
        let got = gpu.read_in(&out, precision).unwrap();
        // A gather of values and pad constants exact in f16: exact in either precision.
        if let Some(k) = (0..got.data.len()).find(|&k| got.data[k] != want.data[k]) {
            panic!(
                "{name} ({precision}): index {k}: gpu {} vs reference {} ({} values)",
                got.data[k],
                want.data[k],
                got.data.len()
            );
        }
    }
}

#[test]
fn slice_pad_should_match_reference() {
    check_slice_pad(Precision::F32);
}

#[test]
fn slice_pad_in_f16_should_match_reference() {
    check_slice_pad(Precision::F16);
}

/// The reference against NumPy: `np.pad(x, (5, 4), "reflect")` and `"edge"`, and Python slices `y[8:1:-3]`,
/// `y[-2::-4]` (as an importer clamps them: start 8, step -3, 3 elements; start 8, step -4, 3 elements).
#[test]
fn slice_pad_reference_should_match_numpy() {
    let row = |v: Vec<f32>| Tensor::new(Shape::new(1, 1, 1, v.len()), v).unwrap();
    let x = row(vec![1.0, 2.0, 3.0]);
    let along_w =
        |begin, end, mode| SlicePad::pad(x.shape, [0, 0, 0, begin], [0, 0, 0, end], mode).unwrap();
    let reflect = reference::slice_pad(&along_w(5, 4, PadMode::Reflect), &x).unwrap();
    assert_eq!(
        reflect.data,
        [2.0, 1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 3.0]
    );
    let edge = reference::slice_pad(&along_w(2, 3, PadMode::Edge), &x).unwrap();
    assert_eq!(edge.data, [1.0, 1.0, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0]);
    let crop = reference::slice_pad(&along_w(-1, 2, PadMode::Constant { value: 9.0 }), &x).unwrap();
    assert_eq!(crop.data, [2.0, 3.0, 9.0, 9.0]);
    let y = row((0..10).map(|v| v as f32).collect());
    let slice = |start, step, len| {
        let p = sp([0, 0, 0, start], [1, 1, 1, step], [1, 1, 1, len], ZERO);
        reference::slice_pad(&p, &y).unwrap().data
    };
    assert_eq!(slice(8, -3, 3), [8.0, 5.0, 2.0]);
    assert_eq!(slice(8, -4, 3), [8.0, 4.0, 0.0]);
}

#[test]
fn slice_pad_should_reject_bad_parameters() {
    let x = Shape::new(1, 3, 4, 4);
    let big = i64::MAX;
    let cases = [
        (
            sp([0; 4], [1, 1, 0, 1], [1, 3, 4, 4], ZERO),
            "step must not be 0",
        ),
        (sp([0; 4], [1; 4], [1, 3, 0, 4], ZERO), "output size"),
        // i64 overflow on the way: start + (len - 1) * step
        (sp([0, 0, 0, big], [1; 4], [1, 3, 4, 4], ZERO), "exceed"),
        (
            sp([0, 0, 0, 1], [1, 1, 1, big], [1, 3, 4, 4], ZERO),
            "exceed",
        ),
        (
            sp([0, 0, 0, -big], [1, 1, 1, -2], [1, 3, 4, 4], ZERO),
            "exceed",
        ),
        // beyond the kernel's i32 indices
        (sp([0, 0, 0, 1 << 31], [1; 4], [1, 3, 4, 1], ZERO), "exceed"),
        (
            sp([0, 0, 0, 0], [1, 1, 1, 1 << 30], [1, 3, 4, 3], ZERO),
            "exceed",
        ),
        // reflecting an axis of one element
        (
            sp([-1, 0, 0, 0], [1; 4], [2, 3, 4, 4], PadMode::Reflect),
            "at least 2",
        ),
        // more than 2^32 output elements
        (sp([0; 4], [1; 4], [1 << 16, 1 << 16, 2, 1], ZERO), "2^32"),
    ];
    let t = Tensor::zeros(x);
    for (p, what) in cases {
        let err = p
            .output_shape(x)
            .expect_err(&format!("{p:?} should be rejected"))
            .to_string();
        assert!(err.starts_with("slice_pad") && err.contains(what), "{err}");
        let err = reference::slice_pad(&p, &t).unwrap_err().to_string();
        assert!(err.starts_with("slice_pad"), "{err}");
        if let Some(gpu) = common::gpu() {
            let err = pad::slice_pad(&gpu, "bad", &p, x, Precision::F32)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("slice_pad"), "{err}");
        }
    }
    // Reflecting an axis of one element is fine where nothing leaves it.
    sp([0; 4], [1; 4], [1, 3, 4, 4], PadMode::Reflect)
        .output_shape(x)
        .unwrap();
    let err = SlicePad::pad(x, [0, 0, -2, 0], [0, 0, -2, 0], ZERO)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("slice_pad") && err.contains("no elements"),
        "{err}"
    );
    let err = SlicePad::pad(x, [0, 0, big, 0], [0, 0, 1, 0], ZERO)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("slice_pad"), "{err}");
    let err = sp([0; 4], [1; 4], [1, 3, 4, 4], ZERO)
        .output_shape(Shape::new(1, 0, 4, 4))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("slice_pad"), "{err}");
}

#[test]
fn slice_pad_should_serialize() {
    let p = sp(
        [0, 0, -1, 3],
        [1, 1, 1, -2],
        [1, 2, 3, 4],
        PadMode::Constant {
            value: f32::NEG_INFINITY,
        },
    );
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(
        json,
        r#"{"start":[0,0,-1,3],"step":[1,1,1,-2],"output":[1,2,3,4],"mode":{"mode":"constant","value":"-inf"}}"#
    );
    assert_eq!(serde_json::from_str::<SlicePad>(&json).unwrap(), p);
    for mode in [PadMode::Reflect, PadMode::Edge, ZERO] {
        let q = SlicePad { mode, ..p };
        let back: SlicePad = serde_json::from_str(&serde_json::to_string(&q).unwrap()).unwrap();
        assert_eq!(back, q);
    }
}
