//! Reference padding: to another tensor's size, and ONNX Slice / Pad.

use crate::error::Result;
use crate::ops::{PadLike, PadMode, SlicePad};
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

/// ONNX Slice / Pad ([`SlicePad`]): every output element gathers its source index per axis.
pub fn slice_pad(p: &SlicePad, x: &Tensor) -> Result<Tensor> {
    let s = p.output_shape(x.shape)?;
    let d = x.shape.dims();
    let sources: Vec<Vec<Option<usize>>> = (0..4)
        .map(|axis| {
            (0..s.dims()[axis])
                .map(|i| p.source(axis, i, d[axis]))
                .collect()
        })
        .collect();
    let constant = match p.mode {
        PadMode::Constant { value } => value,
        _ => 0.0,
    };
    let mut out = Tensor::zeros(s);
    for n in 0..s.n {
        for c in 0..s.c {
            for y in 0..s.h {
                for w in 0..s.w {
                    let at = (sources[0][n], sources[1][c], sources[2][y], sources[3][w]);
                    out.data[s.index(n, c, y, w)] = match at {
                        (Some(a), Some(b), Some(e), Some(f)) => x.at(a, b, e, f),
                        _ => constant,
                    };
                }
            }
        }
    }
    Ok(out)
}
