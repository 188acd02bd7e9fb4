//! Softmax and argmax over the channel axis.

use super::positive;
use crate::error::Result;
use crate::tensor::Shape;
use serde::{Deserialize, Serialize};

/// Softmax over channels: `exp(x - max) / sum(exp(x - max))` per pixel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Softmax;

impl Softmax {
    pub fn output_shape(&self, input: Shape) -> Result<Shape> {
        positive("softmax", "input size", &input.dims())?;
        Ok(input)
    }
}

/// Argmax over channels: an `N x 1 x H x W` class map of u32 indices; ties pick the first channel, as PyTorch does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Argmax;

impl Argmax {
    pub fn output_shape(&self, input: Shape) -> Result<Shape> {
        positive("argmax", "input size", &input.dims())?;
        Ok(input.with_c(1))
    }
}

/// The class map of a one-channel probability map: 1 where `p > value`, else 0 (`N x 1 x H x W` u32).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    pub value: f32,
}

impl Threshold {
    pub fn output_shape(&self, input: Shape) -> Result<Shape> {
        positive("threshold", "input size", &input.dims())?;
        if input.c != 1 || !self.value.is_finite() {
            return Err(crate::error::Error::params(
                "threshold",
                format!(
                    "needs one channel and a finite threshold, got {input} and {}",
                    self.value
                ),
            ));
        }
        Ok(input)
    }
}
