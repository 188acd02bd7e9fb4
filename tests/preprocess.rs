//! preprocess on the GPU against the CPU reference: RGB and RGBA bytes resized and normalised.

mod common;

use atrous::gpu::Precision;
use atrous::kernels::preprocess;
use atrous::ops::{ChannelOrder, ImageLayout, Preprocess};
use atrous::{reference, Shape};
use common::*;
use rand::Rng;

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

fn params(size: [usize; 2], channel_order: ChannelOrder, unit_range: bool) -> Preprocess {
    if unit_range {
        Preprocess {
            size,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            value_scale: 1.0 / 255.0,
            channel_order,
        }
    } else {
        // Caffe-style: 0..255 values, per-channel means, a std that differs per channel.
        Preprocess {
            size,
            mean: [123.675, 116.28, 103.53],
            std: [58.395, 57.12, 57.375],
            value_scale: 1.0,
            channel_order,
        }
    }
}

fn image(width: usize, height: usize, channels: usize) -> ImageLayout {
    ImageLayout {
        width,
        height,
        channels,
    }
}

fn check(gpu: &atrous::Gpu, layout: ImageLayout, p: &Preprocess, seed: u64, precision: Precision) {
    let name = format!(
        "{}x{}x{} -> {:?} {:?} scale {}",
        layout.width, layout.height, layout.channels, p.size, p.channel_order, p.value_scale
    );
    let mut rng = rng(seed);
    let bytes: Vec<u8> = (0..layout.bytes()).map(|_| rng.random()).collect();
    let want = reference::preprocess(p, layout, &bytes).unwrap();
    assert_eq!(want.shape, Shape::new(1, 3, p.size[0], p.size[1]));
    let kernel = preprocess::preprocess(gpu, &name, p, layout, precision).unwrap();
    let gimage = preprocess::upload_image(gpu, "image", layout, &bytes).unwrap();
    let out = gpu.tensor_in("out", want.shape, precision, true).unwrap();
    let bound = kernel
        .bind(gpu, &[out.binding()], &[gimage.binding()])
        .unwrap();
    gpu.run(&[&bound]).unwrap();
    let got = gpu.read_in(&out, precision).unwrap();
    assert_close_in(precision, &name, &got.data, &want.data);
}

#[test]
fn preprocess_should_match_reference() {
    check_cases(Precision::F32);
}

/// The normalisation runs in f32; only its result is rounded to f16.
#[test]
fn preprocess_in_f16_should_match_reference() {
    check_cases(Precision::F16);
}

fn check_cases(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    let cases = [
        // (width, height, channels) -> size (h, w)
        (image(37, 23, 3), [16, 20]),
        (image(37, 23, 4), [16, 20]),
        (image(13, 9, 3), [32, 40]),
        (image(11, 7, 4), [7, 11]),
        (image(64, 48, 3), [21, 17]),
        (image(1, 1, 3), [5, 3]),
        (image(5, 3, 4), [1, 1]),
        (image(30, 20, 3), [20, 45]),
    ];
    let mut seed = 0;
    for (layout, size) in cases {
        for order in [ChannelOrder::Rgb, ChannelOrder::Bgr] {
            for unit_range in [true, false] {
                seed += 1;
                check(
                    &gpu,
                    layout,
                    &params(size, order, unit_range),
                    seed,
                    precision,
                );
            }
        }
    }
}

#[test]
fn preprocess_reference_should_order_and_normalise_channels() {
    // One 1x1 pixel, same size: no interpolation, only channel order and normalisation.
    let layout = image(1, 1, 4);
    let bytes = [10u8, 20, 30, 255];
    let p = Preprocess {
        size: [1, 1],
        mean: [1.0, 2.0, 3.0],
        std: [2.0, 4.0, 8.0],
        value_scale: 1.0,
        channel_order: ChannelOrder::Rgb,
    };
    let rgb = reference::preprocess(&p, layout, &bytes).unwrap();
    assert_eq!(rgb.data, [4.5, 4.5, 3.375]);
    let bgr = Preprocess {
        channel_order: ChannelOrder::Bgr,
        ..p
    };
    let bgr = reference::preprocess(&bgr, layout, &bytes).unwrap();
    assert_eq!(bgr.data, [14.5, 4.5, 0.875]);
}

#[test]
fn pack_bytes_should_be_little_endian_and_padded() {
    assert_eq!(
        preprocess::pack_bytes(&[1, 2, 3, 4, 5, 6]),
        [0x0403_0201, 0x0000_0605]
    );
    assert_eq!(preprocess::image_words(image(3, 1, 3)), 3);
}

#[test]
fn preprocess_should_reject_bad_input() {
    let p = params([8, 8], ChannelOrder::Rgb, true);
    let good = image(5, 4, 3);
    let bytes = vec![7u8; good.bytes()];
    let expect = |err: atrous::Error| {
        assert!(err.to_string().starts_with("preprocess"), "{err}");
    };
    // wrong byte count
    expect(reference::preprocess(&p, good, &bytes[1..]).unwrap_err());
    expect(reference::preprocess(&p, image(5, 4, 4), &bytes).unwrap_err());
    // two channels
    let gray_alpha = image(5, 4, 2);
    expect(p.output_shape(gray_alpha).unwrap_err());
    expect(reference::preprocess(&p, gray_alpha, &vec![7u8; gray_alpha.bytes()]).unwrap_err());
    // std 0 or not finite
    for std in [[0.229, 0.0, 0.225], [f32::NAN, 1.0, 1.0]] {
        let bad = Preprocess { std, ..p.clone() };
        expect(bad.output_shape(good).unwrap_err());
        expect(reference::preprocess(&bad, good, &bytes).unwrap_err());
    }
    // empty sizes
    expect(p.output_shape(image(0, 4, 3)).unwrap_err());
    let empty = Preprocess {
        size: [0, 8],
        ..p.clone()
    };
    expect(empty.output_shape(good).unwrap_err());
    // the GPU path checks the same things before allocating
    if let Some(gpu) = common::gpu() {
        expect(preprocess::preprocess(&gpu, "bad", &empty, good, Precision::F32).unwrap_err());
        expect(preprocess::upload_image(&gpu, "bad", good, &bytes[1..]).unwrap_err());
    }
}
