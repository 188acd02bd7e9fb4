//! The CPU executor: runs a graph node by node with the reference ops, unfused, in f64 arithmetic per op.

use crate::error::{Error, Result};
use crate::graph::{Graph, Op};
use crate::model::Model;
use crate::ops::ImageSource;
use crate::plan::Output;
use crate::tensor::{Shape, Tensor};
use std::collections::HashMap;

/// Runs `model` on `inputs` and returns every graph output.
pub fn run_graph(
    model: &Model,
    inputs: &HashMap<String, Tensor>,
) -> Result<HashMap<String, Output>> {
    let inputs = inputs
        .iter()
        .map(|(n, t)| (n.clone(), Output::F32(t.clone())))
        .collect();
    run_graph_values(model, &model.graph, inputs)
}

/// Runs `graph` over `model`'s weights on `inputs` (f32 tensors, or u32 packed pixels) and returns every graph
/// output.
pub fn run_graph_values(
    model: &Model,
    graph: &Graph,
    inputs: HashMap<String, Output>,
) -> Result<HashMap<String, Output>> {
    let shapes: HashMap<String, Shape> =
        inputs.iter().map(|(n, t)| (n.clone(), t.shape())).collect();
    let (order, _) = graph.infer(&shapes)?;
    let mut values = inputs;
    for i in order {
        let node = &graph.nodes[i];
        let f32_input = |k: usize| -> Result<&Tensor> {
            match &values[&node.inputs[k]] {
                Output::F32(t) => Ok(t),
                Output::U32 { .. } => Err(Error::Model(format!(
                    "node {:?}: input {k} is not f32",
                    node.name
                ))),
            }
        };
        let x = || f32_input(0);
        let outs: Vec<Output> = match &node.op {
            Op::Conv2d { params, weights } => {
                let w = model.conv_weights(weights, params.weight_shape(), params.out_channels)?;
                let residual = if params.residual {
                    Some(f32_input(1)?)
                } else {
                    None
                };
                vec![Output::F32(super::conv2d(params, x()?, &w, residual)?)]
            }
            Op::ConvTranspose2d { params, weights } => {
                let w = model.conv_weights(weights, params.weight_shape(), params.out_channels)?;
                vec![Output::F32(super::conv_transpose2d(params, x()?, &w)?)]
            }
            Op::MaxPool2d { params } => {
                let (values, indices) = super::max_pool2d(params, x()?)?;
                let shape = values.shape;
                let mut outs = vec![Output::F32(values)];
                outs.extend(indices.map(|data| Output::U32 { shape, data }));
                outs
            }
            Op::AvgPool2d { params } => vec![Output::F32(super::avg_pool2d(params, x()?)?)],
            Op::AdaptiveAvgPool2d { params } => {
                vec![Output::F32(super::adaptive_avg_pool2d(params, x()?)?)]
            }
            Op::MaxUnpool2d { params } => {
                let indices = match &values[&node.inputs[1]] {
                    Output::U32 { data, .. } => data,
                    Output::F32(_) => {
                        return Err(Error::Model(format!(
                            "node {:?}: indices are not u32",
                            node.name
                        )))
                    }
                };
                vec![Output::F32(super::max_unpool2d(params, x()?, indices)?)]
            }
            Op::Resize { params } => {
                let like = node.inputs.get(1).map(|n| values[n].shape());
                vec![Output::F32(super::resize(&params.resolve(like)?, x()?)?)]
            }
            Op::Softmax => vec![Output::F32(super::softmax(x()?)?)],
            Op::Argmax => {
                let x = x()?;
                vec![Output::U32 {
                    shape: x.shape.with_c(1),
                    data: super::argmax(x)?,
                }]
            }
            Op::Concat => {
                let parts = (0..node.inputs.len())
                    .map(f32_input)
                    .collect::<Result<Vec<_>>>()?;
                vec![Output::F32(super::concat(&parts)?)]
            }
            Op::Binary { params } => vec![Output::F32(super::binary(params, x()?, f32_input(1)?)?)],
            Op::Unary { params } => vec![Output::F32(super::unary(params, x()?)?)],
            Op::PadLike => vec![Output::F32(super::pad_like(
                x()?,
                values[&node.inputs[1]].shape(),
            )?)],
            Op::GroupNorm { params, weights } => {
                let (w, b) = model.affine_weights(weights, params.channels)?;
                vec![Output::F32(super::group_norm(params, x()?, &w, &b)?)]
            }
            Op::Pointwise { params } => vec![Output::F32(super::pointwise(params, x()?)?)],
            Op::SlicePad { params } => vec![Output::F32(super::slice_pad(params, x()?)?)],
            Op::Constant { weight, shape } => {
                vec![Output::F32(model.weights.get_reshaped(weight, *shape)?)]
            }
            Op::Preprocess { params, source } => {
                let pixels = match (source, node.inputs.first().map(|n| &values[n])) {
                    (ImageSource::Pixels, Some(Output::U32 { data, .. })) => data,
                    _ => {
                        return Err(Error::Model(format!(
                            "node {:?}: the CPU reference preprocesses packed pixels only",
                            node.name
                        )))
                    }
                };
                let layout = source.layout(&[values[&node.inputs[0]].shape()])?;
                let bytes: Vec<u8> = pixels.iter().flat_map(|w| w.to_le_bytes()).collect();
                vec![Output::F32(super::preprocess(params, layout, &bytes)?)]
            }
            Op::Normalize { params } => match &values[&node.inputs[0]] {
                Output::U32 { shape, data } => {
                    let raw: Vec<f32> = data.iter().map(|&w| f32::from_bits(w)).collect();
                    vec![Output::F32(super::normalize(params, *shape, &raw)?)]
                }
                Output::F32(_) => {
                    return Err(Error::Model(format!(
                        "node {:?}: normalize reads f32 bits in a u32 tensor",
                        node.name
                    )))
                }
            },
            Op::Threshold { params } => {
                let x = x()?;
                vec![Output::U32 {
                    shape: x.shape,
                    data: super::threshold(x, params.value)?,
                }]
            }
            Op::Encode { params } => {
                let input = &values[&node.inputs[0]];
                let data = super::encode(params, input)?;
                vec![Output::U32 {
                    shape: params.output_shape(input.shape())?,
                    data,
                }]
            }
        };
        for (name, value) in node.outputs.iter().zip(outs) {
            values.insert(name.clone(), value);
        }
    }
    Ok(graph
        .outputs
        .iter()
        .map(|n| (n.clone(), values[n].clone()))
        .collect())
}
