//! Reference zero padding.

use crate::error::Result;
use crate::ops::PadLike;
use crate::tensor::{Shape, Tensor};

/// `x` zero-padded to the height and width of `like` ([`PadLike`]).
pub fn pad_like(x: &Tensor, like: Shape) -> Result<Tensor> {
    let s = PadLike.output_shape(x.shape, like)?;
    let (top, left) = PadLike.offsets(x.shape, like);
    let mut out = Tensor::zeros(s);
    for n in 0..s.n {
        for c in 0..s.c {
            for y in 0..x.shape.h {
                let from = x.shape.index(n, c, y, 0);
                let to = s.index(n, c, y + top, left);
                out.data[to..to + x.shape.w].copy_from_slice(&x.data[from..from + x.shape.w]);
            }
        }
    }
    Ok(out)
}
