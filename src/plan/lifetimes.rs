//! What the memory planner is given: each tensor's bytes and lifetime over the schedule's steps, and the pairs of
//! tensors that must not share a buffer.

use super::lower::{Bind, Lowered};
use super::memory::Lifetime;
use super::tensor_bytes;
use crate::gpu::Precision;
use crate::graph::{Graph, Node, TensorInfo};
use std::collections::HashMap;

/// Every tensor of the schedule by name, graph inputs first, with its lifetime: graph inputs are written at step 0,
/// node k at step k + 1, and graph outputs are read at the end.
pub(super) fn tensors(
    graph: &Graph,
    nodes: &[Node],
    infos: &HashMap<String, TensorInfo>,
    precision: Precision,
) -> (Vec<String>, Vec<Lifetime>) {
    let end = nodes.len() + 1;
    let mut names: Vec<String> = graph.inputs.iter().map(|i| i.name.clone()).collect();
    let mut lifetimes: HashMap<String, (usize, usize)> =
        names.iter().map(|n| (n.clone(), (0, 0))).collect();
    for (k, node) in nodes.iter().enumerate() {
        for input in node.data_inputs() {
            if let Some(l) = lifetimes.get_mut(input) {
                l.1 = l.1.max(k + 1);
            }
        }
        for out in &node.outputs {
            if !lifetimes.contains_key(out) {
                names.push(out.clone());
                lifetimes.insert(out.clone(), (k + 1, k + 1));
            }
        }
    }
    for out in &graph.outputs {
        if let Some(l) = lifetimes.get_mut(out) {
            l.1 = end;
        }
    }
    let spans = names
        .iter()
        .map(|n| {
            let (first, last) = lifetimes[n];
            Lifetime {
                bytes: tensor_bytes(&infos[n], precision),
                first,
                last,
            }
        })
        .collect();
    (names, spans)
}

/// Appends a span per scratch buffer of the lowered nodes (sized and checked by their kernels), live for its
/// node's step alone; returns each one's index by (node, scratch).
pub(super) fn add_scratch(
    spans: &mut Vec<Lifetime>,
    lowered: &[Lowered],
) -> HashMap<(usize, usize), usize> {
    let mut scratch_span = HashMap::new();
    for (k, node) in lowered.iter().enumerate() {
        for (i, &bytes) in node.scratch.iter().enumerate() {
            scratch_span.insert((k, i), spans.len());
            spans.push(Lifetime {
                bytes: bytes.max(4),
                first: k + 1,
                last: k + 1,
            });
        }
    }
    scratch_span
}

/// A dispatch's outputs must not share a buffer with its inputs, nor (being written) with each other; a node's
/// scratch buffers are written and read by its own dispatches, so each conflicts with what a dispatch binds beside
/// it where one of the two is written there (WebGPU checks usage per dispatch in a compute pass: Winograd's input
/// transform, products and output transform may put the conv's input and its products in one buffer). An output
/// that is also an input (a residual written over in place) is one binding, not a conflict.
pub(super) fn conflicts(
    nodes: &[Node],
    index: &HashMap<&str, usize>,
    lowered: &[Lowered],
    scratch_span: &HashMap<(usize, usize), usize>,
) -> Vec<(usize, usize)> {
    let mut conflicts = Vec::new();
    for (k, node) in nodes.iter().enumerate() {
        for (o, out) in node.outputs.iter().enumerate() {
            let written = node.outputs[o + 1..].iter();
            for other in node.data_inputs().iter().chain(written) {
                if other != out {
                    conflicts.push((index[out.as_str()], index[other.as_str()]));
                }
            }
        }
        for call in &lowered[k].calls {
            // (span, written, scratch) of each activation and scratch binding of this dispatch.
            let span = |b: &Bind| match b {
                Bind::Tensor(name) => index.get(name.as_str()).copied(),
                Bind::Scratch(i) => Some(scratch_span[&(k, *i)]),
                _ => None,
            };
            let bound: Vec<(usize, bool, bool)> = (call.outputs.iter().map(|b| (b, true)))
                .chain(call.inputs.iter().map(|b| (b, false)))
                .filter_map(|(b, written)| {
                    span(b).map(|s| (s, written, matches!(b, Bind::Scratch(_))))
                })
                .collect();
            for (x, &(a, a_written, a_scratch)) in bound.iter().enumerate() {
                for &(b, b_written, b_scratch) in &bound[x + 1..] {
                    if a != b && (a_written || b_written) && (a_scratch || b_scratch) {
                        conflicts.push((a, b));
                    }
                }
            }
        }
    }
    conflicts
}
