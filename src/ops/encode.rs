//! Encoding a class map or class probabilities as rows of texels that a copy puts into an application's texture (or
//! buffer): one u32 word holds one to four texels, and rows may be padded (a buffer-to-texture copy needs rows of a
//! multiple of 256 bytes).

use super::positive;
use crate::error::{Error, Result};
use crate::tensor::Shape;
use serde::{Deserialize, Serialize};

/// The most palette entries a colour encoding takes.
pub const MAX_PALETTE: usize = 1 << 16;

/// What an [`Encode`] node writes per pixel.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Encoding {
    /// Class indices as 8-bit texels (R8Uint), four to a word; classes above 255 saturate. Input: a class map.
    ClassesU8,
    /// Class indices as 32-bit texels (R32Uint). Input: a class map.
    ClassesU32,
    /// Each class's palette colour as an 8-bit RGBA texel with alpha 255, or BGRA when `bgra`. Input: a class map;
    /// classes past the palette's end take its colours again from the start.
    Colours { palette: Vec<[u8; 3]>, bgra: bool },
    /// The probability of `class` as f32 texels (R32Float). Input: the probabilities (`1 x C x H x W`); for a
    /// one-channel model (`C = 1`), whose output is the probability `p` of the foreground, class 1's is `p` and
    /// class 0's `1 - p`.
    ProbabilityF32 { class: usize },
    /// [`Encoding::ProbabilityF32`] as f16 texels (R16Float), two to a word.
    ProbabilityF16 { class: usize },
}

impl Encoding {
    /// Texels one u32 word holds.
    pub fn texels_per_word(&self) -> usize {
        match self {
            Encoding::ClassesU8 => 4,
            Encoding::ProbabilityF16 { .. } => 2,
            _ => 1,
        }
    }

    /// Whether the input is a class map (else probabilities).
    pub fn reads_classes(&self) -> bool {
        matches!(
            self,
            Encoding::ClassesU8 | Encoding::ClassesU32 | Encoding::Colours { .. }
        )
    }

    /// Words a row of `width` texels takes, unpadded.
    pub fn row_words(&self, width: usize) -> usize {
        width.div_ceil(self.texels_per_word())
    }
}

/// Encodes `1 x 1 x H x W` classes or `1 x C x H x W` probabilities into `H` rows of `row_words` u32 words each: a
/// `1 x 1 x H x row_words` u32 tensor. Words past a row's last texel are zero.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Encode {
    pub encoding: Encoding,
    pub row_words: usize,
}

impl Encode {
    pub fn output_shape(&self, input: Shape) -> Result<Shape> {
        const OP: &str = "encode";
        positive(OP, "input size", &input.dims())?;
        if input.n != 1 {
            return Err(Error::params(OP, format!("encodes batch 1, got {input}")));
        }
        match &self.encoding {
            e if e.reads_classes() && input.c != 1 => {
                return Err(Error::params(
                    OP,
                    format!("a class map has one channel, got {input}"),
                ))
            }
            Encoding::Colours { palette, .. }
                if palette.is_empty() || palette.len() > MAX_PALETTE =>
            {
                return Err(Error::params(
                    OP,
                    format!(
                        "a palette has 1 to {MAX_PALETTE} colours, got {}",
                        palette.len()
                    ),
                ))
            }
            Encoding::ProbabilityF32 { class } | Encoding::ProbabilityF16 { class }
                if *class >= input.c.max(2) =>
            {
                return Err(Error::params(
                    OP,
                    format!(
                        "class {class} is out of range: the model has {} classes",
                        input.c.max(2)
                    ),
                ))
            }
            _ => {}
        }
        let needed = self.encoding.row_words(input.w);
        if self.row_words < needed || self.row_words > super::MAX_EXTENT {
            return Err(Error::params(
                OP,
                format!(
                    "rows of {} texels need {needed} to {} words, got {}",
                    input.w,
                    super::MAX_EXTENT,
                    self.row_words
                ),
            ));
        }
        Ok(Shape::new(1, 1, input.h, self.row_words))
    }
}
