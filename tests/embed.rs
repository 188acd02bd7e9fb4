//! Embedding: frames from textures, outputs into the application's textures and buffers, streams with asynchronous
//! readbacks, recording into the application's encoder, the application's own device, and no allocation per frame.
//! The texture path is checked against the host-image path on the same pixels.

mod common;

use atrous::gpu::Precision;
use atrous::model::InputSize;
use atrous::plan::PlanOptions;
use atrous::segment::{Frame, Mask, Readback, Region, Request, Resolution, Target};
use atrous::{Error, Segmentation, Segmenter};
use common::*;
use image::RgbaImage;
use std::sync::Arc;
use wgpu::{TextureFormat as F, TextureUsages as U};

const FRAME_FORMATS: [F; 5] = [
    F::Rgba8Unorm,
    F::Rgba8UnormSrgb,
    F::Bgra8Unorm,
    F::Bgra8UnormSrgb,
    F::Rgba16Float,
];

fn read_all() -> Request<'static> {
    Request {
        readback: Some(Readback::ClassesAndProbabilities),
        ..Default::default()
    }
}

fn probabilities(s: &Segmentation) -> &[f32] {
    &s.probabilities.as_ref().unwrap().data
}

/// Every frame format gives the host image's class map on the same pixels, and probabilities within 1e-5 (8-bit
/// formats, whose texels are the image's bytes) or 2e-3 (Rgba16Float, whose texels round `byte / 255` to f16).
#[test]
fn texture_frames_should_match_host_images() {
    let gpu = gpu_or_skip!();
    for classes in [4, 1] {
        let segmenter = segmenter(gpu.clone(), classes);
        let image = photo(21, 45, 37);
        let want = segmenter.segment(&image, true).unwrap();
        let mut stream = segmenter.stream();
        for format in FRAME_FORMATS {
            let texture = frame_texture(&gpu, &image, format);
            let frame = Frame::Texture {
                texture: &texture,
                region: None,
            };
            let got = stream.submit(frame, &read_all()).unwrap();
            let got = drive(got.readback.unwrap(), &gpu).unwrap();
            assert_eq!((got.width, got.height), (45, 37));
            let what = format!("{classes} classes from {format:?}");
            match format {
                F::Rgba16Float => {
                    assert_close_tol(&what, probabilities(&got), probabilities(&want), 2e-3);
                    let same = got
                        .classes
                        .iter()
                        .zip(&want.classes)
                        .filter(|(a, b)| a == b);
                    assert!(
                        same.count() as f64 >= 0.995 * want.classes.len() as f64,
                        "{what}"
                    );
                }
                _ => {
                    assert_eq!(got.classes, want.classes, "{what}");
                    assert_close_tol(&what, probabilities(&got), probabilities(&want), 1e-5);
                }
            }
        }
    }
}

/// A region of a larger texture is the cropped image; moving the region keeps the plan and state (no allocation)
/// and follows the crop.
#[test]
fn a_region_of_a_texture_should_match_the_cropped_image() {
    // A device of its own: its creation counts must not see the other tests' work running alongside.
    let _ = gpu_or_skip!();
    let gpu = Arc::new(atrous::Gpu::new().expect("a second device on the test adapter"));
    let segmenter = segmenter(gpu.clone(), 4);
    let big = photo(22, 64, 48);
    let texture = frame_texture(&gpu, &big, F::Rgba8UnormSrgb);
    let mut stream = segmenter.stream();
    let mut creations = None;
    for (x, y) in [(5, 3), (0, 0), (19, 11), (19, 11)] {
        let region = Region {
            x,
            y,
            width: 45,
            height: 37,
        };
        let crop = image::imageops::crop_imm(&big, x, y, 45, 37).to_image();
        let want = segmenter.segment(&crop, true).unwrap();
        let frame = Frame::Texture {
            texture: &texture,
            region: Some(region),
        };
        let got = stream.submit(frame, &read_all()).unwrap().readback.unwrap();
        let got = got.wait().unwrap();
        assert_eq!(got.classes, want.classes, "region at ({x}, {y})");
        assert_close_tol("region", probabilities(&got), probabilities(&want), 1e-5);
        let now = gpu.creations();
        assert!(
            creations.is_none_or(|c| c == now),
            "moving the region allocated"
        );
        creations = Some(now);
    }
    let outside = Region {
        x: 20,
        y: 12,
        width: 45,
        height: 37,
    };
    let frame = Frame::Texture {
        texture: &texture,
        region: Some(outside),
    };
    let err = stream.submit(frame, &read_all()).unwrap_err();
    assert!(matches!(err, Error::Frame(_)), "{err}");
    assert!(err.to_string().contains("64x48"), "{err}");
}

/// Class maps, colours and soft masks land in textures of every supported format and in buffers, at the frame's
/// size and at the model's, equal to what the readback says.
#[test]
fn outputs_should_land_in_textures_and_buffers() {
    let gpu = gpu_or_skip!();
    for classes in [4, 1] {
        let segmenter = segmenter(gpu.clone(), classes);
        let palette = segmenter.palette().to_vec();
        let image = photo(23, 45, 37);
        let frame_texture = frame_texture(&gpu, &image, F::Rgba8Unorm);
        let mut stream = segmenter.stream();
        for resolution in [Resolution::Frame, Resolution::Model] {
            let (w, h) = match resolution {
                Resolution::Frame => (45, 37),
                Resolution::Model => (32, 24),
            };
            let tex = |format| target_texture(&gpu, format, w, h, U::COPY_DST | U::COPY_SRC);
            let cases = [
                (F::R8Uint, F::Rgba8Unorm, F::R32Float),
                (F::R32Uint, F::Bgra8UnormSrgb, F::R16Float),
            ];
            for (class_format, colour_format, mask_format) in cases {
                let (classes_tex, colours_tex, mask_tex) =
                    (tex(class_format), tex(colour_format), tex(mask_format));
                let class_buffer = output_buffer(&gpu, 4 * (w * h) as u64 + 8);
                let mask_buffer = output_buffer(&gpu, 4 * (w * h) as u64);
                let frame = Frame::Texture {
                    texture: &frame_texture,
                    region: None,
                };
                let wanted = classes.max(2) - 1;
                let request = Request {
                    resolution,
                    classes: Some(Target::Texture(&classes_tex)),
                    colours: Some(Target::Texture(&colours_tex)),
                    mask: Some(Mask {
                        class: wanted,
                        target: Target::Texture(&mask_tex),
                    }),
                    readback: Some(Readback::ClassesAndProbabilities),
                };
                let read = stream.submit(frame, &request).unwrap().readback.unwrap();
                let read = drive(read, &gpu).unwrap();
                assert_eq!((read.width, read.height), (w as usize, h as usize));
                let plane = (w * h) as usize;
                let p: Vec<f32> = match classes {
                    1 => probabilities(&read).to_vec(),
                    _ => probabilities(&read)[wanted * plane..(wanted + 1) * plane].to_vec(),
                };
                let what = format!("{classes} classes at {resolution:?}, {class_format:?}");
                let got = read_texture(&gpu, &classes_tex);
                let want: Vec<u8> = match class_format {
                    F::R8Uint => read.classes.iter().map(|&c| c as u8).collect(),
                    _ => bytemuck::cast_slice(&read.classes).to_vec(),
                };
                assert_eq!(got, want, "{what}");
                let got = read_texture(&gpu, &colours_tex);
                let want: Vec<u8> = read
                    .classes
                    .iter()
                    .flat_map(|&c| {
                        let [r, g, b] = palette[c as usize];
                        match colour_format {
                            F::Rgba8Unorm => [r, g, b, 255],
                            _ => [b, g, r, 255],
                        }
                    })
                    .collect();
                assert_eq!(got, want, "{what}: colours");
                let got = read_texture(&gpu, &mask_tex);
                match mask_format {
                    F::R32Float => assert_eq!(got, bytemuck::cast_slice::<f32, u8>(&p), "{what}"),
                    _ => {
                        let got: Vec<f32> = got
                            .chunks(2)
                            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                            .collect();
                        assert_close_tol(&format!("{what}: f16 mask"), &got, &p, 1e-3);
                    }
                }

                // Buffers: the class map at an offset, the mask as f32.
                let request = Request {
                    resolution,
                    classes: Some(Target::Buffer {
                        buffer: &class_buffer,
                        offset: 8,
                    }),
                    mask: Some(Mask {
                        class: wanted,
                        target: Target::Buffer {
                            buffer: &mask_buffer,
                            offset: 0,
                        },
                    }),
                    ..Default::default()
                };
                let submitted = stream.submit(frame, &request).unwrap();
                assert!(submitted.readback.is_none());
                let got = read_buffer(&gpu, &class_buffer);
                assert_eq!(
                    &got[8..],
                    bytemuck::cast_slice::<u32, u8>(&read.classes),
                    "{what}"
                );
                let got = read_buffer(&gpu, &mask_buffer);
                assert_eq!(
                    got,
                    bytemuck::cast_slice::<f32, u8>(&p),
                    "{what}: mask buffer"
                );
            }
        }
    }
}

/// At the model's resolution the class map is the argmax of the model's output itself, not resized.
#[test]
fn the_model_resolution_should_skip_the_resize() {
    let gpu = gpu_or_skip!();
    let segmenter = segmenter(gpu.clone(), 4);
    let image = photo(24, 45, 37);
    let texture = frame_texture(&gpu, &image, F::Rgba8Unorm);
    let request = Request {
        resolution: Resolution::Model,
        readback: Some(Readback::ClassesAndProbabilities),
        ..Default::default()
    };
    let frame = Frame::Texture {
        texture: &texture,
        region: None,
    };
    let mut stream = segmenter.stream();
    let got = stream
        .submit(frame, &request)
        .unwrap()
        .readback
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!((got.width, got.height), (32, 24));
    let full = segmenter.segment(&image, true).unwrap();
    // The same probabilities, resized bilinearly to the frame, are what the frame resolution gives.
    let back = atrous::ops::Resize {
        mode: atrous::ops::ResizeMode::Bilinear {
            align_corners: false,
        },
        target: atrous::ops::ResizeTarget::Size([37, 45]),
    };
    let model_probs = got.probabilities.as_ref().unwrap();
    let resized = atrous::reference::resize(&back, model_probs).unwrap();
    assert_eq!(resized.shape, full.probabilities.as_ref().unwrap().shape);
    // Softmax then resize is not resize then softmax, but both are probabilities near each other.
    let sum: f32 = model_probs.data[..32 * 24 * 4].iter().sum();
    assert!((sum - (32.0 * 24.0)).abs() < 1e-2, "{sum}");
    let argmax = atrous::reference::argmax(model_probs).unwrap();
    assert_eq!(got.classes, argmax);
}

/// A readback that is never awaited neither leaks nor hangs: the stream takes its buffers back on the next frame,
/// the old future then says it was superseded, and dropping everything with a readback in flight returns.
#[test]
fn an_unawaited_readback_should_not_leak_or_hang() {
    let gpu = gpu_or_skip!();
    let segmenter = segmenter(gpu.clone(), 4);
    let image = photo(26, 45, 37);
    let mut stream = segmenter.stream();
    let want = segmenter.segment(&image, false).unwrap();
    let request = Request {
        readback: Some(Readback::Classes),
        ..Default::default()
    };
    // Dropped before completion.
    drop(stream.submit(Frame::Image(&image), &request).unwrap());
    gpu.wait().unwrap();
    // Kept but never awaited; the next frame takes the buffers back.
    let mut stale = stream
        .submit(Frame::Image(&image), &request)
        .unwrap()
        .readback
        .unwrap();
    gpu.wait().unwrap();
    let fresh = stream
        .submit(Frame::Image(&image), &request)
        .unwrap()
        .readback
        .unwrap();
    assert_eq!(fresh.wait().unwrap().classes, want.classes);
    match stale.try_take() {
        Some(Err(Error::Busy(_))) => {}
        other => panic!("a superseded readback should say so, got {other:?}"),
    }
    // In flight when everything is dropped.
    let pending = stream.submit(Frame::Image(&image), &request).unwrap();
    drop(stream);
    drop(segmenter);
    drop(pending);
    gpu.wait().unwrap();
}

/// Two frames in flight on one stream: the second either runs (the first was done) or is refused as busy, never
/// corrupting the first's readback.
#[test]
fn a_busy_stream_should_refuse_or_run_never_corrupt() {
    let gpu = gpu_or_skip!();
    let segmenter = segmenter(gpu.clone(), 4);
    let (a, b) = (photo(27, 45, 37), photo(28, 45, 37));
    let (want_a, want_b) = (
        segmenter.segment(&a, false).unwrap(),
        segmenter.segment(&b, false).unwrap(),
    );
    let mut stream = segmenter.stream();
    let request = Request {
        readback: Some(Readback::Classes),
        ..Default::default()
    };
    let first = stream
        .submit(Frame::Image(&a), &request)
        .unwrap()
        .readback
        .unwrap();
    match stream.submit(Frame::Image(&b), &request) {
        Ok(second) => {
            // The first was reclaimed: it reports that, and the second is right.
            let mut first = first;
            assert!(matches!(first.try_take(), Some(Err(Error::Busy(_)))));
            assert_eq!(
                second.readback.unwrap().wait().unwrap().classes,
                want_b.classes
            );
        }
        Err(Error::Busy(_)) => {
            assert_eq!(first.wait().unwrap().classes, want_a.classes);
        }
        Err(e) => panic!("{e}"),
    }
}

/// Recording into the application's encoder: the mask lands in the application's texture within the application's
/// submission, where its own copy reads it; the readback starts once the application says it submitted.
#[test]
fn frames_should_record_into_the_applications_encoder() {
    let gpu = gpu_or_skip!();
    let segmenter = segmenter(gpu.clone(), 1);
    let image = photo(29, 45, 37);
    let want = segmenter.segment(&image, true).unwrap();
    let texture = frame_texture(&gpu, &image, F::Rgba8Unorm);
    let mask = target_texture(&gpu, F::R32Float, 45, 37, U::COPY_DST | U::COPY_SRC);
    let copy = output_buffer(&gpu, (256 * 37) as u64);
    let mut stream = segmenter.stream();
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    let request = Request {
        mask: Some(Mask {
            class: 1,
            target: Target::Texture(&mask),
        }),
        readback: Some(Readback::Classes),
        ..Default::default()
    };
    let frame = Frame::Texture {
        texture: &texture,
        region: None,
    };
    let recorded = stream.record(&mut encoder, frame, &request).unwrap();
    // The application's own work in the same encoder reads the mask.
    encoder.copy_texture_to_buffer(
        mask.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &copy,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(256),
                rows_per_image: Some(37),
            },
        },
        mask.size(),
    );
    gpu.queue().submit([encoder.finish()]);
    let classes = drive(recorded.submitted().unwrap(), &gpu).unwrap().classes;
    assert_eq!(classes, want.classes);
    let rows = read_buffer(&gpu, &copy);
    let got: Vec<f32> = rows
        .chunks(256)
        .flat_map(|r| bytemuck::cast_slice::<u8, f32>(&r[..4 * 45]).to_vec())
        .collect();
    assert_close_tol(
        "mask in the app's submission",
        &got,
        probabilities(&want),
        1e-5,
    );
}

/// An application's device created with atrous's required features and limits (no SHADER_F16) runs f32 frames
/// from textures, and refuses an f16 segmenter naming the feature.
#[test]
fn an_application_device_without_f16_should_run_f32_frames() {
    let gpu = gpu_or_skip!();
    let app = app_device(&gpu, |limits| limits);
    assert!(!app.supports(Precision::F16));
    let image = photo(30, 45, 37);
    let want = segmenter(gpu.clone(), 4).segment(&image, true).unwrap();
    let segmenter = segmenter(app.clone(), 4);
    let texture = frame_texture(&app, &image, F::Rgba8UnormSrgb);
    let frame = Frame::Texture {
        texture: &texture,
        region: None,
    };
    let got = segmenter.stream().submit(frame, &read_all()).unwrap();
    let got = got.readback.unwrap().wait().unwrap();
    assert_eq!(got.classes, want.classes);
    let options = PlanOptions {
        precision: Precision::F16,
        ..Default::default()
    };
    let model = segmentation_model(
        4,
        InputSize::Fixed {
            height: 24,
            width: 32,
        },
    );
    let err = Segmenter::with_options(app, model, options).err().unwrap();
    assert!(err.to_string().contains("SHADER_F16"), "{err}");
}

/// Two threads with a stream each share one segmenter and get the host path's results.
#[test]
fn streams_on_two_threads_should_share_one_segmenter() {
    let gpu = gpu_or_skip!();
    let segmenter = segmenter(gpu.clone(), 4);
    let images: Vec<RgbaImage> = (0..2).map(|i| photo(31 + i, 45, 37)).collect();
    let wants: Vec<Vec<u32>> = images
        .iter()
        .map(|i| segmenter.segment(i, false).unwrap().classes)
        .collect();
    std::thread::scope(|scope| {
        for (image, want) in images.iter().zip(&wants) {
            let segmenter = &segmenter;
            scope.spawn(move || {
                let mut stream = segmenter.stream();
                let request = Request {
                    readback: Some(Readback::Classes),
                    ..Default::default()
                };
                for _ in 0..3 {
                    let got = stream.submit(Frame::Image(image), &request).unwrap();
                    assert_eq!(&got.readback.unwrap().wait().unwrap().classes, want);
                }
            });
        }
    });
}

/// Frames and targets atrous cannot use are errors naming what is wrong, before anything is recorded.
#[test]
fn unusable_frames_and_targets_should_be_errors() {
    let gpu = gpu_or_skip!();
    let segmenter = segmenter(gpu.clone(), 4);
    let mut stream = segmenter.stream();
    let image = photo(33, 45, 37);
    let good = frame_texture(&gpu, &image, F::Rgba8Unorm);
    let frame = |texture| Frame::Texture {
        texture,
        region: None,
    };
    let expect = |result: atrous::Result<atrous::segment::Submitted>, needle: &str| {
        let err = result.expect_err("an error");
        assert!(matches!(err, Error::Frame(_)), "{err}");
        assert!(err.to_string().contains(needle), "{needle:?} not in {err}");
    };
    let r8 = target_texture(&gpu, F::R8Unorm, 45, 37, U::TEXTURE_BINDING);
    expect(stream.submit(frame(&r8), &read_all()), "R8Unorm");
    let unbound = target_texture(&gpu, F::Rgba8Unorm, 45, 37, U::COPY_DST);
    expect(
        stream.submit(frame(&unbound), &read_all()),
        "TEXTURE_BINDING",
    );
    let small = target_texture(&gpu, F::R32Uint, 44, 37, U::COPY_DST);
    let request = Request {
        classes: Some(Target::Texture(&small)),
        ..Default::default()
    };
    expect(stream.submit(frame(&good), &request), "44x37");
    let no_copy = target_texture(&gpu, F::R32Uint, 45, 37, U::TEXTURE_BINDING);
    let request = Request {
        classes: Some(Target::Texture(&no_copy)),
        ..Default::default()
    };
    expect(stream.submit(frame(&good), &request), "COPY_DST");
    let wrong = target_texture(&gpu, F::Rgba8Unorm, 45, 37, U::COPY_DST);
    let request = Request {
        classes: Some(Target::Texture(&wrong)),
        ..Default::default()
    };
    expect(stream.submit(frame(&good), &request), "R8Uint or R32Uint");
    let short = output_buffer(&gpu, 4 * 45 * 37 - 4);
    let request = Request {
        classes: Some(Target::Buffer {
            buffer: &short,
            offset: 0,
        }),
        ..Default::default()
    };
    expect(stream.submit(frame(&good), &request), "cannot take");
    let request = Request {
        classes: Some(Target::Buffer {
            buffer: &short,
            offset: 2,
        }),
        ..Default::default()
    };
    expect(stream.submit(frame(&good), &request), "multiple of 4");
    // After all that, the stream still works.
    let got = stream.submit(frame(&good), &read_all()).unwrap();
    assert!(got.readback.unwrap().wait().is_ok());
}
