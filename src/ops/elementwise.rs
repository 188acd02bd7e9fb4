//! Elementwise ops: binary ops with broadcasting, standalone activations, pointwise functions with parameters,
//! concatenation along channels.

use super::{positive, Activation};
use crate::error::{Error, Result};
use crate::tensor::Shape;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryOp {
    Add,
    Mul,
    /// `a - b`.
    Sub,
    /// `a / b` (IEEE: a zero divisor gives an infinity or NaN).
    Div,
    /// ONNX PRelu: `a >= 0 ? a : a * b`, with `b` the slope, broadcast like any operand.
    Prelu,
}

impl BinaryOp {
    /// The code the shader switches on (`binary` in shaders/elementwise.wgsl).
    pub fn code(self) -> u32 {
        match self {
            BinaryOp::Add => 0,
            BinaryOp::Mul => 1,
            BinaryOp::Sub => 2,
            BinaryOp::Div => 3,
            BinaryOp::Prelu => 4,
        }
    }

    pub fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Mul => a * b,
            BinaryOp::Sub => a - b,
            BinaryOp::Div => a / b,
            BinaryOp::Prelu => {
                if a >= 0.0 {
                    a
                } else {
                    a * b
                }
            }
        }
    }

    /// The op's name in errors.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Mul => "mul",
            BinaryOp::Sub => "sub",
            BinaryOp::Div => "div",
            BinaryOp::Prelu => "prelu",
        }
    }

    pub const ALL: [BinaryOp; 5] = [
        BinaryOp::Add,
        BinaryOp::Mul,
        BinaryOp::Sub,
        BinaryOp::Div,
        BinaryOp::Prelu,
    ];
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
        let op = self.op.name();
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

/// A standalone elementwise function with parameters: the activations whose parameters the fused epilogue
/// [`Activation`] cannot carry, and ONNX's unary math. Computed in f32 on the GPU (`pointwise` in
/// shaders/elementwise.wgsl); [`Pointwise::apply`] is the f64 definition.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "function", rename_all = "snake_case")]
pub enum Pointwise {
    /// `x >= 0 ? x : alpha * x`.
    LeakyRelu {
        alpha: f32,
    },
    /// `min(max(x, min), max)`; NaN stays NaN. `min > max` gives `max` everywhere (as ONNX and NumPy). An open
    /// bound is an infinity (`"inf"` / `"-inf"` in JSON).
    Clip {
        #[serde(with = "super::any_f32")]
        min: f32,
        #[serde(with = "super::any_f32")]
        max: f32,
    },
    /// `x > 0 ? x : alpha * (exp(x) - 1)`.
    Elu {
        alpha: f32,
    },
    /// `max(0, min(1, alpha * x + beta))`.
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    Tanh,
    /// `ln(1 + exp(x))`, computed stably.
    Softplus,
    /// `0.5 * x * (1 + erf(x / sqrt(2)))`, or with `tanh` the approximation
    /// `0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))` (ONNX Gelu's `approximate="tanh"`).
    Gelu {
        tanh: bool,
    },
    Exp,
    /// Natural logarithm: NaN below 0, -inf at 0.
    Log,
    Sqrt,
    Abs,
    Neg,
    /// `1 / x`.
    Reciprocal,
    Floor,
    Ceil,
}

impl Pointwise {
    /// The function's name (its serde tag), for errors and labels.
    pub fn name(&self) -> &'static str {
        match self {
            Pointwise::LeakyRelu { .. } => "leaky_relu",
            Pointwise::Clip { .. } => "clip",
            Pointwise::Elu { .. } => "elu",
            Pointwise::HardSigmoid { .. } => "hard_sigmoid",
            Pointwise::Tanh => "tanh",
            Pointwise::Softplus => "softplus",
            Pointwise::Gelu { .. } => "gelu",
            Pointwise::Exp => "exp",
            Pointwise::Log => "log",
            Pointwise::Sqrt => "sqrt",
            Pointwise::Abs => "abs",
            Pointwise::Neg => "neg",
            Pointwise::Reciprocal => "reciprocal",
            Pointwise::Floor => "floor",
            Pointwise::Ceil => "ceil",
        }
    }

    /// The code the shader switches on (`pointwise_fn` in shaders/elementwise.wgsl).
    pub fn code(&self) -> u32 {
        match self {
            Pointwise::LeakyRelu { .. } => 0,
            Pointwise::Clip { .. } => 1,
            Pointwise::Elu { .. } => 2,
            Pointwise::HardSigmoid { .. } => 3,
            Pointwise::Tanh => 4,
            Pointwise::Softplus => 5,
            Pointwise::Gelu { tanh: false } => 6,
            Pointwise::Gelu { tanh: true } => 7,
            Pointwise::Exp => 8,
            Pointwise::Log => 9,
            Pointwise::Sqrt => 10,
            Pointwise::Abs => 11,
            Pointwise::Neg => 12,
            Pointwise::Reciprocal => 13,
            Pointwise::Floor => 14,
            Pointwise::Ceil => 15,
        }
    }

    /// The two f32 parameters the shader reads (zeros where the function has fewer).
    pub fn params(&self) -> [f32; 2] {
        match *self {
            Pointwise::LeakyRelu { alpha } | Pointwise::Elu { alpha } => [alpha, 0.0],
            Pointwise::Clip { min, max } => [min, max],
            Pointwise::HardSigmoid { alpha, beta } => [alpha, beta],
            _ => [0.0, 0.0],
        }
    }

    /// The input's shape, after checking the parameters: finite, except Clip's bounds, which may be infinite
    /// (no bound) but not NaN.
    pub fn output_shape(&self, x: Shape) -> Result<Shape> {
        const OP: &str = "pointwise";
        positive(OP, "input size", &x.dims())?;
        let named: &[(&str, f32)] = match self {
            Pointwise::LeakyRelu { alpha } | Pointwise::Elu { alpha } => &[("alpha", *alpha)],
            Pointwise::HardSigmoid { alpha, beta } => &[("alpha", *alpha), ("beta", *beta)],
            Pointwise::Clip { min, max } => {
                if min.is_nan() || max.is_nan() {
                    return Err(Error::params(
                        OP,
                        format!("clip bounds must not be NaN, got min {min} and max {max}"),
                    ));
                }
                &[]
            }
            _ => &[],
        };
        for (what, v) in named {
            if !v.is_finite() {
                return Err(Error::params(
                    OP,
                    format!("{} {what} must be finite, got {v}", self.name()),
                ));
            }
        }
        Ok(x)
    }

    /// The definition, in f64.
    pub fn apply(&self, x: f64) -> f64 {
        match *self {
            Pointwise::LeakyRelu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    alpha as f64 * x
                }
            }
            Pointwise::Clip { min, max } => {
                if x.is_nan() {
                    x
                } else {
                    x.max(min as f64).min(max as f64)
                }
            }
            Pointwise::Elu { alpha } => {
                if x > 0.0 {
                    x
                } else {
                    alpha as f64 * x.exp_m1()
                }
            }
            Pointwise::HardSigmoid { alpha, beta } => {
                (alpha as f64 * x + beta as f64).clamp(0.0, 1.0)
            }
            Pointwise::Tanh => x.tanh(),
            Pointwise::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            Pointwise::Gelu { tanh: false } => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
            Pointwise::Gelu { tanh: true } => {
                let k = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
            }
            Pointwise::Exp => x.exp(),
            Pointwise::Log => x.ln(),
            Pointwise::Sqrt => x.sqrt(),
            Pointwise::Abs => x.abs(),
            Pointwise::Neg => -x,
            Pointwise::Reciprocal => 1.0 / x,
            Pointwise::Floor => x.floor(),
            Pointwise::Ceil => x.ceil(),
        }
    }
}

/// The error function in f64 to about 1e-15: `erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_n 2^n x^(2n+1) / (1*3*...*(2n+1))`,
/// a series of positive terms (no cancellation); `|x| >= 6` is +-1 to f64 precision.
pub(crate) fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    if a >= 6.0 {
        return x.signum();
    }
    let (mut term, mut sum, mut n) = (a, a, 0.0f64);
    while term > sum * 1e-17 {
        n += 1.0;
        term *= 2.0 * a * a / (2.0 * n + 1.0);
        sum += term;
    }
    let v = 2.0 / std::f64::consts::PI.sqrt() * (-a * a).exp() * sum;
    v.min(1.0).copysign(x)
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
