//! Graph rewrites that move work into convolution epilogues: a following activation (into group norms too), a
//! residual add, and writing straight into a concatenation's output at a channel offset; a residual conv writing
//! over its residual where nothing reads it later; a depthwise conv run inside the 1 x 1 conv that reads it; and
//! pads that change nothing skipped. Each rewrite keeps the graph's results exactly.

use crate::graph::{Graph, Node, Op, TensorInfo};
use crate::kernels::dw_pointwise;
use crate::ops::{Activation, BinaryOp};
use std::collections::HashMap;

/// How often each tensor is read; graph outputs count as a read.
fn readers(nodes: &[Node], outputs: &[String]) -> HashMap<String, usize> {
    let mut count = HashMap::new();
    for name in nodes.iter().flat_map(|n| &n.inputs).chain(outputs) {
        *count.entry(name.clone()).or_insert(0) += 1;
    }
    count
}

/// The index of the node producing `tensor` when it is a conv2d or conv_transpose2d read exactly once (by the node
/// being fused).
fn sole_conv_producer(
    nodes: &[Node],
    readers: &HashMap<String, usize>,
    tensor: &str,
) -> Option<usize> {
    if readers.get(tensor) != Some(&1) {
        return None;
    }
    nodes.iter().position(|n| {
        n.outputs.len() == 1
            && n.outputs[0] == tensor
            && match &n.op {
                Op::Conv2d { params, .. } => params.out_channels_total.is_none(),
                Op::ConvTranspose2d { params, .. } => params.out_channels_total.is_none(),
                _ => false,
            }
    })
}

/// Nodes in execution order, fused or not, plus the channel offsets at which each remaining concat node copies its
/// inputs, and the depthwise conv that runs inside each fused 1 x 1 conv (both by node name).
pub(crate) struct Schedule {
    pub nodes: Vec<Node>,
    pub concat_offsets: HashMap<String, Vec<usize>>,
    pub depthwise: HashMap<String, Node>,
}

/// The schedule for `graph` in topological `order`; with `fuse`, epilogue fusion is applied, and depthwise convs
/// run inside 1 x 1 convs where the device has `storage_buffers` enough for that kernel.
pub(crate) fn schedule(
    graph: &Graph,
    order: &[usize],
    infos: &HashMap<String, TensorInfo>,
    fuse: bool,
    storage_buffers: u32,
) -> Schedule {
    let mut nodes: Vec<Node> = order.iter().map(|&i| graph.nodes[i].clone()).collect();
    let (concat_offsets, depthwise) = if fuse {
        skip_identity_pads(&mut nodes, graph, infos);
        fuse_residual_adds(&mut nodes, &graph.outputs, infos);
        fuse_activations(&mut nodes, &graph.outputs);
        let offsets = fuse_concats(&mut nodes, &graph.outputs, infos);
        let depthwise = match storage_buffers >= dw_pointwise::STORAGE_BINDINGS {
            true => fuse_depthwise_pointwise(&mut nodes, &graph.outputs),
            false => HashMap::new(),
        };
        // After the depthwise fusion: a fused conv reads the depthwise conv's input later than it did.
        residuals_in_place(&mut nodes, graph);
        (offsets, depthwise)
    } else {
        (HashMap::new(), HashMap::new())
    };
    let mut concat_offsets = concat_offsets;
    for node in nodes.iter().filter(|n| matches!(n.op, Op::Concat)) {
        concat_offsets.entry(node.name.clone()).or_insert_with(|| {
            node.inputs
                .iter()
                .scan(0, |offset, t| {
                    let here = *offset;
                    *offset += infos[t].shape.c;
                    Some(here)
                })
                .collect()
        });
    }
    Schedule {
        nodes,
        concat_offsets,
        depthwise,
    }
}

/// A `pad_like` whose input already has the size of `like` is a copy: later nodes read its input instead. (UNet
/// pads its upsampled maps only where the input size is not a multiple of 16.)
fn skip_identity_pads(nodes: &mut Vec<Node>, graph: &Graph, infos: &HashMap<String, TensorInfo>) {
    let mut k = 0;
    while k < nodes.len() {
        let node = &nodes[k];
        let identity = matches!(node.op, Op::PadLike)
            && infos[&node.inputs[0]].shape == infos[&node.outputs[0]].shape
            && !graph.outputs.contains(&node.outputs[0]);
        if !identity {
            k += 1;
            continue;
        }
        let (input, output) = (node.inputs[0].clone(), node.outputs[0].clone());
        nodes.remove(k);
        for name in nodes[k..].iter_mut().flat_map(|n| &mut n.inputs) {
            if *name == output {
                *name = input.clone();
            }
        }
    }
}

/// `add(conv(x), r)` -> conv with residual `r`, run where the add was (both operands are ready there).
fn fuse_residual_adds(
    nodes: &mut Vec<Node>,
    outputs: &[String],
    infos: &HashMap<String, TensorInfo>,
) {
    let mut i = 0;
    while i < nodes.len() {
        let fused = match &nodes[i].op {
            Op::Binary { params } if params.op == BinaryOp::Add => {
                let (a, b) = (&nodes[i].inputs[0], &nodes[i].inputs[1]);
                let same_shape = infos[a].shape == infos[b].shape;
                let readers = readers(nodes, outputs);
                let candidate = |t: &str| {
                    sole_conv_producer(nodes, &readers, t).filter(|&c| {
                        matches!(&nodes[c].op, Op::Conv2d { params, .. } if !params.residual && params.activation == Activation::None)
                    })
                };
                match (same_shape, candidate(a), candidate(b)) {
                    (true, Some(c), _) => Some((c, b.clone(), params.activation)),
                    (true, None, Some(c)) => Some((c, a.clone(), params.activation)),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some((c, residual, activation)) = fused {
            let mut conv = nodes[c].clone();
            if let Op::Conv2d { params, .. } = &mut conv.op {
                params.residual = true;
                params.activation = activation;
            }
            conv.inputs.push(residual);
            conv.outputs = nodes[i].outputs.clone();
            nodes[i] = conv;
            nodes.remove(c);
            // Index i now holds the next node (c < i was removed).
        } else {
            i += 1;
        }
    }
}

/// Whether `op` applies an epilogue activation that is still free to take one.
fn takes_activation(op: &Op) -> bool {
    match op {
        Op::Conv2d { params, .. } => {
            params.out_channels_total.is_none() && params.activation == Activation::None
        }
        Op::GroupNorm { params, .. } => params.activation == Activation::None,
        _ => false,
    }
}

fn set_activation(op: &mut Op, activation: Activation) {
    match op {
        Op::Conv2d { params, .. } => params.activation = activation,
        Op::GroupNorm { params, .. } => params.activation = activation,
        _ => {}
    }
}

/// `act(conv(x))` -> conv with that activation; `act(group_norm(x))` likewise.
fn fuse_activations(nodes: &mut Vec<Node>, outputs: &[String]) {
    let mut i = 0;
    while i < nodes.len() {
        let fused = match &nodes[i].op {
            Op::Unary { params } => {
                let readers = readers(nodes, outputs);
                let input = &nodes[i].inputs[0];
                let producer = nodes
                    .iter()
                    .position(|n| n.outputs.len() == 1 && &n.outputs[0] == input)
                    .filter(|_| readers.get(input) == Some(&1));
                producer
                    .filter(|&c| takes_activation(&nodes[c].op))
                    .map(|c| (c, params.activation))
            }
            _ => None,
        };
        match fused {
            Some((c, activation)) => {
                set_activation(&mut nodes[c].op, activation);
                nodes[c].outputs = nodes[i].outputs.clone();
                nodes.remove(i);
            }
            None => i += 1,
        }
    }
}

/// `concat(conv_a(x), conv_b(y), z)` -> the convs write into the concat's output at their channel offsets. The
/// concat node keeps only the inputs it must still copy, with their offsets in the returned map; a concat left with
/// nothing to copy is removed.
fn fuse_concats(
    nodes: &mut Vec<Node>,
    outputs: &[String],
    infos: &HashMap<String, TensorInfo>,
) -> HashMap<String, Vec<usize>> {
    let mut copy_offsets = HashMap::new();
    let mut i = 0;
    while i < nodes.len() {
        if !matches!(nodes[i].op, Op::Concat) {
            i += 1;
            continue;
        }
        let readers = readers(nodes, outputs);
        let inputs = nodes[i].inputs.clone();
        let concat_output = nodes[i].outputs[0].clone();
        let total = infos[&concat_output].shape.c;
        let mut offset = 0;
        let (mut remaining, mut offsets) = (Vec::new(), Vec::new());
        for t in &inputs {
            let duplicated = inputs.iter().filter(|u| *u == t).count() > 1;
            match sole_conv_producer(nodes, &readers, t).filter(|_| !duplicated) {
                Some(c) => {
                    match &mut nodes[c].op {
                        Op::Conv2d { params, .. } => {
                            params.out_channel_offset = offset;
                            params.out_channels_total = Some(total);
                        }
                        Op::ConvTranspose2d { params, .. } => {
                            params.out_channel_offset = offset;
                            params.out_channels_total = Some(total);
                        }
                        _ => {}
                    }
                    nodes[c].outputs = vec![concat_output.clone()];
                }
                None => {
                    remaining.push(t.clone());
                    offsets.push(offset);
                }
            }
            offset += infos[t].shape.c;
        }
        if remaining.is_empty() {
            nodes.remove(i);
        } else {
            nodes[i].inputs = remaining;
            copy_offsets.insert(nodes[i].name.clone(), offsets);
            i += 1;
        }
    }
    copy_offsets
}

/// `pw(dw(x))` with `dw` a depthwise conv read by nothing else and `pw` a 1 x 1 conv -> one node named `dw+pw`
/// reading `x` (and `pw`'s residual), run where `pw` was; the depthwise node is returned under that name. The
/// depthwise result, an inverted residual's largest tensor, then never exists.
fn fuse_depthwise_pointwise(nodes: &mut Vec<Node>, outputs: &[String]) -> HashMap<String, Node> {
    let mut fused = HashMap::new();
    let mut i = 0;
    while i < nodes.len() {
        let readers = readers(nodes, outputs);
        let producer = match &nodes[i].op {
            Op::Conv2d { params: pw, .. } => {
                sole_conv_producer(nodes, &readers, &nodes[i].inputs[0]).filter(|&c| {
                    match &nodes[c].op {
                        Op::Conv2d { params: dw, .. } => dw_pointwise::unfusable(dw, pw).is_none(),
                        _ => false,
                    }
                })
            }
            _ => None,
        };
        let Some(c) = producer else {
            i += 1;
            continue;
        };
        // The fused node is known by its name: skip a pair whose name a node of the graph already has.
        let name = format!("{}+{}", nodes[c].name, nodes[i].name);
        if nodes.iter().any(|m| m.name == name) {
            i += 1;
            continue;
        }
        let dw = nodes.remove(c);
        // c < i: the pointwise node moved to i - 1.
        let pw = &mut nodes[i - 1];
        pw.name = name;
        pw.inputs[0] = dw.inputs[0].clone();
        fused.insert(pw.name.clone(), dw);
    }
    fused
}

/// A conv with residual `r` that is `r`'s last reader writes its result over `r` (each output reads its residual
/// first), so a residual block's input and output share memory. WebGPU would refuse `r` bound both as an input and
/// as the output, so the kernel reads it through the output binding. Later readers of the conv's output read `r`.
/// Graph inputs and outputs keep their own memory.
fn residuals_in_place(nodes: &mut [Node], graph: &Graph) {
    let kept = |t: &String| graph.outputs.contains(t) || graph.inputs.iter().any(|i| &i.name == t);
    for k in 0..nodes.len() {
        let (r, out) = match &nodes[k].op {
            Op::Conv2d { params, .. } if params.residual && params.out_channels_total.is_none() => {
                (nodes[k].inputs[1].clone(), nodes[k].outputs[0].clone())
            }
            _ => continue,
        };
        let read_later = nodes[k + 1..].iter().any(|n| n.data_inputs().contains(&r));
        if nodes[k].inputs[0] == r || read_later || kept(&r) || kept(&out) {
            continue;
        }
        if let Op::Conv2d { params, .. } = &mut nodes[k].op {
            params.residual_in_place = true;
        }
        nodes[k].outputs[0] = r.clone();
        for input in nodes[k + 1..].iter_mut().flat_map(|n| &mut n.inputs) {
            if *input == out {
                *input = r.clone();
            }
        }
    }
}
