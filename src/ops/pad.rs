//! Zero padding of a map to another map's height and width.

use super::positive;
use crate::error::{Error, Result};
use crate::tensor::Shape;
use serde::{Deserialize, Serialize};

/// Zero-pads `x` to the height and width of a second tensor, `like`, as milesial/Pytorch-UNet pads an upsampled
/// map to its skip's size: `F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])`, the odd row and column at
/// the bottom and right. `like` is read only for its shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PadLike;

impl PadLike {
    pub fn output_shape(&self, input: Shape, like: Shape) -> Result<Shape> {
        positive("pad_like", "input size", &input.dims())?;
        if like.h < input.h || like.w < input.w {
            return Err(Error::shape(
                "pad_like",
                format!("cannot pad {input} to the smaller height and width of {like}"),
            ));
        }
        Ok(Shape::new(input.n, input.c, like.h, like.w))
    }

    /// Rows above and columns left of `input` in the output.
    pub fn offsets(&self, input: Shape, like: Shape) -> (usize, usize) {
        ((like.h - input.h) / 2, (like.w - input.w) / 2)
    }
}
