//! Reference encode: class maps and probabilities as texel rows (see `crate::ops::Encode`).

use crate::error::{Error, Result};
use crate::ops::{Encode, Encoding};
use crate::plan::Output;

/// The `H x row_words` u32 words the [`Encode`] of `input` (a class map, or probabilities) writes.
pub fn encode(e: &Encode, input: &Output) -> Result<Vec<u32>> {
    let shape = input.shape();
    let out = e.output_shape(shape)?;
    let (h, w) = (shape.h, shape.w);
    let mut words = vec![0u32; out.numel()];
    match (input, &e.encoding) {
        (Output::U32 { data, .. }, encoding) if encoding.reads_classes() => {
            for y in 0..h {
                for x in 0..w {
                    let class = data[y * w + x];
                    let row = &mut words[y * e.row_words..(y + 1) * e.row_words];
                    match encoding {
                        Encoding::ClassesU8 => row[x / 4] |= class.min(255) << (8 * (x % 4)),
                        Encoding::ClassesU32 => row[x] = class,
                        Encoding::Colours { palette, bgra } => {
                            let [r, g, b] = palette[class as usize % palette.len()];
                            row[x] = match bgra {
                                false => u32::from_le_bytes([r, g, b, 255]),
                                true => u32::from_le_bytes([b, g, r, 255]),
                            };
                        }
                        _ => unreachable!("reads_classes"),
                    }
                }
            }
        }
        (
            Output::F32(t),
            Encoding::ProbabilityF32 { class } | Encoding::ProbabilityF16 { class },
        ) => {
            let probability = |y: usize, x: usize| match shape.c {
                1 if *class == 1 => t.data[y * w + x],
                1 => 1.0 - t.data[y * w + x],
                _ => t.data[(class * h + y) * w + x],
            };
            for y in 0..h {
                let row = &mut words[y * e.row_words..(y + 1) * e.row_words];
                for x in 0..w {
                    match e.encoding {
                        Encoding::ProbabilityF32 { .. } => row[x] = probability(y, x).to_bits(),
                        _ => {
                            let bits = half::f16::from_f32(probability(y, x)).to_bits() as u32;
                            row[x / 2] |= bits << (16 * (x % 2));
                        }
                    }
                }
            }
        }
        (_, encoding) => {
            return Err(Error::params(
                "encode",
                format!("{encoding:?} cannot encode a tensor of shape {shape} and this type"),
            ))
        }
    }
    Ok(words)
}
