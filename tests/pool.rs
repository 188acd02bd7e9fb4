//! Pooling on the GPU against the CPU reference, and PyTorch's pooling size rule checked by hand.

mod common;

use atrous::gpu::{GpuTensor, Precision, TensorData};
use atrous::kernels::pool;
use atrous::ops::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d, MaxUnpool2d};
use atrous::{reference, Gpu, Shape, Tensor};
use common::*;
use rand::Rng;

fn max_pool(
    k: [usize; 2],
    s: [usize; 2],
    pad: [usize; 2],
    dil: [usize; 2],
    ceil: bool,
) -> MaxPool2d {
    MaxPool2d {
        stride: s,
        padding: pad,
        dilation: dil,
        ceil_mode: ceil,
        ..MaxPool2d::new(k)
    }
}

fn avg_pool(
    k: [usize; 2],
    s: [usize; 2],
    pad: [usize; 2],
    ceil: bool,
    include_pad: bool,
) -> AvgPool2d {
    AvgPool2d {
        stride: s,
        padding: pad,
        ceil_mode: ceil,
        count_include_pad: include_pad,
        ..AvgPool2d::new(k)
    }
}

fn output_hw(p: &MaxPool2d, h: usize, w: usize) -> (usize, usize) {
    let s = p.output_shape(Shape::new(1, 1, h, w)).unwrap();
    (s.h, s.w)
}

// Expected sizes worked out by hand from PyTorch's rule:
// out = floor((in + 2p - d(k-1) - 1 + (ceil ? s-1 : 0)) / s) + 1, then in ceil mode out -= 1 if (out-1)*s >= in + p.
#[test]
fn max_pool2d_output_shape_should_follow_pytorch() {
    // in 7, k3 s2 p1: floor (7+2-2-1)/2+1 = 4; ceil (6+1)/2+1 = 4; last start 6 < 8, kept.
    assert_eq!(
        output_hw(&max_pool([3, 3], [2, 2], [1, 1], [1, 1], true), 7, 7),
        (4, 4)
    );
    assert_eq!(
        output_hw(&max_pool([3, 3], [2, 2], [1, 1], [1, 1], false), 7, 7),
        (4, 4)
    );
    // in 6, k2 s2: floor 4/2+1 = 3; ceil 5/2+1 = 3.
    assert_eq!(
        output_hw(&max_pool([2, 2], [2, 2], [0, 0], [1, 1], true), 6, 6),
        (3, 3)
    );
    // in 7, k2 s2: floor 5/2+1 = 3; ceil 6/2+1 = 4 (the last window holds only column 6).
    assert_eq!(
        output_hw(&max_pool([2, 2], [2, 2], [0, 0], [1, 1], false), 7, 7),
        (3, 3)
    );
    assert_eq!(
        output_hw(&max_pool([2, 2], [2, 2], [0, 0], [1, 1], true), 7, 7),
        (4, 4)
    );
    // in 6, k3 s2 p1: floor 5/2+1 = 3; ceil 6/2+1 = 4, last window starts at 3*2-1 = 5 < 6+1, kept.
    assert_eq!(
        output_hw(&max_pool([3, 3], [2, 2], [1, 1], [1, 1], false), 6, 6),
        (3, 3)
    );
    assert_eq!(
        output_hw(&max_pool([3, 3], [2, 2], [1, 1], [1, 1], true), 6, 6),
        (4, 4)
    );
    // in 5, k2 s2 p1 ceil: 6/2+1 = 4, but the last window would start at 3*2 = 6 >= 5+1: shrunk to 3.
    assert_eq!(
        output_hw(&max_pool([2, 2], [2, 2], [1, 1], [1, 1], true), 5, 5),
        (3, 3)
    );
    // in 3, k2 s2 p1 ceil: 4/2+1 = 3, start 2*2 = 4 >= 3+1: shrunk to 2 (= floor mode's 3/2+1).
    assert_eq!(
        output_hw(&max_pool([2, 2], [2, 2], [1, 1], [1, 1], true), 3, 3),
        (2, 2)
    );
    // in 10, k3 s2 p1 d2 (span 5): floor 7/2+1 = 4; ceil 8/2+1 = 5, start 8 < 11, kept.
    assert_eq!(
        output_hw(&max_pool([3, 3], [2, 2], [1, 1], [2, 2], false), 10, 10),
        (4, 4)
    );
    assert_eq!(
        output_hw(&max_pool([3, 3], [2, 2], [1, 1], [2, 2], true), 10, 10),
        (5, 5)
    );
    // in 2, k3 s2 ceil: (2-3+1)/2+1 = 1; PyTorch accepts a window that overhangs the input in ceil mode.
    assert_eq!(
        output_hw(&max_pool([3, 3], [2, 2], [0, 0], [1, 1], true), 2, 2),
        (1, 1)
    );
    // Non-square: h 13 k3 s1 p1 -> 13; w 11 k2 s2 -> 5.
    assert_eq!(
        output_hw(&max_pool([3, 2], [1, 2], [1, 0], [1, 1], false), 13, 11),
        (13, 5)
    );
    // 1x1 map, k1.
    assert_eq!(output_hw(&MaxPool2d::new([1, 1]), 1, 1), (1, 1));
}

fn upload_u32(gpu: &Gpu, label: &str, shape: Shape, data: &[u32]) -> GpuTensor {
    gpu.upload(label, shape, TensorData::U32(data)).unwrap()
}

/// Runs max_pool2d on the GPU into poisoned outputs: the values and, with `return_indices`, the indices.
fn gpu_max_pool(
    gpu: &Gpu,
    name: &str,
    p: &MaxPool2d,
    x: &Tensor,
    precision: Precision,
) -> (Tensor, Option<Vec<u32>>) {
    let kernel = pool::max_pool2d(gpu, name, p, x.shape, precision).unwrap();
    let shape = p.output_shape(x.shape).unwrap();
    let gx = upload_in(gpu, "x", x, precision);
    let out = gpu.tensor_in("out", shape, precision, true).unwrap();
    let indices = p
        .return_indices
        .then(|| gpu.tensor("indices", shape, true).unwrap());
    let mut outputs = vec![out.binding()];
    outputs.extend(indices.as_ref().map(|t| t.binding()));
    let bound = kernel.bind(gpu, &outputs, &[gx.binding()]).unwrap();
    gpu.run(&[&bound]).unwrap();
    (
        gpu.read_in(&out, precision).unwrap(),
        indices.map(|t| gpu.read_u32(&t).unwrap()),
    )
}

/// Every pooling kernel in f16. Inputs are rounded to f16 on the host, so max pooling, its indices and unpooling
/// must match the reference exactly; the averages within the f16 tolerance.
#[test]
fn pool_in_f16_should_match_reference() {
    let f16 = Precision::F16;
    check_max_pool(f16);
    check_max_pool_ties(f16);
    check_max_pool_infinities(f16);
    check_avg_pool(f16);
    check_adaptive_avg_pool(f16);
    check_unpool_round_trip(f16);
    check_unpool_uploaded(f16);
}

fn max_pool_cases() -> Vec<(Shape, MaxPool2d)> {
    let (f, t) = (false, true);
    vec![
        (
            Shape::new(1, 3, 17, 23),
            max_pool([3, 3], [2, 2], [1, 1], [1, 1], f),
        ),
        (
            Shape::new(2, 5, 13, 11),
            max_pool([2, 2], [2, 2], [0, 0], [1, 1], t),
        ),
        (
            Shape::new(2, 5, 13, 11),
            max_pool([2, 2], [2, 2], [0, 0], [1, 1], f),
        ),
        // stride > 1 with dilation > 1, padding half the kernel
        (
            Shape::new(1, 6, 19, 21),
            max_pool([3, 3], [2, 2], [1, 1], [2, 2], f),
        ),
        (
            Shape::new(1, 3, 10, 10),
            max_pool([3, 3], [2, 2], [1, 1], [2, 2], t),
        ),
        (
            Shape::new(1, 3, 20, 17),
            max_pool([5, 3], [3, 2], [2, 1], [2, 3], t),
        ),
        // ceil mode: last window starting in the input's last column, and the shrink rule
        (
            Shape::new(1, 3, 6, 6),
            max_pool([3, 3], [2, 2], [1, 1], [1, 1], t),
        ),
        (
            Shape::new(1, 3, 5, 5),
            max_pool([2, 2], [2, 2], [1, 1], [1, 1], t),
        ),
        (
            Shape::new(2, 3, 3, 3),
            max_pool([2, 2], [2, 2], [1, 1], [1, 1], t),
        ),
        // a window larger than the input, accepted in ceil mode
        (
            Shape::new(1, 2, 2, 2),
            max_pool([3, 3], [2, 2], [0, 0], [1, 1], t),
        ),
        // 1x1 maps
        (Shape::new(2, 7, 1, 1), MaxPool2d::new([1, 1])),
        (
            Shape::new(1, 5, 1, 1),
            max_pool([3, 3], [1, 1], [1, 1], [1, 1], f),
        ),
        // odd sizes, non-square kernel, channels not divisible by 4
        (
            Shape::new(1, 9, 15, 9),
            max_pool([3, 2], [1, 2], [1, 1], [1, 1], f),
        ),
        (
            Shape::new(1, 4, 33, 31),
            max_pool([5, 5], [3, 3], [2, 2], [1, 1], t),
        ),
        // ResNet stem pool
        (
            Shape::new(1, 3, 32, 29),
            max_pool([3, 3], [2, 2], [1, 1], [1, 1], f),
        ),
    ]
}

#[test]
fn max_pool2d_should_match_reference() {
    check_max_pool(Precision::F32);
}

fn check_max_pool(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    for (i, (input, p)) in max_pool_cases().into_iter().enumerate() {
        for return_indices in [false, true] {
            let p = MaxPool2d {
                return_indices,
                ..p.clone()
            };
            let name = format!(
                "case {i}: {input} k{:?} s{:?} p{:?} d{:?} ceil={} indices={return_indices}",
                p.kernel, p.stride, p.padding, p.dilation, p.ceil_mode
            );
            let x = rounded(precision, &random_tensor(&mut rng(i as u64), input));
            let (want, want_idx) = reference::max_pool2d(&p, &x).unwrap();
            let (got, got_idx) = gpu_max_pool(&gpu, &name, &p, &x, precision);
            assert_eq!(got.data, want.data, "{name} ({precision})");
            assert_eq!(got_idx, want_idx, "{name}: indices");
        }
    }
}

#[test]
fn max_pool2d_ties_should_keep_the_first_maximum() {
    check_max_pool_ties(Precision::F32);
}

fn check_max_pool_ties(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    for (i, (input, p)) in max_pool_cases().into_iter().enumerate() {
        let p = MaxPool2d {
            return_indices: true,
            ..p
        };
        let name = format!("ties, case {i}: {input}");
        // Three levels only (exact in f16), so most windows hold several equal maxima.
        let mut rng = rng(50 + i as u64);
        let data = (0..input.numel())
            .map(|_| rng.random_range(0..3) as f32 * 0.5 - 0.25)
            .collect();
        let x = Tensor::new(input, data).unwrap();
        let (want, want_idx) = reference::max_pool2d(&p, &x).unwrap();
        let (got, got_idx) = gpu_max_pool(&gpu, &name, &p, &x, precision);
        assert_eq!(got.data, want.data, "{name} ({precision})");
        assert_eq!(got_idx, want_idx, "{name}: indices");
    }
}

#[test]
fn max_pool2d_reference_should_keep_the_first_maximum() {
    // One 2x3 plane, one 2x3 window: the maximum 5 appears at flat indices 1 and 3.
    let x = Tensor::new(Shape::new(1, 1, 2, 3), vec![1.0, 5.0, 2.0, 5.0, 0.0, 5.0]).unwrap();
    let p = MaxPool2d {
        return_indices: true,
        ..MaxPool2d::new([2, 3])
    };
    let (out, idx) = reference::max_pool2d(&p, &x).unwrap();
    assert_eq!(out.data, vec![5.0]);
    assert_eq!(idx, Some(vec![1]));
}

#[test]
fn max_pool2d_should_handle_infinities_and_nan_like_pytorch() {
    check_max_pool_infinities(Precision::F32);
}

fn check_max_pool_infinities(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    // A window of -inf keeps PyTorch's initial index, its first in-bounds tap; a NaN takes over from anything, so
    // the last NaN of a window wins.
    let input = Shape::new(1, 2, 7, 6);
    let mut x = rounded(precision, &random_tensor(&mut rng(60), input));
    for v in &mut x.data[..input.plane()] {
        *v = f32::NEG_INFINITY;
    }
    for i in [input.plane() + 8, input.plane() + 9, input.plane() + 20] {
        x.data[i] = f32::NAN;
    }
    let p = MaxPool2d {
        return_indices: true,
        ..max_pool([3, 3], [2, 2], [1, 1], [1, 1], true)
    };
    let (want, want_idx) = reference::max_pool2d(&p, &x).unwrap();
    let (got, got_idx) = gpu_max_pool(&gpu, "inf and nan", &p, &x, precision);
    assert_eq!(got_idx, want_idx, "indices");
    for (i, (g, w)) in got.data.iter().zip(&want.data).enumerate() {
        assert!(
            g == w || g.is_nan() && w.is_nan(),
            "index {i}: gpu {g} vs reference {w}"
        );
    }
}

/// Runs a single-input, single-output kernel into a poisoned output.
fn run_simple(
    gpu: &Gpu,
    kernel: &atrous::gpu::Kernel,
    x: &Tensor,
    out_shape: Shape,
    precision: Precision,
) -> Tensor {
    let gx = upload_in(gpu, "x", x, precision);
    let out = gpu.tensor_in("out", out_shape, precision, true).unwrap();
    let bound = kernel.bind(gpu, &[out.binding()], &[gx.binding()]).unwrap();
    gpu.run(&[&bound]).unwrap();
    gpu.read_in(&out, precision).unwrap()
}

#[test]
fn avg_pool2d_should_match_reference() {
    check_avg_pool(Precision::F32);
}

fn check_avg_pool(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    let mut cases = Vec::new();
    for include_pad in [true, false] {
        let mut add = |input: Shape, k, s, pad, ceil| {
            cases.push((input, avg_pool(k, s, pad, ceil, include_pad)))
        };
        add(Shape::new(1, 3, 17, 23), [3, 3], [2, 2], [1, 1], false);
        add(Shape::new(2, 5, 13, 11), [2, 2], [2, 2], [0, 0], true);
        add(Shape::new(2, 5, 13, 11), [2, 2], [2, 2], [0, 0], false);
        // ceil-mode windows overhanging the right padding, and the shrink rule
        add(Shape::new(1, 3, 6, 6), [3, 3], [2, 2], [1, 1], true);
        add(Shape::new(1, 3, 5, 5), [2, 2], [2, 2], [1, 1], true);
        add(Shape::new(1, 6, 7, 9), [3, 3], [2, 2], [1, 1], true);
        add(Shape::new(2, 3, 10, 8), [5, 4], [3, 3], [2, 2], true);
        add(Shape::new(1, 2, 2, 2), [3, 3], [2, 2], [0, 0], true);
        // 1x1 maps, odd sizes, non-square, channels not divisible by 4
        add(Shape::new(2, 7, 1, 1), [1, 1], [1, 1], [0, 0], false);
        add(Shape::new(1, 5, 1, 1), [3, 3], [1, 1], [1, 1], false);
        add(Shape::new(1, 9, 15, 9), [3, 2], [1, 2], [1, 1], false);
        add(Shape::new(1, 4, 33, 31), [5, 5], [3, 3], [2, 2], true);
    }
    for (i, (input, p)) in cases.into_iter().enumerate() {
        let name = format!(
            "case {i}: {input} k{:?} s{:?} p{:?} ceil={} count_include_pad={}",
            p.kernel, p.stride, p.padding, p.ceil_mode, p.count_include_pad
        );
        let x = rounded(precision, &random_tensor(&mut rng(100 + i as u64), input));
        let want = reference::avg_pool2d(&p, &x).unwrap();
        let kernel = pool::avg_pool2d(&gpu, &name, &p, input, precision).unwrap();
        let got = run_simple(&gpu, &kernel, &x, want.shape, precision);
        assert_close_in(precision, &name, &got.data, &want.data);
    }
}

#[test]
fn avg_pool2d_reference_divisors_should_follow_pytorch() {
    // in 6, k3 s2 p1 ceil -> 4 windows: columns [-1,2), [1,4), [3,6), [5,8).
    // The last is clipped to input + padding (5..7, size 2) for the padded divisor and to the input (5..6) otherwise.
    let x = Tensor::new(Shape::new(1, 1, 1, 6), vec![1.0; 6]).unwrap();
    let both = |include_pad| {
        let p = AvgPool2d {
            kernel: [1, 3],
            stride: [1, 2],
            padding: [0, 1],
            ceil_mode: true,
            count_include_pad: include_pad,
        };
        reference::avg_pool2d(&p, &x).unwrap().data
    };
    // Padded divisors 3, 3, 3, 2 over sums 2, 3, 3, 1.
    assert_eq!(both(true), vec![2.0 / 3.0, 1.0, 1.0, 0.5]);
    assert_eq!(both(false), vec![1.0; 4]);
}

#[test]
fn adaptive_avg_pool2d_should_match_reference() {
    check_adaptive_avg_pool(Precision::F32);
}

fn check_adaptive_avg_pool(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    let cases = [
        // overlapping bins
        (Shape::new(1, 3, 7, 7), [3, 3]),
        (Shape::new(2, 5, 5, 5), [4, 4]),
        (Shape::new(1, 6, 10, 10), [6, 6]),
        (Shape::new(1, 3, 7, 10), [3, 6]),
        // output larger than the input
        (Shape::new(1, 3, 3, 3), [5, 5]),
        (Shape::new(2, 3, 1, 1), [2, 3]),
        // PSPNet bins
        (Shape::new(2, 7, 13, 17), [1, 1]),
        (Shape::new(2, 7, 13, 17), [2, 2]),
        (Shape::new(2, 7, 13, 17), [3, 3]),
        (Shape::new(2, 7, 13, 17), [6, 6]),
        (Shape::new(1, 9, 64, 64), [6, 6]),
        (Shape::new(1, 5, 1, 1), [1, 1]),
    ];
    for (i, (input, output)) in cases.into_iter().enumerate() {
        let p = AdaptiveAvgPool2d { output };
        let name = format!("case {i}: {input} -> {output:?}");
        let x = rounded(precision, &random_tensor(&mut rng(200 + i as u64), input));
        let want = reference::adaptive_avg_pool2d(&p, &x).unwrap();
        let kernel = pool::adaptive_avg_pool2d(&gpu, &name, &p, input, precision).unwrap();
        let got = run_simple(&gpu, &kernel, &x, want.shape, precision);
        assert_close_in(precision, &name, &got.data, &want.data);
    }
}

#[test]
fn adaptive_avg_pool2d_bins_should_follow_pytorch() {
    // 7 -> 3: [0,3), [2,5), [4,7); 5 -> 4: [0,2), [1,3), [2,4), [3,5); 3 -> 5: [0,1), [0,2), [1,2), [1,3), [2,3).
    let bins = |input, out| {
        (0..out)
            .map(|i| AdaptiveAvgPool2d::bin(i, input, out))
            .collect::<Vec<_>>()
    };
    assert_eq!(bins(7, 3), vec![(0, 3), (2, 5), (4, 7)]);
    assert_eq!(bins(5, 4), vec![(0, 2), (1, 3), (2, 4), (3, 5)]);
    assert_eq!(bins(3, 5), vec![(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]);
    assert_eq!(
        bins(10, 6),
        vec![(0, 2), (1, 4), (3, 5), (5, 7), (6, 9), (8, 10)]
    );
}

#[test]
fn max_unpool2d_round_trip_should_match_reference() {
    check_unpool_round_trip(Precision::F32);
}

fn check_unpool_round_trip(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    let unpool =
        |k: [usize; 2], s: [usize; 2], pad: [usize; 2], size: Option<[usize; 2]>| MaxUnpool2d {
            stride: s,
            padding: pad,
            output_size: size,
            ..MaxUnpool2d::new(k)
        };
    let cases = [
        // SegNet: 2x2 stride 2
        (
            Shape::new(1, 3, 16, 16),
            max_pool([2, 2], [2, 2], [0, 0], [1, 1], false),
            unpool([2, 2], [2, 2], [0, 0], None),
        ),
        // odd sizes give the output size back explicitly, in floor and ceil mode
        (
            Shape::new(2, 5, 13, 11),
            max_pool([2, 2], [2, 2], [0, 0], [1, 1], false),
            unpool([2, 2], [2, 2], [0, 0], Some([13, 11])),
        ),
        (
            Shape::new(2, 5, 13, 11),
            max_pool([2, 2], [2, 2], [0, 0], [1, 1], true),
            unpool([2, 2], [2, 2], [0, 0], Some([13, 11])),
        ),
        // overlapping windows: one input element can be the maximum of several windows
        (
            Shape::new(1, 6, 9, 9),
            max_pool([3, 3], [2, 2], [1, 1], [1, 1], false),
            unpool([3, 3], [2, 2], [1, 1], None),
        ),
        (
            Shape::new(1, 3, 1, 1),
            MaxPool2d::new([1, 1]),
            unpool([1, 1], [1, 1], [0, 0], None),
        ),
    ];
    for (i, (input, pool_p, unpool_p)) in cases.into_iter().enumerate() {
        let pool_p = MaxPool2d {
            return_indices: true,
            ..pool_p
        };
        let name = format!("case {i}: {input} {pool_p:?} then {unpool_p:?}");
        let x = rounded(precision, &random_tensor(&mut rng(300 + i as u64), input));
        let (pooled, idx) = reference::max_pool2d(&pool_p, &x).unwrap();
        let idx = idx.unwrap();
        let want = reference::max_unpool2d(&unpool_p, &pooled, &idx).unwrap();
        // The round trip keeps exactly the maxima, at their places in the input.
        if unpool_p.output_shape(pooled.shape).unwrap() == input {
            for (w, v) in want.data.iter().zip(&x.data) {
                assert!(*w == 0.0 || w == v, "{name}: reference round trip");
            }
        }

        let pool_k = pool::max_pool2d(&gpu, &name, &pool_p, input, precision).unwrap();
        let unpool_k = pool::max_unpool2d(&gpu, &name, &unpool_p, pooled.shape, precision).unwrap();
        let gx = upload_in(&gpu, "x", &x, precision);
        let gpooled = gpu
            .tensor_in("pooled", pooled.shape, precision, true)
            .unwrap();
        let gidx = gpu.tensor("indices", pooled.shape, true).unwrap();
        let out = gpu.tensor_in("out", want.shape, precision, true).unwrap();
        let bound = [
            pool_k
                .bind(&gpu, &[gpooled.binding(), gidx.binding()], &[gx.binding()])
                .unwrap(),
            unpool_k.zero.bind(&gpu, &[out.binding()], &[]).unwrap(),
            unpool_k
                .scatter
                .bind(&gpu, &[out.binding()], &[gpooled.binding(), gidx.binding()])
                .unwrap(),
        ];
        gpu.run(&bound.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(gpu.read_u32(&gidx).unwrap(), idx, "{name}: indices");
        let got = gpu.read_in(&out, precision).unwrap();
        assert_eq!(got.data, want.data, "{name} ({precision})");
    }
}

#[test]
fn max_unpool2d_should_match_reference_on_uploaded_indices() {
    check_unpool_uploaded(Precision::F32);
}

fn check_unpool_uploaded(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    // Distinct indices in a different order than pooling would give, so the scatter alone is tested.
    let values_shape = Shape::new(2, 3, 3, 2);
    let p = MaxUnpool2d {
        output_size: Some([7, 5]),
        ..MaxUnpool2d::new([2, 2])
    };
    let out_shape = p.output_shape(values_shape).unwrap();
    let mut rng = rng(400);
    let values = rounded(precision, &random_tensor(&mut rng, values_shape));
    let indices: Vec<u32> = (0..values_shape.numel())
        .map(|i| ((i * 11 + 3) % out_shape.plane()) as u32)
        .collect();
    let want = reference::max_unpool2d(&p, &values, &indices).unwrap();
    let k = pool::max_unpool2d(&gpu, "unpool", &p, values_shape, precision).unwrap();
    let gv = upload_in(&gpu, "values", &values, precision);
    let gi = upload_u32(&gpu, "indices", values_shape, &indices);
    let out = gpu.tensor_in("out", out_shape, precision, true).unwrap();
    let zero = k.zero.bind(&gpu, &[out.binding()], &[]).unwrap();
    let scatter = k
        .scatter
        .bind(&gpu, &[out.binding()], &[gv.binding(), gi.binding()])
        .unwrap();
    gpu.run(&[&zero, &scatter]).unwrap();
    let got = gpu.read_in(&out, precision).unwrap();
    assert_eq!(got.data, want.data, "unpool ({precision})");
}

#[test]
fn pool_should_reject_bad_parameters() {
    let x = Shape::new(1, 4, 8, 8);
    let expect_err = |op: &str, r: atrous::Result<Shape>, what: &str| {
        let err = r.expect_err(&format!("{op}: {what} should be rejected"));
        assert!(err.to_string().starts_with(op), "{err}");
    };
    let bad_max = [
        ("stride 0", max_pool([3, 3], [0, 1], [1, 1], [1, 1], false)),
        (
            "dilation 0",
            max_pool([3, 3], [1, 1], [0, 0], [1, 0], false),
        ),
        ("kernel 0", max_pool([0, 3], [1, 1], [0, 0], [1, 1], false)),
        (
            "padding over half",
            max_pool([3, 3], [1, 1], [2, 1], [1, 1], false),
        ),
        (
            "kernel over input",
            max_pool([9, 3], [1, 1], [0, 0], [1, 1], false),
        ),
        (
            "kernel over padded input",
            max_pool([11, 3], [1, 1], [1, 1], [1, 1], false),
        ),
        (
            "dilated window over input",
            max_pool([3, 3], [1, 1], [1, 1], [5, 1], false),
        ),
    ];
    for (what, p) in bad_max {
        expect_err("max_pool2d", p.output_shape(x), what);
    }
    let bad_avg = [
        ("stride 0", avg_pool([3, 3], [1, 0], [1, 1], false, true)),
        (
            "padding over half",
            avg_pool([2, 2], [1, 1], [0, 2], false, true),
        ),
        (
            "kernel over padded input",
            avg_pool([3, 11], [1, 1], [1, 1], false, true),
        ),
    ];
    for (what, p) in bad_avg {
        expect_err("avg_pool2d", p.output_shape(x), what);
    }
    for output in [[0, 3], [3, 0]] {
        expect_err(
            "adaptive_avg_pool2d",
            AdaptiveAvgPool2d { output }.output_shape(x),
            "output 0",
        );
    }
    let bad_unpool = [
        (
            "stride 0",
            MaxUnpool2d {
                stride: [0, 2],
                ..MaxUnpool2d::new([2, 2])
            },
        ),
        (
            "output size out of range",
            MaxUnpool2d {
                output_size: Some([18, 16]),
                ..MaxUnpool2d::new([2, 2])
            },
        ),
    ];
    for (what, p) in bad_unpool {
        expect_err("max_unpool2d", p.output_shape(x), what);
    }

    // The references validate the same way, and the unpool reference rejects indices outside the plane.
    let t = Tensor::zeros(x);
    let err =
        reference::max_pool2d(&max_pool([3, 3], [0, 1], [1, 1], [1, 1], false), &t).unwrap_err();
    assert!(err.to_string().starts_with("max_pool2d"), "{err}");
    let p = MaxUnpool2d::new([2, 2]);
    let mut indices = vec![0u32; x.numel()];
    indices[5] = 16 * 16;
    let err = reference::max_unpool2d(&p, &t, &indices).unwrap_err();
    assert!(err.to_string().starts_with("max_unpool2d"), "{err}");
    let err = reference::max_unpool2d(&p, &t, &indices[1..]).unwrap_err();
    assert!(err.to_string().starts_with("max_unpool2d"), "{err}");

    // The kernel constructors return the same errors instead of panicking.
    if let Some(gpu) = common::gpu() {
        let err = pool::max_pool2d(
            &gpu,
            "bad",
            &max_pool([3, 3], [0, 1], [1, 1], [1, 1], false),
            x,
            Precision::F32,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("max_pool2d"), "{err}");
        let err = pool::adaptive_avg_pool2d(
            &gpu,
            "bad",
            &AdaptiveAvgPool2d { output: [0, 1] },
            x,
            Precision::F32,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("adaptive_avg_pool2d"), "{err}");
    }
}
