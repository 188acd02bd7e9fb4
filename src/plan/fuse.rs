//! Graph rewrites that move work into convolution epilogues: a following activation (into group norms too), a
//! residual add, and writing straight into a concatenation's output at a channel offset; a residual conv writing
//! over its residual where nothing reads it later; a depthwise conv run inside the 1 x 1 conv that reads it; and
//! pads that change nothing skipped. Each rewrite keeps the graph's results exactly.

use crate::graph::{Graph, Node, Op, TensorInfo};
use crate::kernels::dw_pointwise;
use crate::ops::{Activation, BinaryOp};
use std::collections::{HashMap, HashSet};

// Every pass is linear in the node count (a 100,000-node graph plans in seconds): reader counts and producers are
// computed once per pass, fused-away nodes are left as tombstones (`None`) until the pass ends so indices stay put,
// and renames are recorded in an alias map applied as nodes are reached instead of rewriting later nodes each time.

/// How often each tensor is read; graph outputs count as a read. A fusion only removes the one read of the
/// tensor it fuses away, so a pass computes this once.
fn readers(nodes: &[Node], outputs: &[String]) -> HashMap<String, usize> {
    let mut count = HashMap::new();
    for name in nodes.iter().flat_map(|n| &n.inputs).chain(outputs) {
        *count.entry(name.clone()).or_insert(0) += 1;
    }
    count
}

/// The index of the node producing each tensor.
fn producers(nodes: &[Option<Node>]) -> HashMap<String, usize> {
    let mut map = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in n.iter().flat_map(|n| &n.outputs) {
            map.insert(o.clone(), i);
        }
    }
    map
}

/// The index of the node producing `tensor` when it is a conv2d or conv_transpose2d read exactly once (by the node
/// being fused).
fn sole_conv_producer(
    nodes: &[Option<Node>],
    readers: &HashMap<String, usize>,
    producers: &HashMap<String, usize>,
    tensor: &str,
) -> Option<usize> {
    if readers.get(tensor) != Some(&1) {
        return None;
    }
    let &c = producers.get(tensor)?;
    let n = nodes[c].as_ref()?;
    let is_conv = n.outputs.len() == 1
        && n.outputs[0] == tensor
        && match &n.op {
            Op::Conv2d { params, .. } => params.out_channels_total.is_none(),
            Op::ConvTranspose2d { params, .. } => params.out_channels_total.is_none(),
            _ => false,
        };
    is_conv.then_some(c)
}

/// The node at `i`, which a pass has not removed.
fn live(nodes: &[Option<Node>], i: usize) -> &Node {
    nodes[i].as_ref().expect("a live node")
}

fn live_mut(nodes: &mut [Option<Node>], i: usize) -> &mut Node {
    nodes[i].as_mut().expect("a live node")
}

/// Runs one pass over tombstoned nodes and drops the removed ones.
fn pass<R>(nodes: &mut Vec<Node>, f: impl FnOnce(&mut Vec<Option<Node>>) -> R) -> R {
    let mut slots: Vec<Option<Node>> = std::mem::take(nodes).into_iter().map(Some).collect();
    let result = f(&mut slots);
    *nodes = slots.into_iter().flatten().collect();
    result
}

/// Replaces each input by what `alias` says it became, following chains.
fn resolve(node: &mut Node, alias: &HashMap<String, String>) {
    for input in &mut node.inputs {
        while let Some(to) = alias.get(input.as_str()) {
            *input = to.clone();
        }
    }
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
    let mut alias: HashMap<String, String> = HashMap::new();
    nodes.retain_mut(|node| {
        resolve(node, &alias);
        let identity = matches!(node.op, Op::PadLike)
            && infos[&node.inputs[0]].shape == infos[&node.outputs[0]].shape
            && !graph.outputs.contains(&node.outputs[0]);
        if identity {
            alias.insert(node.outputs[0].clone(), node.inputs[0].clone());
        }
        !identity
    });
}

/// `add(conv(x), r)` -> conv with residual `r`, run where the add was (both operands are ready there).
fn fuse_residual_adds(
    nodes: &mut Vec<Node>,
    outputs: &[String],
    infos: &HashMap<String, TensorInfo>,
) {
    let readers = readers(nodes, outputs);
    pass(nodes, |nodes| {
        let mut producers = producers(nodes);
        for i in 0..nodes.len() {
            let fused = match &nodes[i] {
                Some(Node {
                    op: Op::Binary { params },
                    inputs,
                    ..
                }) if params.op == BinaryOp::Add => {
                    let (a, b) = (&inputs[0], &inputs[1]);
                    let same_shape = infos[a].shape == infos[b].shape;
                    let candidate = |t: &str| {
                        sole_conv_producer(nodes, &readers, &producers, t).filter(|&c| {
                            matches!(&live(nodes, c).op, Op::Conv2d { params, .. } if !params.residual && params.activation == Activation::None)
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
                let mut conv = nodes[c].take().expect("a live conv");
                if let Op::Conv2d { params, .. } = &mut conv.op {
                    params.residual = true;
                    params.activation = activation;
                }
                conv.inputs.push(residual);
                conv.outputs = live(nodes, i).outputs.clone();
                for o in &conv.outputs {
                    producers.insert(o.clone(), i);
                }
                nodes[i] = Some(conv);
            }
        }
    });
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
    let readers = readers(nodes, outputs);
    pass(nodes, |nodes| {
        let mut producers = producers(nodes);
        for i in 0..nodes.len() {
            let fused = match &nodes[i] {
                Some(Node {
                    op: Op::Unary { params },
                    inputs,
                    ..
                }) => {
                    let input = &inputs[0];
                    producers
                        .get(input)
                        .copied()
                        .filter(|&c| {
                            let n = live(nodes, c);
                            n.outputs.len() == 1 && readers.get(input) == Some(&1)
                        })
                        .filter(|&c| takes_activation(&live(nodes, c).op))
                        .map(|c| (c, params.activation))
                }
                _ => None,
            };
            if let Some((c, activation)) = fused {
                let act = nodes[i].take().expect("a live node");
                let conv = live_mut(nodes, c);
                set_activation(&mut conv.op, activation);
                conv.outputs = act.outputs;
                for o in &conv.outputs {
                    producers.insert(o.clone(), c);
                }
            }
        }
    });
}

/// `concat(conv_a(x), conv_b(y), z)` -> the convs write into the concat's output at their channel offsets. The
/// concat node keeps only the inputs it must still copy, with their offsets in the returned map; a concat left with
/// nothing to copy is removed.
fn fuse_concats(
    nodes: &mut Vec<Node>,
    outputs: &[String],
    infos: &HashMap<String, TensorInfo>,
) -> HashMap<String, Vec<usize>> {
    let readers = readers(nodes, outputs);
    pass(nodes, |nodes| {
        let producers = producers(nodes);
        let mut copy_offsets = HashMap::new();
        for i in 0..nodes.len() {
            if !matches!(&nodes[i], Some(Node { op: Op::Concat, .. })) {
                continue;
            }
            let inputs = live(nodes, i).inputs.clone();
            let concat_output = live(nodes, i).outputs[0].clone();
            let total = infos[&concat_output].shape.c;
            let mut offset = 0;
            let (mut remaining, mut offsets) = (Vec::new(), Vec::new());
            for t in &inputs {
                let duplicated = inputs.iter().filter(|u| *u == t).count() > 1;
                match sole_conv_producer(nodes, &readers, &producers, t).filter(|_| !duplicated) {
                    Some(c) => {
                        let conv = live_mut(nodes, c);
                        match &mut conv.op {
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
                        conv.outputs = vec![concat_output.clone()];
                    }
                    None => {
                        remaining.push(t.clone());
                        offsets.push(offset);
                    }
                }
                offset += infos[t].shape.c;
            }
            if remaining.is_empty() {
                nodes[i] = None;
            } else {
                let concat = live_mut(nodes, i);
                concat.inputs = remaining;
                copy_offsets.insert(concat.name.clone(), offsets);
            }
        }
        copy_offsets
    })
}

/// `pw(dw(x))` with `dw` a depthwise conv read by nothing else and `pw` a 1 x 1 conv -> one node named `dw+pw`
/// reading `x` (and `pw`'s residual), run where `pw` was; the depthwise node is returned under that name. The
/// depthwise result, an inverted residual's largest tensor, then never exists.
fn fuse_depthwise_pointwise(nodes: &mut Vec<Node>, outputs: &[String]) -> HashMap<String, Node> {
    let readers = readers(nodes, outputs);
    let mut names: HashSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
    pass(nodes, |nodes| {
        let producers = producers(nodes);
        let mut fused = HashMap::new();
        for i in 0..nodes.len() {
            let producer = match &nodes[i] {
                Some(Node {
                    op: Op::Conv2d { params: pw, .. },
                    inputs,
                    ..
                }) => sole_conv_producer(nodes, &readers, &producers, &inputs[0]).filter(|&c| {
                    match &live(nodes, c).op {
                        Op::Conv2d { params: dw, .. } => dw_pointwise::unfusable(dw, pw).is_none(),
                        _ => false,
                    }
                }),
                _ => None,
            };
            let Some(c) = producer else {
                continue;
            };
            // The fused node is known by its name: skip a pair whose name a node of the graph already has.
            let name = format!("{}+{}", live(nodes, c).name, live(nodes, i).name);
            if !names.insert(name.clone()) {
                continue;
            }
            let dw = nodes[c].take().expect("a live depthwise conv");
            let pw = live_mut(nodes, i);
            pw.name = name;
            pw.inputs[0] = dw.inputs[0].clone();
            fused.insert(pw.name.clone(), dw);
        }
        fused
    })
}

/// A conv with residual `r` that is `r`'s last reader writes its result over `r` (each output reads its residual
/// first), so a residual block's input and output share memory. WebGPU would refuse `r` bound both as an input and
/// as the output, so the kernel reads it through the output binding. Later readers of the conv's output read `r`.
/// Graph inputs and outputs keep their own memory.
fn residuals_in_place(nodes: &mut [Node], graph: &Graph) {
    let kept = |t: &String| graph.outputs.contains(t) || graph.inputs.iter().any(|i| &i.name == t);
    // The last node reading each tensor's values; a rename out -> r moves out's reads to r.
    let mut last_read: HashMap<String, usize> = HashMap::new();
    for (k, n) in nodes.iter().enumerate() {
        for t in n.data_inputs() {
            last_read.insert(t.clone(), k);
        }
    }
    let mut alias: HashMap<String, String> = HashMap::new();
    for (k, node) in nodes.iter_mut().enumerate() {
        resolve(node, &alias);
        let (r, out) = match &node.op {
            Op::Conv2d { params, .. } if params.residual && params.out_channels_total.is_none() => {
                (node.inputs[1].clone(), node.outputs[0].clone())
            }
            _ => continue,
        };
        let read_later = last_read.get(&r).is_some_and(|&last| last > k);
        if node.inputs[0] == r || read_later || kept(&r) || kept(&out) {
            continue;
        }
        if let Op::Conv2d { params, .. } = &mut node.op {
            params.residual_in_place = true;
        }
        node.outputs[0] = r.clone();
        if let Some(&last) = last_read.get(&out) {
            let entry = last_read.entry(r.clone()).or_insert(last);
            *entry = (*entry).max(last);
        }
        alias.insert(out, r);
    }
}
