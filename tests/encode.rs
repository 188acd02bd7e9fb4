//! The encode kernels (class maps and probabilities as texel rows) against `reference::encode` on random data, into
//! poisoned outputs, rows padded and not, f32 and f16 storage of the probabilities.

mod common;

use atrous::gpu::{Precision, TensorData};
use atrous::kernels::encode;
use atrous::ops::{Encode, Encoding};
use atrous::plan::Output;
use atrous::{reference, Shape};
use common::*;
use rand::Rng;

fn check(precision: Precision) {
    let gpu = gpu_or_skip!(precision);
    let mut r = rng(70);
    for (c, h, w) in [(4, 5, 13), (1, 3, 7), (21, 2, 66)] {
        let classes: Vec<u32> = (0..h * w)
            .map(|_| r.random_range(0..c.max(2) as u32 + 300))
            .collect();
        let probs = rounded(precision, &random_tensor(&mut r, Shape::new(1, c, h, w)));
        let encodings = [
            Encoding::ClassesU8,
            Encoding::ClassesU32,
            Encoding::Colours {
                palette: vec![[1, 2, 3], [200, 100, 50], [9, 8, 7]],
                bgra: false,
            },
            Encoding::Colours {
                palette: vec![[1, 2, 3], [200, 100, 50]],
                bgra: true,
            },
            Encoding::ProbabilityF32 {
                class: c.max(2) - 1,
            },
            Encoding::ProbabilityF16 { class: 0 },
        ];
        for encoding in encodings {
            for padded in [false, true] {
                let words = encoding.row_words(w);
                let row_words = if padded {
                    words.next_multiple_of(64)
                } else {
                    words
                };
                let e = Encode {
                    encoding: encoding.clone(),
                    row_words,
                };
                let (input, shape) = match encoding.reads_classes() {
                    true => {
                        let shape = Shape::new(1, 1, h, w);
                        (
                            Output::U32 {
                                shape,
                                data: classes.clone(),
                            },
                            shape,
                        )
                    }
                    false => (Output::F32(probs.clone()), probs.shape),
                };
                let want = reference::encode(&e, &input).unwrap();
                let kernel = encode::encode(&gpu, "encode", &e, shape, precision).unwrap();
                let out_shape = e.output_shape(shape).unwrap();
                let out = gpu.tensor("texels", out_shape, true).unwrap();
                let gin = match &input {
                    Output::U32 { data, .. } => {
                        gpu.upload("classes", shape, TensorData::U32(data)).unwrap()
                    }
                    Output::F32(t) => upload_in(&gpu, "probabilities", t, precision),
                };
                let mut inputs = vec![gin.binding()];
                let palette = match &encoding {
                    Encoding::Colours { palette, .. } => {
                        let words = encode::palette_words(palette);
                        Some(
                            gpu.upload(
                                "palette",
                                Shape::new(1, 1, 1, words.len()),
                                TensorData::U32(&words),
                            )
                            .unwrap(),
                        )
                    }
                    _ => None,
                };
                inputs.extend(palette.as_ref().map(|p| p.binding()));
                let bound = kernel.bind(&gpu, &[out.binding()], &inputs).unwrap();
                gpu.run(&[&bound]).unwrap();
                let got = gpu.read_u32(&out).unwrap();
                let what = format!("{encoding:?}, {c}x{h}x{w}, row_words {row_words}, {precision}");
                match encoding {
                    // pack2x16float may round a tie differently from `half`: within one f16 step.
                    Encoding::ProbabilityF16 { .. } => {
                        let halves = |v: &[u32]| -> Vec<f32> {
                            v.iter()
                                .flat_map(|w| [*w as u16, (w >> 16) as u16])
                                .map(|b| half::f16::from_bits(b).to_f32())
                                .collect()
                        };
                        assert_close_tol(&what, &halves(&got), &halves(&want), 1e-3);
                    }
                    _ => assert_eq!(got, want, "{what}"),
                }
            }
        }
    }
}

#[test]
fn encodings_should_match_the_reference() {
    check(Precision::F32);
}

#[test]
fn encodings_in_f16_should_match_the_reference() {
    check(Precision::F16);
}
