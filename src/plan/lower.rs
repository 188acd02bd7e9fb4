//! Lowering: each scheduled node becomes one or more kernels with the tensors, weights and per-node scratch
//! buffers they bind.

use super::tune::{ChoiceSource, ConvChoice, Tuner};
use super::WeightCache;
use crate::error::{Error, Result};
use crate::gpu::TensorData;
use crate::gpu::{Gpu, Kernel, Precision};
use crate::graph::{ConvWeightNames, Node, Op, TensorInfo};
use crate::kernels::conv2d::Path;
use crate::kernels::{
    conv2d, conv_transpose2d, dw_pointwise, elementwise, encode, norm, pad, pool, preprocess,
    resize, softmax,
};
use crate::model::Model;
use crate::ops::Conv2d;
use crate::ops::{Encoding, ImageSource};
use crate::tensor::Shape;
use std::cell::RefCell;
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
    /// The node's scratch buffer of this index in [`Lowered::scratch`]: written and read by the node's own kernels
    /// only, so the memory plan keeps it live for the node's step alone.
    Scratch(usize),
    /// The texture a run reads its frame from (a preprocess node with a texture source).
    Texture,
    /// The origin (x, y: two u32) of the frame's region in that texture, written per run.
    Origin,
}

/// A kernel and what to bind to its outputs and inputs.
pub(crate) struct Call {
    pub kernel: Kernel,
    pub outputs: Vec<Bind>,
    pub inputs: Vec<Bind>,
}

/// The kernels of one node, in recording order, and the bytes of each scratch buffer they share.
pub(crate) struct Lowered {
    pub calls: Vec<Call>,
    pub scratch: Vec<u64>,
}

fn tensors(names: &[String]) -> Vec<Bind> {
    names.iter().map(|n| Bind::Tensor(n.clone())).collect()
}

/// What lowering any node needs: the GPU, the model's weights and their uploads, inferred tensors, planned concat
/// offsets, the storage precision of every float kernel, and the adapter's parallelism.
pub(crate) struct Context<'a> {
    pub gpu: &'a Gpu,
    pub model: &'a Model,
    pub weights: &'a WeightCache,
    pub infos: &'a HashMap<String, TensorInfo>,
    pub concat_offsets: &'a HashMap<String, Vec<usize>>,
    /// The depthwise conv inside each fused 1 x 1 conv node, by the fused node's name.
    pub depthwise: &'a HashMap<String, Node>,
    pub precision: Precision,
    /// Whether the tiled and split-K convs multiply in f16 (f16 storage only).
    pub f16_math: bool,
    /// Threads the adapter runs at once, for [`conv2d::choose`].
    pub parallelism: u64,
    /// Chooses conv kernels by timing them, where the plan is tuned.
    pub tuner: Option<&'a Tuner>,
    /// Each conv node's kernel and how it was chosen, in lowering order.
    pub conv_choices: RefCell<Vec<ConvChoice>>,
}

impl Context<'_> {
    /// The kernel for conv `node` on `input`: the tuner's choice, else the heuristics' (`ATROUS_WINOGRAD` heeded),
    /// with the plan's math; recorded in [`Context::conv_choices`].
    fn conv_path(&self, node: &str, p: &Conv2d, input: Shape) -> Result<Path> {
        let choice = match self.tuner {
            Some(tuner) => tuner.choose(self, node, p, input)?,
            None => {
                let path = conv2d::choose_on(
                    self.gpu,
                    p,
                    input,
                    self.parallelism,
                    conv2d::winograd_policy(),
                );
                ConvChoice {
                    node: node.to_string(),
                    key: String::new(),
                    path: path.with_f16_math(self.f16_math),
                    source: ChoiceSource::Heuristic,
                }
            }
        };
        let path = choice.path;
        self.conv_choices.borrow_mut().push(choice);
        Ok(path)
    }
}

/// Lowers one node.
pub(crate) fn lower(cx: &Context<'_>, node: &Node) -> Result<Lowered> {
    let Context {
        gpu,
        model,
        weights,
        infos,
        concat_offsets,
        depthwise,
        precision,
        ..
    } = *cx;
    let label = node.name.as_str();
    let shape = |name: &String| infos[name].shape;
    let x = || shape(&node.inputs[0]);
    let outputs = || tensors(&node.outputs);
    // Binds the tensors the kernel reads: a size source (`like`) is read for its shape only, at compile time.
    let single = |kernel: Kernel| {
        vec![Call {
            kernel,
            outputs: outputs(),
            inputs: tensors(node.data_inputs()),
        }]
    };
    let calls = match &node.op {
        Op::Conv2d {
            params,
            weights: names,
        } if depthwise.contains_key(&node.name) => {
            vec![lower_dw_pointwise(
                cx,
                node,
                &depthwise[&node.name],
                params,
                names,
            )?]
        }
        Op::Conv2d {
            params,
            weights: names,
        } => {
            let path = cx.conv_path(label, params, x())?;
            let kernels = conv2d::conv2d_on(gpu, label, params, x(), path, precision)?
                .with_flops(params.flops(x()));
            // Weights in the layout the path reads: the default one is shared with the fused depthwise arm.
            let (w, b) = match path.layout() {
                layout if layout == conv2d::Layout::default_for(params) => {
                    conv2d_weights(cx, label, params, names)?
                }
                layout => {
                    let key = format!("{layout:?}");
                    weights.get_or_upload_as(
                        names,
                        &key,
                        path.weight_precision(precision),
                        || {
                            let host = model.conv_weights(
                                names,
                                params.weight_shape(),
                                params.out_channels,
                            )?;
                            conv2d::upload_weights_for(gpu, label, params, &host, path, precision)
                        },
                    )?
                }
            };
            let residual = residual_binding(node, params);
            let input = Bind::Tensor(node.inputs[0].clone());
            let scratch = kernels.scratch_bytes();
            let calls = match kernels {
                conv2d::Conv2dKernels::Direct(kernel) => vec![Call {
                    kernel,
                    outputs: outputs(),
                    inputs: vec![input, Bind::Weight(w), Bind::Weight(b), residual],
                }],
                conv2d::Conv2dKernels::SplitK(split) => vec![
                    Call {
                        kernel: split.partial,
                        outputs: vec![Bind::Scratch(0)],
                        inputs: vec![input, Bind::Weight(w)],
                    },
                    Call {
                        kernel: split.reduce,
                        outputs: outputs(),
                        inputs: vec![Bind::Scratch(0), Bind::Weight(b), residual],
                    },
                ],
                // Scratch 0: the transformed input; 1: the products. Every pass reuses both.
                conv2d::Conv2dKernels::Winograd(wino) => {
                    let mut calls = Vec::new();
                    for pass in wino.passes {
                        calls.push(Call {
                            kernel: pass.input,
                            outputs: vec![Bind::Scratch(0)],
                            inputs: vec![Bind::Tensor(node.inputs[0].clone())],
                        });
                        calls.push(Call {
                            kernel: pass.gemm,
                            outputs: vec![Bind::Scratch(1)],
                            inputs: vec![Bind::Scratch(0), Bind::Weight(w.clone())],
                        });
                        calls.push(Call {
                            kernel: pass.output,
                            outputs: outputs(),
                            inputs: vec![
                                Bind::Scratch(1),
                                Bind::Weight(b.clone()),
                                residual_binding(node, params),
                            ],
                        });
                    }
                    calls
                }
            };
            return Ok(Lowered { calls, scratch });
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
                outputs: outputs(),
                inputs,
            }]
        }
        Op::PadLike => single(pad::pad_like(
            gpu,
            label,
            x(),
            shape(&node.inputs[1]),
            precision,
        )?),
        Op::GroupNorm {
            params,
            weights: names,
        } => {
            let kernel = norm::group_norm(gpu, label, params, x(), precision)?;
            let (w, b) = weights.get_or_upload(names, precision, || {
                let (w, b) = model.affine_weights(names, params.channels)?;
                norm::upload_weights(gpu, label, params, w, b)
            })?;
            vec![Call {
                kernel,
                outputs: outputs(),
                inputs: vec![
                    Bind::Tensor(node.inputs[0].clone()),
                    Bind::Weight(w),
                    Bind::Weight(b),
                ],
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
                    outputs: outputs(),
                    inputs: vec![],
                },
                Call {
                    kernel: kernels.scatter,
                    outputs: outputs(),
                    inputs: tensors(&node.inputs),
                },
            ]
        }
        Op::Resize { params } => {
            let like = node.inputs.get(1).map(shape);
            single(resize::resize(
                gpu,
                label,
                &params.resolve(like)?,
                x(),
                precision,
            )?)
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
        Op::Pointwise { params } => {
            single(elementwise::pointwise(gpu, label, params, x(), precision)?)
        }
        Op::SlicePad { params } => single(pad::slice_pad(gpu, label, params, x(), precision)?),
        Op::Constant { weight, .. } => {
            let out = shape(&node.outputs[0]);
            let kernel = elementwise::copy(gpu, label, out, precision)?;
            let values = weights.get_or_upload_constant(weight, precision, || {
                let t = model.weights.get_reshaped(weight, out.dims())?;
                check_f16_range(label, &t.data, precision)?;
                gpu.upload_floats(&format!("{label} ({weight})"), &t.data, precision)
            })?;
            vec![Call {
                kernel,
                outputs: outputs(),
                inputs: vec![Bind::Weight(values)],
            }]
        }
        Op::Preprocess { params, source } => match *source {
            ImageSource::Pixels => {
                let pixels = shape(&node.inputs[0]);
                let image = source.layout(&[pixels])?;
                single(preprocess::preprocess(
                    gpu, label, params, image, precision,
                )?)
            }
            ImageSource::Texture {
                width,
                height,
                texels,
            } => vec![Call {
                kernel: preprocess::preprocess_texture(
                    gpu,
                    label,
                    params,
                    (width, height),
                    texels,
                    precision,
                )?,
                outputs: outputs(),
                inputs: vec![Bind::Origin, Bind::Texture],
            }],
        },
        Op::Normalize { params } => {
            let kernel = preprocess::normalize(gpu, label, params, x(), precision)?;
            let stats = preprocess::normalize_stats(params);
            let uploaded = gpu.upload_f32(&format!("{label} stats"), &stats)?;
            let mut inputs = tensors(&node.inputs);
            inputs.push(Bind::Weight(Arc::new(uploaded)));
            vec![Call {
                kernel,
                outputs: outputs(),
                inputs,
            }]
        }
        Op::Threshold { params } => single(softmax::threshold(gpu, label, params, x(), precision)?),
        Op::Encode { params } => {
            let kernel = encode::encode(gpu, label, params, x(), precision)?;
            let mut inputs = tensors(&node.inputs);
            if let Encoding::Colours { palette, .. } = &params.encoding {
                let words = encode::palette_words(palette);
                let shape = crate::tensor::Shape::new(1, 1, 1, words.len());
                let uploaded =
                    gpu.upload(&format!("{label} palette"), shape, TensorData::U32(&words))?;
                inputs.push(Bind::Weight(Arc::new(uploaded.buffer)));
            }
            vec![Call {
                kernel,
                outputs: outputs(),
                inputs,
            }]
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
                        outputs: outputs(),
                        inputs: vec![Bind::Tensor(input.clone())],
                    })
                })
                .collect::<Result<_>>()?
        }
    };
    Ok(Lowered {
        calls,
        scratch: Vec::new(),
    })
}

/// A fused depthwise + 1 x 1 conv node: `node` is the 1 x 1 conv (`pw`) reading the depthwise conv's input.
fn lower_dw_pointwise(
    cx: &Context<'_>,
    node: &Node,
    dw_node: &Node,
    pw: &crate::ops::Conv2d,
    pw_names: &ConvWeightNames,
) -> Result<Call> {
    let (gpu, precision) = (cx.gpu, cx.precision);
    let Op::Conv2d {
        params: dw,
        weights: dw_names,
    } = &dw_node.op
    else {
        return Err(Error::Model(format!(
            "node {:?}: the fused depthwise node {:?} is not a conv2d",
            node.name, dw_node.name
        )));
    };
    let input = cx.infos[&node.inputs[0]].shape;
    let kernel = dw_pointwise::dw_pointwise(gpu, &node.name, dw, pw, input, precision)?;
    let (dw_w, dw_b) = conv2d_weights(cx, &dw_node.name, dw, dw_names)?;
    let (pw_w, pw_b) = conv2d_weights(cx, &node.name, pw, pw_names)?;
    Ok(Call {
        kernel,
        outputs: tensors(&node.outputs),
        inputs: vec![
            Bind::Tensor(node.inputs[0].clone()),
            Bind::Weight(dw_w),
            Bind::Weight(dw_b),
            Bind::Weight(pw_w),
            Bind::Weight(pw_b),
            residual_binding(node, pw),
        ],
    })
}

/// A conv2d's folded weights and bias, uploaded once per weight names and precision.
fn conv2d_weights(
    cx: &Context<'_>,
    label: &str,
    p: &crate::ops::Conv2d,
    names: &ConvWeightNames,
) -> Result<(Arc<wgpu::Buffer>, Arc<wgpu::Buffer>)> {
    cx.weights.get_or_upload(names, cx.precision, || {
        let host = cx
            .model
            .conv_weights(names, p.weight_shape(), p.out_channels)?;
        conv2d::upload_weights(cx.gpu, label, p, &host, cx.precision)
    })
}

/// What a conv2d node's residual slot binds: its second input, unless it has none or reads it in place.
fn residual_binding(node: &Node, p: &crate::ops::Conv2d) -> Bind {
    match p.residual_bound_apart() {
        true => Bind::Tensor(node.inputs[1].clone()),
        false => Bind::Placeholder,
    }
}

/// A constant beyond f16's range would become an infinity in an f16 plan: refused by name, as folded conv weights
/// are.
fn check_f16_range(label: &str, values: &[f32], precision: Precision) -> Result<()> {
    let max = f32::from(half::f16::MAX);
    match values.iter().find(|v| v.is_finite() && v.abs() > max) {
        Some(v) if precision == Precision::F16 => Err(Error::Model(format!(
            "node {label:?} (constant): value {v} is beyond f16's range (+-{max}); compile this model in f32"
        ))),
        _ => Ok(()),
    }
}
