//! ONNX models, read natively: the protobuf is decoded with prost ([`proto`]), initializers become weights, and
//! the graph is translated into an atrous [`Graph`] for each input shape a plan is compiled for, with the shape
//! arithmetic exporters emit evaluated on the host ([`fold`]) and every other node mapped onto atrous's ops
//! ([`ops`]). Everything the plan does (batch-norm folding, fusion, memory planning, f16) then applies.
//!
//! A model's preprocessing may be given in its `metadata_props`: `atrous.mean` and `atrous.std` (three
//! comma-separated numbers for inputs in [0, 1]), `atrous.size` (the shorter side, or `HxW`), `atrous.labels` (a
//! JSON list of class names).

mod attrs;
mod fold;
mod ops;
pub mod proto;
mod tensor;
mod translate;

use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::model::{InputSize, Model, ModelInfo, PreprocessSpec};
use crate::tensor::Shape;
use crate::weights::Weights;
use prost::Message;
use proto::{GraphProto, ModelProto};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use tensor::{dtype, HostTensor};
pub use translate::Constants;
use translate::Translator;

/// The oldest and newest default-domain opsets atrous reads.
pub const OPSETS: std::ops::RangeInclusive<i64> = 7..=28;

/// Spatial size given to dynamic height and width when a model is translated at load (to validate it and report
/// its outputs); plans are compiled for the real input shapes.
pub const PROBE_SIZE: usize = 256;

/// An ONNX graph input: its name and dims, `None` where dynamic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnnxInput {
    pub name: String,
    pub dims: Vec<Option<usize>>,
}

/// A decoded ONNX file: its graph without float initializer data (moved into the weights), and what it needs to
/// be translated again for other input shapes.
pub struct OnnxGraph {
    graph: GraphProto,
    opset: i64,
    host_initializers: HashMap<String, Arc<HostTensor>>,
    pub inputs: Vec<OnnxInput>,
    pub outputs: Vec<String>,
    pub producer: String,
    metadata: BTreeMap<String, String>,
}

impl std::fmt::Debug for OnnxGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxGraph")
            .field("opset", &self.opset)
            .field("nodes", &self.graph.node.len())
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish()
    }
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Whether a file looks like an ONNX model (by its extension).
pub fn is_onnx_path(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

impl OnnxGraph {
    /// Decodes an ONNX file and reads its initializers (external data from files beside it) into `weights`.
    pub fn open(path: &Path, weights: &mut Weights) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
        Self::decode(&bytes, path.parent(), weights).map_err(|e| match e {
            Error::File { .. } => e,
            other => file_error(path, other),
        })
    }

    /// Decodes ONNX bytes; `dir` is where external data files are looked up.
    pub fn decode(bytes: &[u8], dir: Option<&Path>, weights: &mut Weights) -> Result<Self> {
        let model = ModelProto::decode(bytes).map_err(|e| {
            Error::Model(format!(
                "not a valid ONNX model (protobuf decoding failed: {e})"
            ))
        })?;
        let opset = model
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .ok_or_else(|| {
                Error::Model("no opset for the default ONNX domain: not an ONNX model?".into())
            })?;
        if !OPSETS.contains(&opset) {
            return Err(Error::Model(format!(
                "opset {opset} is not supported (atrous reads opsets {} to {})",
                OPSETS.start(),
                OPSETS.end()
            )));
        }
        let mut graph = model
            .graph
            .ok_or_else(|| Error::Model("the model has no graph".into()))?;
        let mut host_initializers = HashMap::new();
        for init in &mut graph.initializer {
            let t = HostTensor::from_proto(init, dir)?;
            if t.is_float() {
                let values = t.as_f32();
                weights.insert(init.name.clone(), t.dims, values)?;
            } else {
                host_initializers.insert(init.name.clone(), Arc::new(t));
            }
            // The data now lives in the weights or the host tensors; keep only the name.
            init.raw_data = Vec::new();
            init.float_data = Vec::new();
            init.int64_data = Vec::new();
            init.int32_data = Vec::new();
            init.double_data = Vec::new();
        }
        let initialized: HashSet<&str> =
            graph.initializer.iter().map(|i| i.name.as_str()).collect();
        let mut inputs = Vec::new();
        for input in graph
            .input
            .iter()
            .filter(|i| !initialized.contains(i.name.as_str()))
        {
            let tensor = input
                .r#type
                .as_ref()
                .and_then(|t| t.tensor_type.as_ref())
                .ok_or_else(|| {
                    Error::Model(format!("graph input {:?} is not a tensor", input.name))
                })?;
            if !dtype::is_float(tensor.elem_type) {
                return Err(Error::Model(format!(
                    "graph input {:?} is {}; atrous takes float inputs",
                    input.name,
                    dtype::name(tensor.elem_type)
                )));
            }
            let dims = tensor
                .shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| {
                            d.dim_value
                                .and_then(|v| usize::try_from(v).ok())
                                .filter(|&v| v > 0)
                        })
                        .collect()
                })
                .ok_or_else(|| {
                    Error::Model(format!(
                        "graph input {:?} has no shape (its rank is needed)",
                        input.name
                    ))
                })?;
            inputs.push(OnnxInput {
                name: input.name.clone(),
                dims,
            });
        }
        let outputs = graph.output.iter().map(|o| o.name.clone()).collect();
        let metadata = model
            .metadata_props
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect();
        Ok(OnnxGraph {
            graph,
            opset,
            host_initializers,
            inputs,
            outputs,
            producer: format!("{} {}", model.producer_name, model.producer_version)
                .trim()
                .to_string(),
            metadata,
        })
    }

    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// How many nodes of each op type the graph has.
    pub fn histogram(&self) -> BTreeMap<String, usize> {
        let mut h = BTreeMap::new();
        for n in &self.graph.node {
            *h.entry(n.op_type.clone()).or_default() += 1;
        }
        h
    }

    /// Nodes whose op type (or domain) atrous does not read, as `name (op)`.
    pub fn unsupported(&self) -> Vec<String> {
        self.graph
            .node
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                !(n.domain.is_empty() || n.domain == "ai.onnx")
                    || !translate::is_supported(&n.op_type)
            })
            .map(|(i, n)| {
                let domain = if n.domain.is_empty() {
                    String::new()
                } else {
                    format!("{}.", n.domain)
                };
                format!("{:?} ({domain}{})", translate::node_label(n, i), n.op_type)
            })
            .collect()
    }

    /// The op types atrous reads, sorted.
    pub fn supported_ops() -> Vec<&'static str> {
        let mut ops: Vec<&str> = translate::DATA_OPS
            .iter()
            .chain(fold::FOLDABLE)
            .copied()
            .collect();
        ops.sort();
        ops.dedup();
        ops
    }

    /// The input shapes used at load: declared dims, with dynamic batch 1 and dynamic height and width
    /// `atrous.size` from the metadata or [`PROBE_SIZE`].
    pub fn probe_shapes(&self) -> Result<HashMap<String, Shape>> {
        let size = self
            .metadata
            .get("atrous.size")
            .and_then(|s| parse_size(s).ok());
        self.inputs
            .iter()
            .map(|i| {
                let rank = i.dims.len();
                let dims: Vec<usize> = i
                    .dims
                    .iter()
                    .enumerate()
                    .map(|(k, d)| {
                        d.unwrap_or(match (rank, k) {
                            (4, 2) => size.map_or(PROBE_SIZE, |s| s.0),
                            (4, 3) => size.map_or(PROBE_SIZE, |s| s.1),
                            _ => 1,
                        })
                    })
                    .collect();
                let shape = translate::natural_nchw(&dims).ok_or_else(|| {
                    Error::Model(format!(
                        "graph input {:?} has rank {rank}; atrous reads rank 1 to 4",
                        i.name
                    ))
                })?;
                Ok((i.name.clone(), shape))
            })
            .collect()
    }

    /// Translates the graph for these NCHW input shapes. `constants` receives weights made by the translation.
    pub fn translate(
        &self,
        shapes: &HashMap<String, Shape>,
        constants: Constants,
    ) -> Result<Graph> {
        let unsupported = self.unsupported();
        if !unsupported.is_empty() {
            return Err(Error::Model(format!(
                "{} unsupported node{}: {}. Supported ops: {}",
                unsupported.len(),
                if unsupported.len() == 1 { "" } else { "s" },
                unsupported.join(", "),
                Self::supported_ops().join(", ")
            )));
        }
        let mut inputs = Vec::new();
        for i in &self.inputs {
            let shape = shapes
                .get(&i.name)
                .ok_or_else(|| Error::Model(format!("no shape given for input {:?}", i.name)))?;
            let rank = i.dims.len();
            let nchw = shape.dims();
            if rank > 4 || nchw[..4 - rank.min(4)].iter().any(|&d| d != 1) {
                return Err(Error::Model(format!(
                    "input {:?} has rank {rank}; got {shape}",
                    i.name
                )));
            }
            let dims = nchw[4 - rank..].to_vec();
            for (k, (&got, want)) in dims.iter().zip(&i.dims).enumerate() {
                if want.is_some_and(|w| w != got) {
                    return Err(Error::Model(format!(
                        "input {:?}: dim {k} is {} in the model, got a tensor of shape {shape}",
                        i.name,
                        want.unwrap_or_default()
                    )));
                }
            }
            inputs.push((i.name.clone(), dims));
        }
        Translator::new(
            &self.graph,
            self.opset,
            &inputs,
            &self.host_initializers,
            constants,
        )?
        .run(&self.graph)
    }

    /// Preprocessing and labels from `metadata_props` (see the module documentation).
    pub fn info(&self) -> Result<ModelInfo> {
        let m = &self.metadata;
        let triple = |key: &str| -> Result<Option<[f32; 3]>> {
            m.get(key)
                .map(|v| {
                    let parts: Vec<f32> = v
                        .split(',')
                        .map(|p| p.trim().parse::<f32>())
                        .collect::<Result<_, _>>()
                        .map_err(|_| {
                            Error::Model(format!(
                                "metadata {key:?} = {v:?}: three comma-separated numbers expected"
                            ))
                        })?;
                    <[f32; 3]>::try_from(parts).map_err(|_| {
                        Error::Model(format!("metadata {key:?} = {v:?}: three numbers expected"))
                    })
                })
                .transpose()
        };
        let (mean, std) = (triple("atrous.mean")?, triple("atrous.std")?);
        let input_size = match m.get("atrous.size") {
            Some(s) => Some(match parse_size(s)? {
                (h, w) if s.contains('x') => InputSize::Fixed {
                    height: h,
                    width: w,
                },
                (side, _) => InputSize::ShorterSide { size: side },
            }),
            None => None,
        };
        let preprocess =
            (mean.is_some() || std.is_some() || input_size.is_some()).then(|| PreprocessSpec {
                mean: mean.unwrap_or([0.0; 3]),
                std: std.unwrap_or([1.0; 3]),
                value_range: [0.0, 1.0],
                channel_order: Default::default(),
                input_size: input_size.clone().unwrap_or_else(|| self.declared_size()),
                bands: None,
            });
        let labels = match m.get("atrous.labels") {
            Some(l) => serde_json::from_str(l).map_err(|e| {
                Error::Model(format!(
                    "metadata \"atrous.labels\" is not a JSON list of strings: {e}"
                ))
            })?,
            None => Vec::new(),
        };
        Ok(ModelInfo {
            architecture: None,
            preprocess,
            labels,
            palette: Vec::new(),
        })
    }

    /// The input size policy a model's own dims imply: its fixed height and width, or the image's size.
    pub fn declared_size(&self) -> InputSize {
        match self.inputs.first().map(|i| &i.dims[..]) {
            Some([_, _, Some(h), Some(w)]) => InputSize::Fixed {
                height: *h,
                width: *w,
            },
            _ => InputSize::Original { multiple_of: 32 },
        }
    }
}

/// `S` (shorter side, returned twice) or `HxW`.
pub fn parse_size(s: &str) -> Result<(usize, usize)> {
    let bad = || Error::Model(format!("size {s:?}: a number or HxW expected"));
    let parse = |p: &str| {
        p.trim()
            .parse::<usize>()
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(bad)
    };
    match s.split_once('x') {
        Some((h, w)) => Ok((parse(h)?, parse(w)?)),
        None => parse(s).map(|v| (v, v)),
    }
}

/// Loads an ONNX model: decodes it, translates it once at its declared (or probe) input shapes to validate it,
/// and keeps the ONNX graph so plans for other shapes translate it again.
pub fn load(path: &Path) -> Result<Model> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    load_bytes(&bytes, path.parent()).map_err(|e| match e {
        Error::File { .. } => e,
        other => file_error(path, other),
    })
}

/// [`load`] from bytes in memory; `dir` is where external data files are looked up.
pub fn load_bytes(bytes: &[u8], dir: Option<&Path>) -> Result<Model> {
    let mut weights = Weights::new();
    let onnx = OnnxGraph::decode(bytes, dir, &mut weights)?;
    let graph = onnx.translate(&onnx.probe_shapes()?, Constants::Add(&mut weights))?;
    let info = onnx.info()?;
    let mut model = Model::new(graph, weights);
    model.info = info;
    model.onnx = Some(Arc::new(onnx));
    model.check_weights()?;
    Ok(model)
}

/// Translates a loaded ONNX model's graph for concrete input shapes (used by [`Model::graph_for`]).
pub fn graph_for(
    onnx: &OnnxGraph,
    shapes: &HashMap<String, Shape>,
    weights: &Weights,
) -> Result<Graph> {
    onnx.translate(shapes, Constants::Existing(weights))
}

/// A serialized ONNX `TensorProto` file (the backend tests' `input_0.pb`): its name, dims and values as f64.
pub fn read_tensor_file(path: &Path) -> Result<(String, Vec<usize>, Vec<f64>)> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    let proto = proto::TensorProto::decode(&bytes[..])
        .map_err(|e| file_error(path, format!("not a TensorProto: {e}")))?;
    let t = HostTensor::from_proto(&proto, path.parent()).map_err(|e| file_error(path, e))?;
    Ok((proto.name, t.dims.clone(), t.as_f64()))
}
