//! conv2d on the GPU against the CPU reference over a grid of shapes and epilogues.

mod common;

use atrous::gpu::Precision;
use atrous::kernels::conv2d::{self, Path};
use atrous::ops::{Activation, Conv2d, Padding2d};
use atrous::Shape;
use common::conv::*;

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |n, c, h, w, conv: Conv2d, bias, batch_norm| {
        cases.push(Case {
            input: Shape::new(n, c, h, w),
            conv,
            bias,
            batch_norm,
        })
    };
    add(1, 3, 17, 23, conv(3, 5, 3, 1, 1, 1, 1), true, false);
    add(2, 6, 13, 11, conv(6, 7, 3, 2, 1, 1, 1), false, true);
    // stride > 1 together with dilation > 1, padding of more than half the kernel
    add(1, 5, 19, 21, conv(5, 6, 3, 2, 3, 2, 1), true, true);
    add(1, 4, 15, 15, conv(4, 4, 3, 1, 6, 6, 1), false, true);
    // groups and depthwise
    add(1, 6, 12, 9, conv(6, 9, 3, 1, 1, 1, 3), true, false);
    add(2, 7, 11, 13, conv(7, 7, 3, 2, 1, 1, 7), false, true);
    add(1, 5, 10, 10, conv(5, 10, 5, 1, 4, 2, 5), true, true);
    // 1x1, 1x1 spatial maps, channels not divisible by 4
    add(1, 13, 9, 7, conv(13, 3, 1, 1, 0, 1, 1), true, false);
    add(2, 9, 1, 1, conv(9, 5, 1, 1, 0, 1, 1), true, true);
    add(1, 3, 1, 1, conv(3, 2, 3, 1, 1, 1, 1), true, false);
    // stem-like 7x7 stride 2 padding 3, and a kernel as large as the padded input
    add(1, 3, 21, 19, conv(3, 8, 7, 2, 3, 1, 1), false, true);
    add(1, 2, 3, 3, conv(2, 3, 5, 1, 1, 1, 1), true, false);
    // non-square kernel
    add(
        1,
        3,
        8,
        10,
        Conv2d {
            padding: Padding2d {
                top: 0,
                left: 2,
                bottom: 1,
                right: 0,
            },
            ..Conv2d::new(3, 4, [2, 3])
        },
        true,
        false,
    );
    cases
}

fn check_cases(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    for (i, case) in cases().iter().enumerate() {
        let p = &case.conv;
        let name = format!(
            "case {i}: {} {:?} k{:?} s{:?} d{:?} g{}",
            case.input, p.padding, p.kernel, p.stride, p.dilation, p.groups
        );
        check(&gpu, &name, case, i as u64, precision);
    }
}

#[test]
fn conv2d_should_match_reference() {
    check_cases(Precision::F32);
}

#[test]
fn conv2d_in_f16_should_match_reference() {
    check_cases(Precision::F16);
}

fn check_epilogues(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    for (i, activation) in Activation::ALL.into_iter().enumerate() {
        for residual in [false, true] {
            let conv = Conv2d {
                activation,
                residual,
                ..conv(5, 6, 3, 1, 2, 2, 1)
            };
            let case = Case {
                input: Shape::new(2, 5, 9, 11),
                conv,
                bias: true,
                batch_norm: true,
            };
            check(
                &gpu,
                &format!("{activation:?} residual={residual}"),
                &case,
                100 + i as u64,
                precision,
            );
        }
    }
}

#[test]
fn conv2d_epilogue_should_match_reference() {
    check_epilogues(Precision::F32);
}

#[test]
fn conv2d_epilogue_in_f16_should_match_reference() {
    check_epilogues(Precision::F16);
}

#[test]
fn conv2d_should_write_at_channel_offset() {
    let gpu = gpu_or_skip!();
    let conv = Conv2d {
        out_channel_offset: 3,
        out_channels_total: Some(11),
        activation: Activation::Relu,
        ..conv(4, 5, 3, 1, 1, 1, 1)
    };
    let case = Case {
        input: Shape::new(2, 4, 7, 9),
        conv,
        bias: true,
        batch_norm: false,
    };
    check(&gpu, "offset 3 of 11", &case, 7, Precision::F32);
}

/// Every tile shape and the naive kernel on the edges of their tiles: widths and pixel counts not divisible by the
/// tile, output channels not divisible by 4 or 8, channel-offset destinations, residuals, batches, padding taps.
/// In f16 the tiled kernels run with f32 and with f16 math.
fn check_paths(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    let mut tiled = vec![];
    for f16_math in f16_math_choices(precision) {
        tiled.extend(conv2d::TILES.iter().map(|&(channels, pixels)| Path::Tiled {
            channels,
            pixels,
            f16_math,
        }));
        tiled.extend(
            conv2d::ROW_TILES
                .iter()
                .map(|&(channels, pixels)| Path::TiledRows {
                    channels,
                    pixels,
                    f16_math,
                }),
        );
    }
    let paths: Vec<Path> = std::iter::once(Path::Naive).chain(tiled).collect();
    let cases = [
        // 65 x 65 output: 4225 pixels, one past a multiple of 64 * 4 and 64 * 8
        (Shape::new(1, 3, 65, 65), conv(3, 5, 3, 1, 1, 1, 1)),
        // batch 3, 13 output channels, dilation and stride
        (Shape::new(3, 6, 17, 19), conv(6, 13, 3, 2, 4, 2, 1)),
        // ASPP-like: dilation larger than the map, most taps in padding
        (Shape::new(1, 8, 9, 11), conv(8, 12, 3, 1, 12, 12, 1)),
        // 1x1, one output channel
        (Shape::new(2, 9, 7, 5), conv(9, 1, 1, 1, 0, 1, 1)),
    ];
    for (i, (input, base)) in cases.into_iter().enumerate() {
        check_variants(&gpu, i, input, &base, &paths, precision);
    }
    // depthwise: widths not divisible by 4, stride and dilation, batch, a 7-wide window with stride 2 and
    // dilation 2, a 3 x 5 window with uneven padding; every specialised kernel (conv2d::depthwise: 3 and 5 with
    // strides 1 and 2, and with dilation 2), on heights and widths not divisible by its 4 x 4 tile, padded or not
    let depthwise = [
        (Shape::new(2, 7, 11, 13), conv(7, 7, 3, 2, 1, 1, 7)),
        (Shape::new(1, 5, 10, 9), conv(5, 5, 5, 1, 4, 2, 5)),
        (Shape::new(2, 6, 13, 11), conv(6, 6, 3, 1, 1, 1, 6)),
        (Shape::new(1, 4, 6, 7), conv(4, 4, 3, 1, 0, 1, 4)),
        (Shape::new(1, 5, 17, 9), conv(5, 5, 5, 2, 2, 1, 5)),
        (Shape::new(1, 4, 9, 14), conv(4, 4, 5, 1, 2, 1, 4)),
        (Shape::new(1, 3, 10, 7), conv(3, 3, 3, 1, 2, 2, 3)),
        (Shape::new(1, 3, 6, 5), conv(3, 3, 3, 1, 3, 3, 3)),
        (Shape::new(1, 4, 9, 23), conv(4, 4, 7, 2, 6, 2, 4)),
        (
            Shape::new(1, 6, 7, 10),
            Conv2d {
                padding: Padding2d {
                    top: 1,
                    left: 2,
                    bottom: 0,
                    right: 1,
                },
                groups: 6,
                ..Conv2d::new(6, 6, [3, 5])
            },
        ),
    ];
    for (i, (input, base)) in depthwise.into_iter().enumerate() {
        check_variants(&gpu, 10 + i, input, &base, &[Path::Depthwise], precision);
    }
}

#[test]
fn every_conv2d_path_should_match_reference() {
    check_paths(Precision::F32);
}

/// Every path in f16, channel-offset destinations and residuals included (`check_variants`).
#[test]
fn every_conv2d_path_in_f16_should_match_reference() {
    check_paths(Precision::F16);
}

fn check_variants(
    gpu: &atrous::Gpu,
    i: usize,
    input: Shape,
    base: &Conv2d,
    paths: &[Path],
    precision: Precision,
) {
    {
        for (v, variant) in ["plain", "offset+residual", "residual in place"]
            .into_iter()
            .enumerate()
        {
            let conv = match v {
                0 => base.clone(),
                2 => Conv2d {
                    residual: true,
                    residual_in_place: true,
                    activation: Activation::Relu,
                    ..base.clone()
                },
                _ => Conv2d {
                    residual: true,
                    activation: Activation::Relu6,
                    out_channel_offset: 2,
                    out_channels_total: Some(base.out_channels + 5),
                    ..base.clone()
                },
            };
            let case = Case {
                input,
                conv,
                bias: true,
                batch_norm: v != 0,
            };
            for &path in paths {
                let name = format!("case {i} {variant} {path:?}: {input}");
                check_on(gpu, &name, &case, 200 + i as u64, Some(path), precision);
            }
        }
    }
}

#[test]
fn conv2d_should_reject_bad_parameters() {
    let x = Shape::new(1, 4, 8, 8);
    let bad = [
        Conv2d {
            stride: [0, 1],
            ..Conv2d::new(4, 4, [3, 3])
        },
        Conv2d {
            dilation: [1, 0],
            ..Conv2d::new(4, 4, [3, 3])
        },
        Conv2d {
            groups: 3,
            ..Conv2d::new(4, 4, [3, 3])
        },
        Conv2d::new(4, 4, [9, 3]),
        Conv2d::new(5, 4, [3, 3]),
        Conv2d {
            out_channel_offset: 2,
            out_channels_total: Some(5),
            ..Conv2d::new(4, 4, [1, 1])
        },
        // in place without a residual, or into a wider destination
        Conv2d {
            residual_in_place: true,
            ..Conv2d::new(4, 4, [1, 1])
        },
        Conv2d {
            residual: true,
            residual_in_place: true,
            out_channels_total: Some(6),
            ..Conv2d::new(4, 4, [1, 1])
        },
    ];
    for p in bad {
        let err = p
            .output_shape(x)
            .expect_err(&format!("{p:?} should be rejected"));
        assert!(err.to_string().starts_with("conv2d"), "{err}");
    }
}

/// Split-K on every tile against the reference: input channels that are not a multiple of the 16-channel slice
/// granularity (a short last slice), more slices asked than there are channels (fewer come out), ASPP-like dilation
/// with most taps in padding, stride, batches, 1x1; plain and with residual, activation and a channel offset.
fn check_split_k(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    let split = |(channels, pixels), splits| Path::SplitK {
        channels,
        pixels,
        splits,
        f16_math: false,
    };
    let cases = [
        // 40 channels in 3 slices of 16, 16 and 8; 65 x 65 pixels, one past a multiple of 64 * 8
        (Shape::new(1, 40, 65, 65), conv(40, 13, 3, 1, 1, 1, 1), 3),
        // ASPP-like: dilation 12 on a 9 x 11 map, batch 2
        (Shape::new(2, 37, 9, 11), conv(37, 12, 3, 1, 12, 12, 1), 2),
        // stride and dilation, 8 slices asked of 20 channels: 2 slices of 16 and 4
        (Shape::new(1, 20, 17, 19), conv(20, 9, 3, 2, 4, 2, 1), 8),
        // 1x1, one output channel, one slice
        (Shape::new(2, 9, 7, 5), conv(9, 1, 1, 1, 0, 1, 1), 2),
    ];
    for (i, (input, base, splits)) in cases.into_iter().enumerate() {
        let paths: Vec<Path> = f16_math_choices(precision)
            .into_iter()
            .flat_map(|f16| conv2d::TILES.map(|t| split(t, splits).with_f16_math(f16)))
            .collect();
        check_variants(&gpu, 20 + i, input, &base, &paths, precision);
    }
    for (i, activation) in Activation::ALL.into_iter().enumerate() {
        let conv = Conv2d {
            activation,
            residual: true,
            ..conv(33, 6, 3, 1, 2, 2, 1)
        };
        let case = Case {
            input: Shape::new(1, 33, 9, 11),
            conv,
            bias: true,
            batch_norm: true,
        };
        for f16_math in f16_math_choices(precision) {
            let name = format!("split-K {activation:?} residual f16_math={f16_math}");
            let path = Some(split((8, 4), 3).with_f16_math(f16_math));
            check_on(&gpu, &name, &case, 300 + i as u64, path, precision);
        }
    }
}

/// The math an f32 kernel can do (f32 only), or an f16 one (both).
fn f16_math_choices(precision: Precision) -> Vec<bool> {
    match precision {
        Precision::F32 => vec![false],
        Precision::F16 => vec![false, true],
    }
}

/// f16 math on f32 storage is refused by name, as is an f16-math plan in f32; auto leaves f32 plans alone.
#[test]
fn f16_math_should_need_f16_storage() {
    let gpu = gpu_or_skip!();
    let p = conv(8, 8, 3, 1, 1, 1, 1);
    let x = Shape::new(1, 8, 9, 9);
    let path = conv2d::choose(&p, x, gpu.parallelism()).with_f16_math(true);
    assert!(path.f16_math());
    let err = conv2d::conv2d_on(&gpu, "conv7", &p, x, path, Precision::F32).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("conv7") && message.contains("f16"),
        "{message}"
    );
    // The naive and depthwise kernels have no f16 math: asking for it changes nothing.
    assert!(!Path::Naive.with_f16_math(true).f16_math());
    assert!(!Path::Depthwise.with_f16_math(true).f16_math());
}

#[test]
fn split_k_conv2d_should_match_reference() {
    check_split_k(Precision::F32);
}

#[test]
fn split_k_conv2d_in_f16_should_match_reference() {
    check_split_k(Precision::F16);
}

/// Split-K is chosen only where the tiled dispatch underfills a large device and the reduction is long; never on
/// a CPU adapter's few cores of lanes.
#[test]
fn conv2d_choose_should_split_only_underfilled_long_reductions() {
    let aspp = conv(2048, 256, 3, 1, 12, 12, 1);
    let gpu_like = 1 << 16;
    let cpu_like = 16;
    let at = |s| Shape::new(1, 2048, s, s);
    assert!(matches!(
        conv2d::choose(&aspp, at(33), gpu_like),
        Path::SplitK { splits, .. } if (2..=conv2d::split_k::MAX_SPLITS).contains(&splits)
    ));
    for size in [9, 33, 65] {
        assert!(matches!(
            conv2d::choose(&aspp, at(size), cpu_like),
            Path::Tiled { .. } | Path::TiledRows { .. }
        ));
    }
    // Dilated convs on big enough maps take the row-consecutive tile.
    assert!(matches!(
        conv2d::choose(&aspp, at(65), cpu_like),
        Path::TiledRows { .. }
    ));
    // Short reductions stay tiled however small the output: 16 input channels x 3 x 3 taps.
    let short = conv(16, 256, 3, 1, 1, 1, 1);
    assert!(matches!(
        conv2d::choose_with(
            &short,
            Shape::new(1, 16, 9, 9),
            gpu_like,
            conv2d::WinogradPolicy::Never
        ),
        Path::Tiled { .. }
    ));
    // A large output fills the device by itself: UNet's 64 -> 64 at 256 x 256 (Winograd where it may run).
    let unet = conv(64, 64, 3, 1, 1, 1, 1);
    let x = Shape::new(1, 64, 256, 256);
    assert!(matches!(
        conv2d::choose_with(&unet, x, gpu_like, conv2d::WinogradPolicy::Never),
        Path::Tiled { .. }
    ));
    assert!(matches!(
        conv2d::choose(&unet, x, gpu_like),
        Path::Winograd { .. }
    ));
    // Grouped convs never split.
    let dw = conv(512, 512, 3, 1, 1, 1, 512);
    assert_eq!(
        conv2d::choose(&dw, Shape::new(1, 512, 9, 9), gpu_like),
        Path::Depthwise
    );
}
