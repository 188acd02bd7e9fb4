//! Zero padding of a map to another map's height and width; ONNX Slice and Pad in one op.

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

/// What a [`SlicePad`] source index outside the input reads.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum PadMode {
    /// The value (any f32; infinities and NaN are `"inf"`, `"-inf"`, `"nan"` in JSON).
    Constant {
        #[serde(with = "super::any_f32")]
        value: f32,
    },
    /// The reflection without repeating the edge (NumPy "reflect", ONNX Pad reflect): index -1 reads 1, index `n`
    /// reads `n - 2`. An index more than `n - 1` beyond an edge keeps reflecting (the pattern has period
    /// `2 * (n - 1)`, as NumPy's pad does); an axis that reflects needs at least 2 elements.
    Reflect,
    /// The nearest edge element (ONNX Pad edge).
    Edge,
}

/// ONNX Slice (with steps, negative ones included) and ONNX Pad (constant, reflect, edge; negative pads crop) as
/// one gather: along every NCHW axis, output index `i` reads input index `start + i * step`, and an index outside
/// the input reads what [`PadMode`] says. Slice is `start` = the clamped ONNX start, `step` = its step, `output` =
/// its element count; Pad is `start = -pad_begin`, `step = 1`, `output = input + pad_begin + pad_end`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlicePad {
    /// Per NCHW axis: output index i reads input index `start + i * step` (step != 0, may be negative).
    pub start: [i64; 4],
    pub step: [i64; 4],
    /// The output's NCHW shape.
    pub output: [usize; 4],
    /// What a source index outside `0..input` reads: a constant, the reflection (numpy "reflect": the edge is not
    /// repeated; ONNX Pad reflect), or the nearest edge element (ONNX Pad edge).
    pub mode: PadMode,
}

/// The largest source index magnitude a [`SlicePad`] accepts: the kernel computes indices in i32.
pub const SLICE_PAD_INDEX_LIMIT: i64 = i32::MAX as i64;

impl SlicePad {
    /// Plain ONNX Pad: `begin` and `end` elements added (negative: removed) on each NCHW axis.
    pub fn pad(input: Shape, begin: [i64; 4], end: [i64; 4], mode: PadMode) -> Result<SlicePad> {
        let mut output = [0usize; 4];
        for (i, d) in input.dims().into_iter().enumerate() {
            let len = i64::try_from(d)
                .ok()
                .and_then(|d| d.checked_add(begin[i]))
                .and_then(|v| v.checked_add(end[i]))
                .filter(|&v| v >= 1)
                .ok_or_else(|| {
                    Error::params(
                        "slice_pad",
                        format!(
                            "axis {i}: padding {} and {} leaves no elements of {d}",
                            begin[i], end[i]
                        ),
                    )
                })?;
            output[i] = usize::try_from(len).map_err(|_| {
                Error::params("slice_pad", format!("axis {i}: output {len} is too large"))
            })?;
        }
        let start = [0, 1, 2, 3].map(|i| begin[i].checked_neg().unwrap_or(i64::MAX));
        let p = SlicePad {
            start,
            step: [1; 4],
            output,
            mode,
        };
        p.output_shape(input)?;
        Ok(p)
    }

    /// The output shape, after checking the parameters against `input`: steps nonzero, output sizes at least 1,
    /// every source index within +-[`SLICE_PAD_INDEX_LIMIT`] (checked arithmetic: the values may come from
    /// untrusted files), and at least 2 elements on an axis that reflects.
    pub fn output_shape(&self, input: Shape) -> Result<Shape> {
        const OP: &str = "slice_pad";
        positive(OP, "input size", &input.dims())?;
        positive(OP, "output size", &self.output)?;
        for axis in 0..4 {
            let (start, step, len) = (self.start[axis], self.step[axis], self.output[axis]);
            let n = input.dims()[axis];
            if step == 0 {
                return Err(Error::params(
                    OP,
                    format!("axis {axis}: step must not be 0"),
                ));
            }
            let last = i64::try_from(len - 1)
                .ok()
                .and_then(|l| l.checked_mul(step))
                .and_then(|v| v.checked_add(start));
            let in_range = |v: i64| (-SLICE_PAD_INDEX_LIMIT..=SLICE_PAD_INDEX_LIMIT).contains(&v);
            let last = match last {
                Some(last) if in_range(start) && in_range(last) => last,
                _ => {
                    return Err(Error::params(
                        OP,
                        format!(
                            "axis {axis}: source indices from {start} in steps of {step} over {len} outputs exceed +-{SLICE_PAD_INDEX_LIMIT}"
                        ),
                    ))
                }
            };
            let outside = start.min(last) < 0 || start.max(last) >= n as i64;
            if outside && self.mode == PadMode::Reflect && n < 2 {
                return Err(Error::params(
                    OP,
                    format!(
                        "axis {axis}: reflecting needs at least 2 input elements, the input {input} has {n}"
                    ),
                ));
            }
        }
        if self
            .output
            .iter()
            .try_fold(1u32, |acc, &d| {
                u32::try_from(d).ok().and_then(|d| acc.checked_mul(d))
            })
            .is_none()
        {
            return Err(Error::params(
                OP,
                format!("output {:?} has more than 2^32 elements", self.output),
            ));
        }
        let [n, c, h, w] = self.output;
        Ok(Shape::new(n, c, h, w))
    }

    /// The input index that output index `i` along `axis` reads, or `None` for the constant; `n` is the input's
    /// length along that axis.
    pub fn source(&self, axis: usize, i: usize, n: usize) -> Option<usize> {
        let v = self.start[axis] + i as i64 * self.step[axis];
        let n = n as i64;
        if (0..n).contains(&v) {
            return Some(v as usize);
        }
        match self.mode {
            PadMode::Constant { .. } => None,
            PadMode::Edge => Some(v.clamp(0, n - 1) as usize),
            PadMode::Reflect => {
                let period = 2 * (n - 1);
                let r = v.rem_euclid(period);
                Some(if r < n { r } else { period - r } as usize)
            }
        }
    }
}
