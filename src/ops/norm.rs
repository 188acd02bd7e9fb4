//! Group normalisation.

use super::{is_default, Activation};
use crate::error::{Error, Result};
use crate::tensor::Shape;
use serde::{Deserialize, Serialize};

/// PyTorch's `GroupNorm(groups, channels, eps)` with its per-channel affine, then an activation. It has no running
/// statistics: every image is normalised by the mean and biased variance of each group of `channels / groups`
/// channels over the whole map, at inference as in training.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupNorm {
    pub channels: usize,
    pub groups: usize,
    pub eps: f64,
    #[serde(default, skip_serializing_if = "is_default")]
    pub activation: Activation,
}

impl GroupNorm {
    /// `GroupNorm(groups, channels)` with PyTorch's default eps 1e-5.
    pub fn new(groups: usize, channels: usize) -> Self {
        GroupNorm {
            channels,
            groups,
            eps: 1e-5,
            activation: Activation::None,
        }
    }

    pub fn channels_per_group(&self) -> usize {
        self.channels / self.groups.max(1)
    }

    pub fn output_shape(&self, input: Shape) -> Result<Shape> {
        super::positive("group_norm", "input size", &input.dims())?;
        if self.groups == 0 || self.channels % self.groups != 0 {
            return Err(Error::params(
                "group_norm",
                format!(
                    "{} channels do not split into {} groups",
                    self.channels, self.groups
                ),
            ));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(Error::params(
                "group_norm",
                format!("eps must be positive, got {}", self.eps),
            ));
        }
        if input.c != self.channels {
            return Err(Error::shape(
                "group_norm",
                format!("expects {} channels, got {input}", self.channels),
            ));
        }
        Ok(input)
    }
}
