//! The segmentation graph: the model's own graph with the image's preprocessing in front and what the request
//! needs behind it (logits resized to the frame, softmax, argmax or threshold, texel encodings), compiled into one
//! plan. Every path in (host image, texture) and out (readback, textures, buffers) runs through it, so the memory
//! plan sees the full-size buffers too.

use super::request::{Delivery, Readback, Resolution};
use super::{input_size, Shared, PROBABILITY_THRESHOLD};
use crate::error::{Error, Result};
use crate::graph::{Graph, GraphInput, InputKind, Node, Op};
use crate::ops::{
    Encode, ImageSource, Preprocess, Resize, ResizeMode, ResizeTarget, TexelEncoding, Threshold,
};
use crate::plan::Plan;
use crate::tensor::Shape;
use std::collections::HashMap;

/// The graph input of a host image's packed pixels.
pub(crate) const PIXELS: &str = "atrous:pixels";
/// The graph input of raw band values (f32 bits).
pub(crate) const BANDS: &str = "atrous:bands";
/// Names of the tensors the segmentation graph adds; a model's own tensors may not start with it.
const PREFIX: &str = "atrous:";

/// Where the frame comes from, as far as the plan is concerned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    Pixels,
    Texture(TexelEncoding),
    /// Raw band values: this many bands.
    Bands(usize),
}

/// Everything a compiled segmentation plan depends on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub source: Source,
    /// The frame's (or region's) width and height.
    pub size: (usize, usize),
    pub resolution: Resolution,
    pub readback: Option<Readback>,
    /// One per target, in the order classes, colours, mask.
    pub deliveries: Vec<Delivery>,
}

/// A compiled segmentation plan and the names of what it produces.
pub(crate) struct Compiled {
    pub plan: Plan,
    /// Width and height of the outputs.
    pub out_size: (usize, usize),
    /// The class map (a graph output).
    pub classes: String,
    /// The class probabilities, a graph output when read back.
    pub probabilities: Option<String>,
    /// Per delivery of the key, the graph output it copies.
    pub delivered: Vec<String>,
}

/// A node with one input and one output.
fn node(name: &str, op: Op, input: &str) -> Node {
    Node {
        name: name.to_string(),
        op,
        inputs: vec![input.to_string()],
        outputs: vec![name.to_string()],
    }
}

/// Builds and compiles the segmentation graph of `key`.
pub(crate) fn compile(shared: &Shared, key: &Key) -> Result<Compiled> {
    let engine = &shared.engine;
    let model = engine.model();
    let (width, height) = key.size;
    let (in_h, in_w) = input_size(&shared.spec.input_size, height, width);
    let input = model.graph.inputs[0].name.clone();
    let channels = model.graph.inputs[0].channels;
    let model_shapes = HashMap::from([(input.clone(), Shape::new(1, channels, in_h, in_w))]);
    let network = model.graph_for(&model_shapes)?;
    let (_, infos) = network.infer(&model_shapes)?;
    if let Some(name) = infos.keys().find(|n| n.starts_with(PREFIX)) {
        return Err(Error::Model(format!(
            "the model names a tensor {name:?}; names starting with {PREFIX:?} are atrous's own"
        )));
    }
    let logits = infos[&shared.output].shape;
    let out_size = match key.resolution {
        Resolution::Frame => (width, height),
        Resolution::Model => (logits.w, logits.h),
    };
    shared.check_output_size(out_size)?;

    let mut graph = Graph::default();
    let mut shapes = HashMap::new();
    if let Source::Bands(bands) = key.source {
        if bands != channels {
            return Err(Error::Frame(format!(
                "a frame of {bands} bands for a model with {channels} input channels"
            )));
        }
        let params = shared.spec.band_normalize(bands);
        if params.mean.len() != bands || params.std.len() != bands {
            return Err(Error::Model(format!(
                "the band mean and std have {} and {} values; the model takes {bands} bands",
                params.mean.len(),
                params.std.len()
            )));
        }
        graph.inputs.push(GraphInput {
            name: BANDS.into(),
            channels: bands,
            kind: InputKind::Bands,
        });
        shapes.insert(BANDS.to_string(), Shape::new(1, bands, height, width));
        // Normalised straight into the model's input, or resized to it where the model's size policy asks.
        let resized = (in_h, in_w) != (height, width);
        let normalized = match resized {
            true => format!("{PREFIX}normalized"),
            false => input.clone(),
        };
        graph.nodes.push(Node {
            name: format!("{PREFIX}normalize"),
            op: Op::Normalize { params },
            inputs: vec![BANDS.to_string()],
            outputs: vec![normalized.clone()],
        });
        if resized {
            let resize = Resize {
                mode: ResizeMode::Bilinear {
                    align_corners: false,
                },
                target: ResizeTarget::Size([in_h, in_w]),
            };
            graph.nodes.push(Node {
                name: format!("{PREFIX}resize input"),
                op: Op::Resize { params: resize },
                inputs: vec![normalized],
                outputs: vec![input.clone()],
            });
        }
    } else {
        if channels != 3 {
            return Err(Error::Frame(format!(
                "the model takes {channels} input channels: images and textures are RGB; give its frames as \
                 Frame::Bands"
            )));
        }
        add_image_source(&mut graph, &mut shapes, shared, key, (in_h, in_w), input);
    }
    graph.nodes.extend(network.nodes.iter().cloned());

    // Logits at the output size, then the class map and (where asked for) the probabilities.
    let mut scores = shared.output.clone();
    if (logits.w, logits.h) != out_size {
        let resize = Resize {
            mode: ResizeMode::Bilinear {
                align_corners: false,
            },
            target: ResizeTarget::Size([out_size.1, out_size.0]),
        };
        let name = format!("{PREFIX}logits");
        graph
            .nodes
            .push(node(&name, Op::Resize { params: resize }, &scores));
        scores = name;
    }
    let one_channel = logits.c == 1;
    let classes = format!("{PREFIX}classes");
    let class_op = match one_channel {
        true => Op::Threshold {
            params: Threshold {
                value: PROBABILITY_THRESHOLD,
            },
        },
        false => Op::Argmax,
    };
    graph.nodes.push(node(&classes, class_op, &scores));
    graph.outputs.push(classes.clone());
    let wants_probabilities = key.readback == Some(Readback::ClassesAndProbabilities)
        || key
            .deliveries
            .iter()
            .any(|d| matches!(d, Delivery::Encoded { encoding, .. } if !encoding.reads_classes()));
    let probabilities = match (wants_probabilities, one_channel) {
        (false, _) => None,
        // A one-channel model's output is its probability already.
        (true, true) => Some(scores.clone()),
        (true, false) => {
            let name = format!("{PREFIX}probabilities");
            graph.nodes.push(node(&name, Op::Softmax, &scores));
            Some(name)
        }
    };
    let read_probabilities = match key.readback {
        Some(Readback::ClassesAndProbabilities) => probabilities.clone(),
        _ => None,
    };
    graph.outputs.extend(read_probabilities.iter().cloned());

    let mut delivered = Vec::new();
    for (i, delivery) in key.deliveries.iter().enumerate() {
        let (encoding, padded) = match delivery {
            Delivery::Classes => {
                delivered.push(classes.clone());
                continue;
            }
            Delivery::Encoded { encoding, padded } => (encoding, *padded),
        };
        let words = encoding.row_words(out_size.0);
        // A buffer-to-texture copy takes rows of a multiple of 256 bytes.
        let row_words = match padded {
            true => words.next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT as usize / 4),
            false => words,
        };
        let source = match encoding.reads_classes() {
            true => &classes,
            false => probabilities.as_ref().expect("probabilities were wanted"),
        };
        let name = format!("{PREFIX}delivery {i}");
        let params = Encode {
            encoding: encoding.clone(),
            row_words,
        };
        graph.nodes.push(node(&name, Op::Encode { params }, source));
        graph.outputs.push(name.clone());
        delivered.push(name);
    }
    let plan = Plan::compile_graph(
        engine.gpu().clone(),
        model,
        &graph,
        &shapes,
        engine.options(),
        engine.weight_cache(),
    )?;
    Ok(Compiled {
        plan,
        out_size,
        classes,
        probabilities: read_probabilities,
        delivered,
    })
}

/// Puts the image preprocessing (packed pixels or a texture, resized and normalised) in front of the model input.
fn add_image_source(
    graph: &mut Graph,
    shapes: &mut HashMap<String, Shape>,
    shared: &Shared,
    key: &Key,
    (in_h, in_w): (usize, usize),
    input: String,
) {
    let (width, height) = key.size;
    let [lo, hi] = shared.spec.value_range;
    let preprocess = Preprocess {
        size: [in_h, in_w],
        mean: shared.spec.mean.map(|m| m - lo),
        std: shared.spec.std,
        value_scale: (hi - lo) / 255.0,
        channel_order: shared.spec.channel_order,
    };
    let pre = match key.source {
        Source::Pixels => {
            graph.inputs.push(GraphInput {
                name: PIXELS.into(),
                channels: 1,
                kind: InputKind::Pixels,
            });
            shapes.insert(PIXELS.to_string(), Shape::new(1, 1, height, width));
            (ImageSource::Pixels, vec![PIXELS.to_string()])
        }
        Source::Bands(_) => unreachable!("band sources are built by compile"),
        Source::Texture(texels) => (
            ImageSource::Texture {
                width,
                height,
                texels,
            },
            vec![],
        ),
    };
    graph.nodes.push(Node {
        name: format!("{PREFIX}preprocess"),
        op: Op::Preprocess {
            params: preprocess,
            source: pre.0,
        },
        inputs: pre.1,
        outputs: vec![input],
    });
}
