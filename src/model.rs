//! A model: a graph, its weights, and what an application needs around it (preprocessing, labels, palette).
//! Saved as one safetensors file whose `__metadata__` entry `atrous` holds the graph as JSON
//! (docs/model-format.md).

use crate::error::{Error, Result};
use crate::graph::{ConvWeightNames, Graph, Op};
use crate::onnx::OnnxGraph;
use crate::ops::{BatchNorm, ChannelOrder, ConvWeights};
use crate::tensor::Shape;
use crate::weights::Weights;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The version of the portable format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The `__metadata__` key holding the model document.
pub const METADATA_KEY: &str = "atrous";

/// How input images become the model's input tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreprocessSpec {
    /// Per-channel mean and std, applied after mapping 8-bit values into `value_range`.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// The range 0..=255 maps to, linearly: `[0, 1]` for torchvision, `[0, 255]` for raw pixels.
    #[serde(default = "unit_range")]
    pub value_range: [f32; 2],
    #[serde(default)]
    pub channel_order: ChannelOrder,
    pub input_size: InputSize,
    /// Per-band mean and std for raw band values ([`crate::segment::Frame::Bands`]: multispectral scenes and models
    /// with any number of input channels), applied as `(v - mean[b]) / std[b]` to the values as they are (no
    /// `value_range` scaling). Without it, band frames of a three-channel model are taken as 0..255 values and
    /// normalised as images are (see [`PreprocessSpec::band_normalize`]); other band frames go to the model as
    /// they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bands: Option<crate::ops::Normalize>,
}

impl PreprocessSpec {
    /// The per-band normalisation of band frames for a model of `channels` input channels: [`Self::bands`], or for
    /// three channels the image normalisation on 0..255 values (the same numbers an 8-bit image gets, in the bands'
    /// order), or the identity.
    pub fn band_normalize(&self, channels: usize) -> crate::ops::Normalize {
        if let Some(n) = &self.bands {
            return n.clone();
        }
        if channels != 3 {
            return crate::ops::Normalize::identity(channels);
        }
        // (pixel * scale - (mean - lo)) / std == (pixel - (mean - lo) / scale) / (std / scale).
        let [lo, hi] = self.value_range;
        let scale = (hi - lo) / 255.0;
        crate::ops::Normalize {
            mean: self.mean.iter().map(|m| (m - lo) / scale).collect(),
            std: self.std.iter().map(|s| s / scale).collect(),
        }
    }
}

fn unit_range() -> [f32; 2] {
    [0.0, 1.0]
}

/// The input size policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum InputSize {
    /// Resize every image to exactly (height, width).
    Fixed { height: usize, width: usize },
    /// Resize so the shorter side is `size`, keeping the aspect ratio.
    ShorterSide { size: usize },
    /// Keep the image's size, rounded up to a multiple of `multiple_of` (networks that need divisible sizes).
    Original {
        #[serde(default = "one")]
        multiple_of: usize,
    },
}

fn one() -> usize {
    1
}

/// Everything in the model document besides the graph.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The architecture the model was built as (e.g. `deeplabv3_resnet50`), for people and for `--arch` detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<PreprocessSpec>,
    /// Class names, by class index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// RGB colour per class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub palette: Vec<[u8; 3]>,
}

/// The JSON document stored under `__metadata__["atrous"]`.
#[derive(Serialize, Deserialize)]
struct Document {
    format_version: u32,
    #[serde(flatten)]
    graph: Graph,
    #[serde(flatten)]
    info: ModelInfo,
}

/// A graph with its weights and metadata.
#[derive(Debug)]
pub struct Model {
    /// The graph. For an ONNX model, its translation at the declared (or probe) input shapes: plans translate the
    /// ONNX graph again for their own shapes ([`Model::graph_for`]).
    pub graph: Graph,
    pub weights: Weights,
    pub info: ModelInfo,
    /// The ONNX graph this model was imported from, when it was.
    pub onnx: Option<Arc<OnnxGraph>>,
}

impl Model {
    pub fn new(graph: Graph, weights: Weights) -> Self {
        Model {
            graph,
            weights,
            info: ModelInfo::default(),
            onnx: None,
        }
    }

    /// Opens any model file atrous reads: the portable format, an ONNX file, a PyTorch state_dict or an smp
    /// folder ([`crate::models::open`], the one front door for model files).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        crate::models::open(path.as_ref(), None)
    }

    /// The graph for these input shapes: the model's own, or for an ONNX model its translation at these shapes.
    pub fn graph_for(&self, inputs: &HashMap<String, Shape>) -> Result<Cow<'_, Graph>> {
        match &self.onnx {
            Some(onnx) => Ok(Cow::Owned(crate::onnx::graph_for(
                onnx,
                inputs,
                &self.weights,
            )?)),
            None => Ok(Cow::Borrowed(&self.graph)),
        }
    }

    /// Reads a model in the portable format from opened weights whose metadata holds the model document.
    pub fn from_portable(path: &Path, weights: Weights) -> Result<Self> {
        let json = weights.metadata().and_then(|m| m.get(METADATA_KEY)).cloned().ok_or_else(|| Error::File {
            path: path.to_path_buf(),
            message: format!("no {METADATA_KEY:?} entry in the safetensors metadata: not an atrous model (see docs/model-format.md)"),
        })?;
        let model = Self::from_json(&json, weights).map_err(|e| Error::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(model)
    }

    /// Builds a model from its JSON document and weights.
    pub fn from_json(json: &str, weights: Weights) -> Result<Self> {
        let doc: Document = serde_json::from_str(json)
            .map_err(|e| Error::Model(format!("invalid model document: {e}")))?;
        if doc.format_version != FORMAT_VERSION {
            return Err(Error::Model(format!(
                "model format version {} is not supported (this build reads version {FORMAT_VERSION})",
                doc.format_version
            )));
        }
        let model = Model {
            graph: doc.graph,
            weights,
            info: doc.info,
            onnx: None,
        };
        model.graph.topological_order()?;
        model.check_weights()?;
        Ok(model)
    }

    /// The model document as JSON.
    pub fn to_json(&self) -> Result<String> {
        let doc = Document {
            format_version: FORMAT_VERSION,
            graph: self.graph.clone(),
            info: self.info.clone(),
        };
        serde_json::to_string(&doc)
            .map_err(|e| Error::Model(format!("serialising the model document: {e}")))
    }

    /// Saves the model in the portable format: every weight a node names, as f32, plus the document. Other tensors
    /// (a state_dict's `num_batches_tracked`, an auxiliary head) are left out.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let metadata = HashMap::from([(METADATA_KEY.to_string(), self.to_json()?)]);
        let mut names: Vec<String> = self
            .graph
            .nodes
            .iter()
            .flat_map(|n| n.op.tensor_names())
            .map(String::from)
            .collect();
        names.sort();
        names.dedup();
        self.weights.save_only(path, names, metadata)
    }

    /// Checks that every weight a node names exists with the shape its parameters need, from the file's header
    /// alone (no tensor data is read); errors name the node, the tensor and both shapes.
    pub fn check_weights(&self) -> Result<()> {
        for node in &self.graph.nodes {
            if let Op::Constant { weight, shape } = &node.op {
                self.weights.check_reshaped(weight, *shape).map_err(|e| {
                    Error::Model(format!("node {:?} ({}): {e}", node.name, node.op.name()))
                })?;
                continue;
            }
            // A group count of 0 would make every weight shape look wrong: name it instead.
            let groups = match &node.op {
                Op::Conv2d { params, .. } => params.groups,
                Op::ConvTranspose2d { params, .. } => params.groups,
                Op::GroupNorm { params, .. } => params.groups,
                _ => 1,
            };
            if groups == 0 {
                return Err(Error::Model(format!(
                    "node {:?} ({}): groups must be >= 1, got 0",
                    node.name,
                    node.op.name()
                )));
            }
            let (shape, channels) = match &node.op {
                Op::Conv2d { params, .. } => (params.weight_shape().to_vec(), params.out_channels),
                Op::ConvTranspose2d { params, .. } => {
                    (params.weight_shape().to_vec(), params.out_channels)
                }
                Op::GroupNorm { params, .. } => (vec![params.channels], params.channels),
                _ => continue,
            };
            let names = node.op.weight_names().expect("these ops have weights");
            let mut wanted = vec![(names.weight.as_str(), shape)];
            wanted.extend(names.bias.iter().map(|b| (b.as_str(), vec![channels])));
            if let Some(bn) = &names.batch_norm {
                for n in [&bn.weight, &bn.bias, &bn.running_mean, &bn.running_var] {
                    wanted.push((n.as_str(), vec![channels]));
                }
            }
            for (name, want) in wanted {
                self.weights.check(name, &want).map_err(|e| {
                    Error::Model(format!("node {:?} ({}): {e}", node.name, node.op.name()))
                })?;
            }
        }
        Ok(())
    }

    /// Reads a group norm's per-channel scale and shift, checking their shapes.
    pub fn affine_weights(
        &self,
        names: &ConvWeightNames,
        channels: usize,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let bias = names
            .bias
            .as_deref()
            .ok_or_else(|| Error::Model(format!("{:?} has no bias tensor named", names.weight)))?;
        Ok((
            self.weights.get_shaped(&names.weight, &[channels])?,
            self.weights.get_shaped(bias, &[channels])?,
        ))
    }

    /// Reads a convolution's weights, checking every shape.
    pub fn conv_weights(
        &self,
        names: &ConvWeightNames,
        shape: [usize; 4],
        channels: usize,
    ) -> Result<ConvWeights> {
        let w = &self.weights;
        let vector = |name: &str| w.get_shaped(name, &[channels]);
        Ok(ConvWeights {
            weight: w.get_shaped(&names.weight, &shape)?,
            bias: names.bias.as_deref().map(vector).transpose()?,
            batch_norm: match &names.batch_norm {
                None => None,
                Some(bn) => Some(BatchNorm {
                    weight: vector(&bn.weight)?,
                    bias: vector(&bn.bias)?,
                    running_mean: vector(&bn.running_mean)?,
                    running_var: vector(&bn.running_var)?,
                    eps: bn.eps,
                }),
            },
        })
    }
}
