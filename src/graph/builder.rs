//! A pleasant way to build graphs from Rust, for whole networks and for single ops.

use super::{BatchNormNames, ConvWeightNames, Graph, GraphInput, Node, Op};
use crate::error::Result;
use crate::model::Model;
use crate::ops::{self, Activation, Binary, BinaryOp, ConvWeights, Unary};
use crate::weights::Weights;

/// Builds a [`Model`]: each method adds one node, named `name`, whose (first) output tensor is also called `name`,
/// and returns that tensor's name. Weights given as host data are stored under `<name>.weight`, `<name>.bias` and
/// `<name>.bn.*`.
#[derive(Default)]
pub struct GraphBuilder {
    graph: Graph,
    weights: Weights,
}

impl GraphBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts from existing weights (a state_dict), which nodes then refer to by name.
    pub fn with_weights(weights: Weights) -> Self {
        GraphBuilder {
            graph: Graph::default(),
            weights,
        }
    }

    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    pub fn input(&mut self, name: &str, channels: usize) -> String {
        self.graph.inputs.push(GraphInput {
            name: name.to_string(),
            channels,
            kind: Default::default(),
        });
        name.to_string()
    }

    /// Adds a node as given.
    pub fn node(&mut self, name: &str, op: Op, inputs: &[&str], outputs: &[&str]) {
        self.graph.nodes.push(Node {
            name: name.to_string(),
            op,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
        });
    }

    fn single(&mut self, name: &str, op: Op, inputs: &[&str]) -> String {
        self.node(name, op, inputs, &[name]);
        name.to_string()
    }

    fn store_conv_weights(
        &mut self,
        name: &str,
        shape: [usize; 4],
        w: ConvWeights,
    ) -> Result<ConvWeightNames> {
        let channels = w.bias.as_ref().map(Vec::len);
        let weight = format!("{name}.weight");
        self.weights.insert(&weight, shape.to_vec(), w.weight)?;
        let bias = match w.bias {
            Some(b) => {
                let n = format!("{name}.bias");
                self.weights
                    .insert(&n, vec![channels.unwrap_or(b.len())], b)?;
                Some(n)
            }
            None => None,
        };
        let batch_norm = match w.batch_norm {
            Some(bn) => {
                let names = BatchNormNames::torch(&format!("{name}.bn"), bn.eps);
                for (n, v) in [
                    (&names.weight, bn.weight),
                    (&names.bias, bn.bias),
                    (&names.running_mean, bn.running_mean),
                    (&names.running_var, bn.running_var),
                ] {
                    self.weights.insert(n, vec![v.len()], v)?;
                }
                Some(names)
            }
            None => None,
        };
        Ok(ConvWeightNames {
            weight,
            bias,
            batch_norm,
        })
    }

    /// A convolution with weights given as host data.
    pub fn conv2d(
        &mut self,
        name: &str,
        x: &str,
        params: ops::Conv2d,
        w: ConvWeights,
    ) -> Result<String> {
        let weights = self.store_conv_weights(name, params.weight_shape(), w)?;
        Ok(self.conv2d_named(name, x, None, params, weights))
    }

    /// A convolution whose weights are already stored under `weights`' names; with `residual`, that tensor is
    /// added before the activation (`params.residual` is set accordingly).
    pub fn conv2d_named(
        &mut self,
        name: &str,
        x: &str,
        residual: Option<&str>,
        mut params: ops::Conv2d,
        weights: ConvWeightNames,
    ) -> String {
        params.residual = residual.is_some();
        let mut inputs = vec![x];
        inputs.extend(residual);
        self.single(name, Op::Conv2d { params, weights }, &inputs)
    }

    pub fn conv_transpose2d(
        &mut self,
        name: &str,
        x: &str,
        params: ops::ConvTranspose2d,
        w: ConvWeights,
    ) -> Result<String> {
        let weights = self.store_conv_weights(name, params.weight_shape(), w)?;
        Ok(self.conv_transpose2d_named(name, x, params, weights))
    }

    pub fn conv_transpose2d_named(
        &mut self,
        name: &str,
        x: &str,
        params: ops::ConvTranspose2d,
        weights: ConvWeightNames,
    ) -> String {
        self.single(name, Op::ConvTranspose2d { params, weights }, &[x])
    }

    /// `x` zero-padded to the height and width of `like` (read only for its shape).
    pub fn pad_like(&mut self, name: &str, x: &str, like: &str) -> String {
        self.single(name, Op::PadLike, &[x, like])
    }

    /// A group norm with its per-channel scale and shift given as host data (stored as `<name>.weight`,
    /// `<name>.bias`).
    pub fn group_norm(
        &mut self,
        name: &str,
        x: &str,
        params: ops::GroupNorm,
        weight: Vec<f32>,
        bias: Vec<f32>,
    ) -> Result<String> {
        let (w, b) = (format!("{name}.weight"), format!("{name}.bias"));
        self.weights.insert(&w, vec![params.channels], weight)?;
        self.weights.insert(&b, vec![params.channels], bias)?;
        Ok(self.group_norm_named(name, x, params, &w, &b))
    }

    /// A group norm whose scale and shift are stored under `weight` and `bias`.
    pub fn group_norm_named(
        &mut self,
        name: &str,
        x: &str,
        params: ops::GroupNorm,
        weight: &str,
        bias: &str,
    ) -> String {
        let weights = ConvWeightNames {
            weight: weight.to_string(),
            bias: Some(bias.to_string()),
            batch_norm: None,
        };
        self.single(name, Op::GroupNorm { params, weights }, &[x])
    }

    pub fn max_pool2d(&mut self, name: &str, x: &str, mut params: ops::MaxPool2d) -> String {
        params.return_indices = false;
        self.single(name, Op::MaxPool2d { params }, &[x])
    }

    /// Max pooling that also returns the indices; returns (values, indices) tensor names.
    pub fn max_pool2d_with_indices(
        &mut self,
        name: &str,
        x: &str,
        mut params: ops::MaxPool2d,
    ) -> (String, String) {
        params.return_indices = true;
        let indices = format!("{name}.indices");
        self.node(name, Op::MaxPool2d { params }, &[x], &[name, &indices]);
        (name.to_string(), indices)
    }

    pub fn max_unpool2d(
        &mut self,
        name: &str,
        values: &str,
        indices: &str,
        params: ops::MaxUnpool2d,
    ) -> String {
        self.single(name, Op::MaxUnpool2d { params }, &[values, indices])
    }

    pub fn avg_pool2d(&mut self, name: &str, x: &str, params: ops::AvgPool2d) -> String {
        self.single(name, Op::AvgPool2d { params }, &[x])
    }

    pub fn adaptive_avg_pool2d(&mut self, name: &str, x: &str, output: [usize; 2]) -> String {
        self.single(
            name,
            Op::AdaptiveAvgPool2d {
                params: ops::AdaptiveAvgPool2d { output },
            },
            &[x],
        )
    }

    pub fn resize(&mut self, name: &str, x: &str, params: ops::Resize) -> String {
        self.single(name, Op::Resize { params }, &[x])
    }

    /// Resizes `x` to the height and width of `like` (any tensor of the graph), whatever size the graph runs at.
    pub fn resize_like(
        &mut self,
        name: &str,
        x: &str,
        like: &str,
        mode: ops::ResizeMode,
    ) -> String {
        let params = ops::Resize {
            mode,
            target: ops::ResizeTarget::Like,
        };
        self.single(name, Op::Resize { params }, &[x, like])
    }

    pub fn softmax(&mut self, name: &str, x: &str) -> String {
        self.single(name, Op::Softmax, &[x])
    }

    pub fn argmax(&mut self, name: &str, x: &str) -> String {
        self.single(name, Op::Argmax, &[x])
    }

    pub fn concat(&mut self, name: &str, inputs: &[&str]) -> String {
        self.single(name, Op::Concat, inputs)
    }

    pub fn binary(&mut self, name: &str, a: &str, b: &str, params: Binary) -> String {
        self.single(name, Op::Binary { params }, &[a, b])
    }

    pub fn add(&mut self, name: &str, a: &str, b: &str) -> String {
        self.binary(name, a, b, Binary::new(BinaryOp::Add))
    }

    pub fn mul(&mut self, name: &str, a: &str, b: &str) -> String {
        self.binary(name, a, b, Binary::new(BinaryOp::Mul))
    }

    pub fn activation(&mut self, name: &str, x: &str, activation: Activation) -> String {
        self.single(
            name,
            Op::Unary {
                params: Unary { activation },
            },
            &[x],
        )
    }

    /// An elementwise function with parameters.
    pub fn pointwise(&mut self, name: &str, x: &str, params: ops::Pointwise) -> String {
        self.single(name, Op::Pointwise { params }, &[x])
    }

    /// ONNX Slice / Pad.
    pub fn slice_pad(&mut self, name: &str, x: &str, params: ops::SlicePad) -> String {
        self.single(name, Op::SlicePad { params }, &[x])
    }

    /// A node with no inputs whose output is the weight tensor `weight_name` (already stored) as an activation of
    /// NCHW `shape`.
    pub fn constant(&mut self, name: &str, weight_name: &str, shape: [usize; 4]) -> String {
        let op = Op::Constant {
            weight: weight_name.to_string(),
            shape,
        };
        self.single(name, op, &[])
    }

    /// A constant given as host data, stored as `<name>.weight` with `shape`.
    pub fn constant_values(
        &mut self,
        name: &str,
        shape: [usize; 4],
        values: Vec<f32>,
    ) -> Result<String> {
        let weight = format!("{name}.weight");
        self.weights.insert(&weight, shape.to_vec(), values)?;
        Ok(self.constant(name, &weight, shape))
    }

    /// Finishes the graph with `outputs`, checking its structure (shapes are checked when a plan is compiled).
    pub fn finish(mut self, outputs: &[&str]) -> Result<Model> {
        self.graph.outputs = outputs.iter().map(|s| s.to_string()).collect();
        self.graph.topological_order()?;
        Ok(Model::new(self.graph, self.weights))
    }
}
