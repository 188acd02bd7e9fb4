//! Lowering: each scheduled node becomes one or more kernels with the tensors and weights they bind.

use super::WeightCache;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Kernel, Precision};
use crate::graph::{Node, Op, TensorInfo};
use crate::kernels::{conv2d, conv_transpose2d, elementwise, pool, resize, softmax};
use crate::model::Model;
use std::collections::HashMap;
use std::sync::Arc;

/// What a kernel binding refers to.
pub(crate) enum Bind {
    /// An activation tensor, by name.
    Tensor(String),
    /// A weight buffer uploaded at compile time (shared between plans).
    Weight(Arc<wgpu::Buffer>),
    /// Nothing: an absent optional input.
    Placeholder,
}

/// A kernel and what to bind to its outputs and inputs.
pub(crate) struct Call {
    pub kernel: Kernel,
    pub outputs: Vec<String>,
    pub inputs: Vec<Bind>,
}

fn tensors(names: &[String]) -> Vec<Bind> {
    names.iter().map(|n| Bind::Tensor(n.clone())).collect()
}

/// What lowering any node needs: the GPU, the model's weights and their uploads, inferred tensors, planned concat
/// offsets, and the storage precision of every float kernel.
pub(crate) struct Context<'a> {
    pub gpu: &'a Gpu,
    pub model: &'a Model,
    pub weights: &'a WeightCache,
    pub infos: &'a HashMap<String, TensorInfo>,
    pub concat_offsets: &'a HashMap<String, Vec<usize>>,
    pub precision: Precision,
}

/// The kernels of one node, in recording order.
pub(crate) fn lower(cx: &Context<'_>, node: &Node) -> Result<Vec<Call>> {
    let Context {
        gpu,
        model,
        weights,
        infos,
        concat_offsets,
        precision,
    } = *cx;
    let label = node.name.as_str();
    let shape = |name: &String| infos[name].shape;
    let x = || shape(&node.inputs[0]);
    let single = |kernel: Kernel| {
        vec![Call {
            kernel,
            outputs: node.outputs.clone(),
            inputs: tensors(&node.inputs),
        }]
    };
    Ok(match &node.op {
        Op::Conv2d {
            params,
            weights: names,
        } => {
            let kernel =
                conv2d::conv2d(gpu, label, params, x(), precision)?.with_flops(params.flops(x()));
            let (w, b) = weights.get_or_upload(names, precision, || {
                let host = model.conv_weights(names, params.weight_shape(), params.out_channels)?;
                conv2d::upload_weights(gpu, label, params, &host, precision)
            })?;
            let residual = match params.residual {
                true => Bind::Tensor(node.inputs[1].clone()),
                false => Bind::Placeholder,
            };
            let inputs = vec![
                Bind::Tensor(node.inputs[0].clone()),
                Bind::Weight(w),
                Bind::Weight(b),
                residual,
            ];
            vec![Call {
                kernel,
                outputs: node.outputs.clone(),
                inputs,
            }]
        }
        Op::ConvTranspose2d {
            params,
            weights: names,
        } => {
            let kernel = conv_transpose2d::conv_transpose2d(gpu, label, params, x(), precision)?
                .with_flops(params.flops(x()));
            let (w, b) = weights.get_or_upload(names, precision, || {
                let host = model.conv_weights(names, params.weight_shape(), params.out_channels)?;
                conv_transpose2d::upload_weights(gpu, label, params, &host, precision)
            })?;
            let inputs = vec![
                Bind::Tensor(node.inputs[0].clone()),
                Bind::Weight(w),
                Bind::Weight(b),
            ];
            vec![Call {
                kernel,
                outputs: node.outputs.clone(),
                inputs,
            }]
        }
        Op::MaxPool2d { params } => single(pool::max_pool2d(gpu, label, params, x(), precision)?),
        Op::AvgPool2d { params } => single(pool::avg_pool2d(gpu, label, params, x(), precision)?),
        Op::AdaptiveAvgPool2d { params } => single(pool::adaptive_avg_pool2d(
            gpu,
            label,
            params,
            x(),
            precision,
        )?),
        Op::MaxUnpool2d { params } => {
            let kernels = pool::max_unpool2d(gpu, label, params, x(), precision)?;
            vec![
                Call {
                    kernel: kernels.zero,
                    outputs: node.outputs.clone(),
                    inputs: vec![],
                },
                Call {
                    kernel: kernels.scatter,
                    outputs: node.outputs.clone(),
                    inputs: tensors(&node.inputs),
                },
            ]
        }
        Op::Resize { params } => {
            let like = node.inputs.get(1).map(shape);
            vec![Call {
                kernel: resize::resize(gpu, label, &params.resolve(like)?, x(), precision)?,
                outputs: node.outputs.clone(),
                // The size source is only read for its shape.
                inputs: vec![Bind::Tensor(node.inputs[0].clone())],
            }]
        }
        Op::Softmax => single(softmax::softmax(
            gpu,
            label,
            &crate::ops::Softmax,
            x(),
            precision,
        )?),
        Op::Argmax => single(softmax::argmax(
            gpu,
            label,
            &crate::ops::Argmax,
            x(),
            precision,
        )?),
        Op::Binary { params } => single(elementwise::binary(
            gpu,
            label,
            params,
            x(),
            shape(&node.inputs[1]),
            precision,
        )?),
        Op::Unary { params } => {
            single(elementwise::activation(gpu, label, params, x(), precision)?)
        }
        Op::Concat => {
            let offsets = concat_offsets.get(&node.name).ok_or_else(|| {
                Error::Model(format!("node {label:?}: concat offsets were not planned"))
            })?;
            let dest = shape(&node.outputs[0]);
            node.inputs
                .iter()
                .zip(offsets)
                .map(|(input, &offset)| {
                    Ok(Call {
                        kernel: elementwise::concat_part(
                            gpu,
                            label,
                            shape(input),
                            dest,
                            offset,
                            precision,
                        )?,
                        outputs: node.outputs.clone(),
                        inputs: vec![Bind::Tensor(input.clone())],
                    })
                })
                .collect::<Result<_>>()?
        }
    })
}
