//! Host tensors: f32 data in NCHW order with a static shape.

use crate::error::{Error, Result};
use std::fmt;

/// An NCHW shape. Every activation in atrous is four-dimensional.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Shape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub const fn new(n: usize, c: usize, h: usize, w: usize) -> Self {
        Shape { n, c, h, w }
    }

    pub const fn dims(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }

    /// Number of elements; saturates instead of overflowing so absurd shapes fail size checks.
    pub fn numel(&self) -> usize {
        self.dims()
            .iter()
            .fold(1usize, |acc, &d| acc.saturating_mul(d))
    }

    pub fn bytes(&self) -> u64 {
        (self.numel() as u64).saturating_mul(4)
    }

    pub const fn plane(&self) -> usize {
        self.h * self.w
    }

    /// Linear index of (n, c, h, w).
    pub const fn index(&self, n: usize, c: usize, h: usize, w: usize) -> usize {
        ((n * self.c + c) * self.h + h) * self.w + w
    }

    pub fn with_c(self, c: usize) -> Self {
        Shape { c, ..self }
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}x{}", self.n, self.c, self.h, self.w)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A host tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Shape,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Shape, data: Vec<f32>) -> Result<Self> {
        if data.len() != shape.numel() {
            return Err(Error::shape(
                "tensor",
                format!(
                    "shape {shape} needs {} values, got {}",
                    shape.numel(),
                    data.len()
                ),
            ));
        }
        Ok(Tensor { shape, data })
    }

    pub fn zeros(shape: Shape) -> Self {
        Tensor {
            shape,
            data: vec![0.0; shape.numel()],
        }
    }

    pub fn at(&self, n: usize, c: usize, h: usize, w: usize) -> f32 {
        self.data[self.shape.index(n, c, h, w)]
    }
}
