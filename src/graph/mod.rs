//! A network as a graph of named tensors and op nodes, with validation and shape inference. No wgpu here: the plan
//! (`crate::plan`) compiles a graph for the GPU, and `crate::reference::run_graph` runs it on the CPU.

mod builder;

pub use builder::GraphBuilder;

use crate::error::{Error, Result};
use crate::ops;
use crate::tensor::Shape;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// Names of the weight tensors of a convolution, looked up in the model's weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvWeightNames {
    pub weight: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_norm: Option<BatchNormNames>,
}

/// Names of an eval-mode batch-norm's tensors, and its epsilon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNormNames {
    pub weight: String,
    pub bias: String,
    pub running_mean: String,
    pub running_var: String,
    pub eps: f64,
}

impl BatchNormNames {
    /// The four tensors of PyTorch's `BatchNorm2d` under `prefix` (e.g. `backbone.bn1`).
    pub fn torch(prefix: &str, eps: f64) -> Self {
        BatchNormNames {
            weight: format!("{prefix}.weight"),
            bias: format!("{prefix}.bias"),
            running_mean: format!("{prefix}.running_mean"),
            running_var: format!("{prefix}.running_var"),
            eps,
        }
    }
}

/// What a node computes. Inputs and outputs are listed on the [`Node`]:
/// - `conv2d`: inputs `[x]`, or `[x, residual]` when `params.residual`; output `[y]`.
/// - `resize`: `[x]`, or `[x, like]` when its target is `like` (the output takes `like`'s height and width).
/// - `pad_like`: `[x, like]` -> `[y]`, `x` zero-padded to `like`'s height and width.
/// - `conv_transpose2d`, pools, `softmax`, `argmax`, `unary`, `group_norm`: `[x]` -> `[y]`.
/// - `max_pool2d` with `return_indices`: `[x]` -> `[values, indices]`.
/// - `max_unpool2d`: `[values, indices]` -> `[y]`.
/// - `binary`: `[a, b]` -> `[y]`; `concat`: `[x0, x1, ...]` -> `[y]`.
/// - `pointwise`, `slice_pad`: `[x]` -> `[y]`.
/// - `constant`: `[]` -> `[y]`, the weight tensor `weight` as an f32 activation.
/// - `preprocess`: `[pixels]` (u32 `1 x 1 x H x W`, a [`InputKind::Pixels`] graph input) or `[]` (a texture
///   source) -> `[x]` (`1 x 3 x h x w`).
/// - `normalize`: `[bands]` (u32 `1 x C x H x W` of f32 bits, a [`InputKind::Bands`] graph input) -> `[x]` (f32).
/// - `threshold`: `[p]` -> `[classes]` (u32); `encode`: `[classes]` (u32) or `[probabilities]` -> `[texels]` (u32).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Conv2d {
        params: ops::Conv2d,
        weights: ConvWeightNames,
    },
    ConvTranspose2d {
        params: ops::ConvTranspose2d,
        weights: ConvWeightNames,
    },
    MaxPool2d {
        params: ops::MaxPool2d,
    },
    AvgPool2d {
        params: ops::AvgPool2d,
    },
    AdaptiveAvgPool2d {
        params: ops::AdaptiveAvgPool2d,
    },
    MaxUnpool2d {
        params: ops::MaxUnpool2d,
    },
    Resize {
        params: ops::Resize,
    },
    Softmax,
    Argmax,
    Concat,
    Binary {
        params: ops::Binary,
    },
    Unary {
        params: ops::Unary,
    },
    PadLike,
    /// `weights.weight` and `weights.bias` name the per-channel scale and shift (`[channels]` each); no batch norm.
    GroupNorm {
        params: ops::GroupNorm,
        weights: ConvWeightNames,
    },
    /// An elementwise function with parameters (never fused into a conv epilogue: only `unary` is).
    Pointwise {
        params: ops::Pointwise,
    },
    /// ONNX Slice and Pad.
    SlicePad {
        params: ops::SlicePad,
    },
    /// No inputs: the weight tensor named `weight` (any rank up to 4 whose element count is `shape`'s) as an f32
    /// activation of NCHW `shape`, for per-channel scales, PReLU slopes and other constants an ONNX graph computes
    /// with.
    Constant {
        weight: String,
        shape: [usize; 4],
    },
    /// An image (packed pixels, or a texture bound at run time) resized and normalised into the network's input.
    Preprocess {
        params: ops::Preprocess,
        source: ops::ImageSource,
    },
    /// Raw band values (f32 bits) normalised per band into the network's input.
    Normalize {
        params: ops::Normalize,
    },
    /// A one-channel probability map to a class map.
    Threshold {
        params: ops::Threshold,
    },
    /// A class map or probabilities as texel rows for an application's texture or buffer.
    Encode {
        params: ops::Encode,
    },
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv2d { .. } => "conv2d",
            Op::ConvTranspose2d { .. } => "conv_transpose2d",
            Op::MaxPool2d { .. } => "max_pool2d",
            Op::AvgPool2d { .. } => "avg_pool2d",
            Op::AdaptiveAvgPool2d { .. } => "adaptive_avg_pool2d",
            Op::MaxUnpool2d { .. } => "max_unpool2d",
            Op::Resize { .. } => "resize",
            Op::Softmax => "softmax",
            Op::Argmax => "argmax",
            Op::Concat => "concat",
            Op::Binary { .. } => "binary",
            Op::Unary { .. } => "unary",
            Op::GroupNorm { .. } => "group_norm",
            Op::PadLike => "pad_like",
            Op::Pointwise { .. } => "pointwise",
            Op::SlicePad { .. } => "slice_pad",
            Op::Constant { .. } => "constant",
            Op::Preprocess { .. } => "preprocess",
            Op::Normalize { .. } => "normalize",
            Op::Threshold { .. } => "threshold",
            Op::Encode { .. } => "encode",
        }
    }

    /// The weight tensor names this op reads.
    pub fn weight_names(&self) -> Option<&ConvWeightNames> {
        match self {
            Op::Conv2d { weights, .. }
            | Op::ConvTranspose2d { weights, .. }
            | Op::GroupNorm { weights, .. } => Some(weights),
            _ => None,
        }
    }

    /// Every weight tensor name this op reads: its [`Op::weight_names`] (batch-norm tensors included) or a
    /// constant's tensor. What a saved model must keep.
    pub fn tensor_names(&self) -> Vec<&str> {
        if let Op::Constant { weight, .. } = self {
            return vec![weight.as_str()];
        }
        let Some(w) = self.weight_names() else {
            return Vec::new();
        };
        let mut names = vec![w.weight.as_str()];
        names.extend(w.bias.as_deref());
        if let Some(bn) = &w.batch_norm {
            names.extend([
                bn.weight.as_str(),
                bn.bias.as_str(),
                bn.running_mean.as_str(),
                bn.running_var.as_str(),
            ]);
        }
        names
    }
}

/// One op applied to named input tensors, producing named output tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    #[serde(flatten)]
    pub op: Op,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

impl Node {
    /// The inputs whose values the node reads: all but the `like` of a resize or a pad, which gives only its shape.
    pub fn data_inputs(&self) -> &[String] {
        match self.op {
            Op::Resize { .. } | Op::PadLike => &self.inputs[..self.inputs.len().min(1)],
            _ => &self.inputs,
        }
    }
}

/// A graph input: NCHW with a fixed channel count; batch and size are chosen when a plan is compiled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphInput {
    pub name: String,
    pub channels: usize,
    #[serde(default, skip_serializing_if = "InputKind::is_tensor")]
    pub kind: InputKind,
}

/// What a graph input holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// f32 values (stored in the plan's precision).
    #[default]
    Tensor,
    /// 8-bit RGBA pixels packed one to a u32 word: a `1 x 1 x H x W` u32 tensor, uploaded as the image's bytes.
    Pixels,
    /// Raw band values as f32 bit patterns in u32 words, whatever the plan's precision: a `1 x C x H x W` u32
    /// tensor, uploaded as the values' f32 bytes (read by a `normalize` node).
    Bands,
}

impl InputKind {
    pub fn is_tensor(&self) -> bool {
        *self == InputKind::Tensor
    }
}

/// Element type of a tensor: activations are f32, pooling indices and class maps u32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    U32,
}

/// A tensor's inferred shape and type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub shape: Shape,
    pub dtype: DType,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    pub inputs: Vec<GraphInput>,
    pub nodes: Vec<Node>,
    pub outputs: Vec<String>,
}

fn node_error(node: &Node, message: impl std::fmt::Display) -> Error {
    Error::Model(format!(
        "node {:?} ({}): {message}",
        node.name,
        node.op.name()
    ))
}

impl Graph {
    /// Structural checks: unique names, every input produced by something, outputs exist, no cycles. Returns the
    /// node indices in an order where every node comes after the producers of its inputs.
    pub fn topological_order(&self) -> Result<Vec<usize>> {
        let mut producer: HashMap<&str, usize> = HashMap::new();
        let mut node_names = HashSet::new();
        let graph_inputs: HashSet<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
        if graph_inputs.len() != self.inputs.len() {
            return Err(Error::Model("graph inputs have duplicate names".into()));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if !node_names.insert(node.name.as_str()) {
                return Err(node_error(node, "duplicate node name"));
            }
            if node.outputs.is_empty() {
                return Err(node_error(node, "has no outputs"));
            }
            for out in &node.outputs {
                if graph_inputs.contains(out.as_str()) || producer.insert(out, i).is_some() {
                    return Err(node_error(
                        node,
                        format!("tensor {out:?} is produced twice"),
                    ));
                }
            }
        }
        for node in &self.nodes {
            for input in &node.inputs {
                if !graph_inputs.contains(input.as_str()) && !producer.contains_key(input.as_str())
                {
                    return Err(node_error(
                        node,
                        format!("input {input:?} is neither a graph input nor produced by a node"),
                    ));
                }
            }
        }
        if self.outputs.is_empty() {
            return Err(Error::Model("graph has no outputs".into()));
        }
        let mut listed = HashSet::new();
        if let Some(out) = self.outputs.iter().find(|o| !listed.insert(o.as_str())) {
            return Err(Error::Model(format!(
                "graph output {out:?} is listed twice"
            )));
        }
        for out in &self.outputs {
            if !graph_inputs.contains(out.as_str()) && !producer.contains_key(out.as_str()) {
                return Err(Error::Model(format!(
                    "graph output {out:?} is not produced by any node"
                )));
            }
        }
        // Kahn's algorithm, keeping the given order among ready nodes so plans are deterministic.
        let mut pending: Vec<usize> = self
            .nodes
            .iter()
            .map(|n| {
                n.inputs
                    .iter()
                    .filter(|i| producer.contains_key(i.as_str()))
                    .count()
            })
            .collect();
        let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for input in &node.inputs {
                if let Some(&p) = producer.get(input.as_str()) {
                    consumers[p].push(i);
                }
            }
        }
        let mut ready: std::collections::BTreeSet<usize> =
            (0..self.nodes.len()).filter(|&i| pending[i] == 0).collect();
        let mut order = Vec::with_capacity(self.nodes.len());
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &c in &consumers[i] {
                pending[c] -= 1;
                if pending[c] == 0 {
                    ready.insert(c);
                }
            }
        }
        if order.len() != self.nodes.len() {
            let stuck: Vec<&str> = (0..self.nodes.len())
                .filter(|&i| pending[i] > 0)
                .map(|i| self.nodes[i].name.as_str())
                .collect();
            return Err(Error::Model(format!(
                "graph has a cycle through nodes {stuck:?}"
            )));
        }
        Ok(self.defer_sources(order))
    }

    /// `order` with each node that has no inputs (a constant: ready from the start, so Kahn's algorithm puts it
    /// first) moved to just before its first reader, so its output is not live from the first step on; one that
    /// nothing reads (a graph output only) keeps its place. Linear in the nodes and edges.
    fn defer_sources(&self, order: Vec<usize>) -> Vec<usize> {
        let deferred: HashMap<&str, usize> = order
            .iter()
            .filter(|&&i| self.nodes[i].inputs.is_empty())
            .flat_map(|&i| self.nodes[i].outputs.iter().map(move |o| (o.as_str(), i)))
            .collect();
        if deferred.is_empty() {
            return order;
        }
        let read: HashSet<usize> = self
            .nodes
            .iter()
            .flat_map(|n| &n.inputs)
            .filter_map(|t| deferred.get(t.as_str()).copied())
            .collect();
        let mut placed = vec![false; self.nodes.len()];
        let mut out = Vec::with_capacity(order.len());
        for i in order {
            if read.contains(&i) {
                continue;
            }
            for t in &self.nodes[i].inputs {
                if let Some(&s) = deferred.get(t.as_str()) {
                    if !std::mem::replace(&mut placed[s], true) {
                        out.push(s);
                    }
                }
            }
            out.push(i);
        }
        out
    }

    /// Infers every tensor's shape and type for concrete input shapes (`name -> shape`), validating each node's
    /// parameters and input shapes. Returns the topological order too.
    pub fn infer(
        &self,
        inputs: &HashMap<String, Shape>,
    ) -> Result<(Vec<usize>, HashMap<String, TensorInfo>)> {
        let order = self.topological_order()?;
        let mut infos = HashMap::new();
        for input in &self.inputs {
            let shape = *inputs.get(&input.name).ok_or_else(|| {
                Error::Model(format!("no shape given for graph input {:?}", input.name))
            })?;
            if shape.c != input.channels {
                return Err(Error::Model(format!(
                    "graph input {:?} has {} channels, got a tensor of shape {shape}",
                    input.name, input.channels
                )));
            }
            infos.insert(
                input.name.clone(),
                TensorInfo {
                    shape,
                    dtype: match input.kind {
                        InputKind::Tensor => DType::F32,
                        InputKind::Pixels | InputKind::Bands => DType::U32,
                    },
                },
            );
        }
        for &i in &order {
            let node = &self.nodes[i];
            let ins: Vec<TensorInfo> = node.inputs.iter().map(|n| infos[n]).collect();
            let outs = node_outputs(node, &ins).map_err(|e| node_error(node, e))?;
            if outs.len() != node.outputs.len() {
                return Err(node_error(
                    node,
                    format!(
                        "produces {} outputs, {} named",
                        outs.len(),
                        node.outputs.len()
                    ),
                ));
            }
            for (name, info) in node.outputs.iter().zip(outs) {
                infos.insert(name.clone(), info);
            }
        }
        Ok((order, infos))
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

fn expect_inputs(ins: &[TensorInfo], count: usize) -> Result<()> {
    if ins.len() != count {
        return Err(Error::Model(format!(
            "takes {count} inputs, got {}",
            ins.len()
        )));
    }
    Ok(())
}

fn f32_input(info: TensorInfo, what: &str) -> Result<Shape> {
    if info.dtype != DType::F32 {
        return Err(Error::Model(format!(
            "{what} must be an f32 tensor, got indices of shape {}",
            info.shape
        )));
    }
    Ok(info.shape)
}

/// Output shapes and types of one node, from its input infos.
pub(crate) fn node_outputs(node: &Node, ins: &[TensorInfo]) -> Result<Vec<TensorInfo>> {
    let f32 = |shape| TensorInfo {
        shape,
        dtype: DType::F32,
    };
    let single = |ins: &[TensorInfo]| -> Result<Shape> {
        expect_inputs(ins, 1)?;
        f32_input(ins[0], "input")
    };
    Ok(match &node.op {
        Op::Conv2d { params, .. } => {
            if params.out_channel_offset != 0 || params.out_channels_total.is_some() {
                return Err(Error::Model(
                    "channel-offset writes are chosen by the plan; express concatenation with a concat node".into(),
                ));
            }
            expect_inputs(ins, if params.residual { 2 } else { 1 })?;
            let out = params.output_shape(f32_input(ins[0], "input")?)?;
            if params.residual && f32_input(ins[1], "residual")? != out {
                return Err(Error::Model(format!(
                    "residual has shape {}, output is {out}",
                    ins[1].shape
                )));
            }
            vec![f32(out)]
        }
        Op::ConvTranspose2d { params, .. } => vec![f32(params.output_shape(single(ins)?)?)],
        Op::MaxPool2d { params } => {
            let out = params.output_shape(single(ins)?)?;
            let mut outs = vec![f32(out)];
            if params.return_indices {
                outs.push(TensorInfo {
                    shape: out,
                    dtype: DType::U32,
                });
            }
            outs
        }
        Op::AvgPool2d { params } => vec![f32(params.output_shape(single(ins)?)?)],
        Op::AdaptiveAvgPool2d { params } => vec![f32(params.output_shape(single(ins)?)?)],
        Op::MaxUnpool2d { params } => {
            expect_inputs(ins, 2)?;
            let values = f32_input(ins[0], "values")?;
            if ins[1].dtype != DType::U32 || ins[1].shape != values {
                return Err(Error::Model(format!(
                    "indices must be the u32 output of a max_pool2d of shape {values}, got {:?} {}",
                    ins[1].dtype, ins[1].shape
                )));
            }
            vec![f32(params.output_shape(values)?)]
        }
        Op::Resize { params } => {
            expect_inputs(ins, params.inputs())?;
            let x = f32_input(ins[0], "input")?;
            let like = ins.get(1).map(|i| i.shape);
            vec![f32(params.resolve(like)?.output_shape(x)?)]
        }
        Op::Softmax => vec![f32(ops::Softmax.output_shape(single(ins)?)?)],
        Op::Argmax => vec![TensorInfo {
            shape: ops::Argmax.output_shape(single(ins)?)?,
            dtype: DType::U32,
        }],
        Op::Concat => {
            let shapes = ins
                .iter()
                .map(|&i| f32_input(i, "input"))
                .collect::<Result<Vec<_>>>()?;
            vec![f32(ops::Concat.output_shape(&shapes)?)]
        }
        Op::Binary { params } => {
            expect_inputs(ins, 2)?;
            vec![f32(params.output_shape(
                f32_input(ins[0], "a")?,
                f32_input(ins[1], "b")?,
            )?)]
        }
        Op::Unary { params } => vec![f32(params.output_shape(single(ins)?)?)],
        Op::PadLike => {
            expect_inputs(ins, 2)?;
            vec![f32(
                ops::PadLike.output_shape(f32_input(ins[0], "input")?, ins[1].shape)?
            )]
        }
        Op::GroupNorm { params, weights } => {
            if weights.bias.is_none() || weights.batch_norm.is_some() {
                return Err(Error::Model(
                    "group_norm names a weight and a bias, and no batch norm".into(),
                ));
            }
            vec![f32(params.output_shape(single(ins)?)?)]
        }
        Op::Pointwise { params } => vec![f32(params.output_shape(single(ins)?)?)],
        Op::SlicePad { params } => vec![f32(params.output_shape(single(ins)?)?)],
        Op::Preprocess { params, source } => {
            let shapes: Vec<Shape> = ins
                .iter()
                .map(|i| match i.dtype {
                    DType::U32 => Ok(i.shape),
                    DType::F32 => Err(Error::Model(format!(
                        "pixels must be a u32 tensor of RGBA words, got an f32 tensor of shape {}",
                        i.shape
                    ))),
                })
                .collect::<Result<_>>()?;
            vec![f32(params.output_shape(source.layout(&shapes)?)?)]
        }
        Op::Normalize { params } => {
            expect_inputs(ins, 1)?;
            if ins[0].dtype != DType::U32 {
                return Err(Error::Model(format!(
                    "normalize reads raw band values as a u32 tensor of f32 bits (an input of kind bands), got an \
                     f32 tensor of shape {}",
                    ins[0].shape
                )));
            }
            vec![f32(params.output_shape(ins[0].shape)?)]
        }
        Op::Threshold { params } => vec![TensorInfo {
            shape: params.output_shape(single(ins)?)?.with_c(1),
            dtype: DType::U32,
        }],
        Op::Encode { params } => {
            expect_inputs(ins, 1)?;
            let want = match params.encoding.reads_classes() {
                true => DType::U32,
                false => DType::F32,
            };
            if ins[0].dtype != want {
                return Err(Error::Model(format!(
                    "encoding {:?} reads a {want:?} tensor, got {:?}",
                    params.encoding, ins[0].dtype
                )));
            }
            vec![TensorInfo {
                shape: params.output_shape(ins[0].shape)?,
                dtype: DType::U32,
            }]
        }
        Op::Constant { shape, .. } => {
            expect_inputs(ins, 0)?;
            let [n, c, h, w] = *shape;
            let shape = Shape::new(n, c, h, w);
            ops::positive("constant", "shape", &shape.dims())?;
            vec![f32(shape)]
        }
    })
}
