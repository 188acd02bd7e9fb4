//! Elementwise ops: binary add/mul with broadcasting, standalone activations, concatenation along channels.

use super::{positive, Activation};
use crate::error::{Error, Result};
use crate::tensor::Shape;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryOp {
    Add,
    Mul,
}

impl BinaryOp {
    pub fn code(self) -> u32 {
        match self {
            BinaryOp::Add => 0,
            BinaryOp::Mul => 1,
        }
    }

    pub fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Mul => a * b,
        }
    }
}

/// `act(a op b)` where each dimension of `a` and `b` is equal or 1 (NumPy broadcasting over NCHW), so that
/// squeeze-excitation's `x * scale` with `scale` of `N x C x 1 x 1` is one op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binary {
    pub op: BinaryOp,
    #[serde(default, skip_serializing_if = "super::is_default")]
    pub activation: Activation,
}

impl Binary {
    pub fn new(op: BinaryOp) -> Self {
        Binary {
            op,
            activation: Activation::None,
        }
    }

    pub fn output_shape(&self, a: Shape, b: Shape) -> Result<Shape> {
        let op = match self.op {
            BinaryOp::Add => "add",
            BinaryOp::Mul => "mul",
        };
        positive(op, "input size", &a.dims())?;
        positive(op, "input size", &b.dims())?;
        let mut out = [0; 4];
        for (i, (&x, &y)) in a.dims().iter().zip(b.dims().iter()).enumerate() {
            out[i] = match (x, y) {
                _ if x == y => x,
                (1, _) => y,
                (_, 1) => x,
                _ => return Err(Error::shape(op, format!("cannot broadcast {a} with {b}"))),
            };
        }
        Ok(Shape::new(out[0], out[1], out[2], out[3]))
    }
}

/// A standalone activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unary {
    pub activation: Activation,
}

impl Unary {
    pub fn output_shape(&self, input: Shape) -> Result<Shape> {
        positive("activation", "input size", &input.dims())?;
        Ok(input)
    }
}

/// Concatenation along channels (`torch.cat(dim=1)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Concat;

impl Concat {
    pub fn output_shape(&self, inputs: &[Shape]) -> Result<Shape> {
        const OP: &str = "concat";
        let first = *inputs
            .first()
            .ok_or_else(|| Error::params(OP, "needs at least one input"))?;
        let mut channels = 0;
        for s in inputs {
            positive(OP, "input size", &s.dims())?;
            if (s.n, s.h, s.w) != (first.n, first.h, first.w) {
                return Err(Error::shape(
                    OP,
                    format!("inputs {first} and {s} differ outside the channel axis"),
                ));
            }
            channels += s.c;
        }
        Ok(first.with_c(channels))
    }
}
