//! Translates an ONNX graph into an atrous [`Graph`] for concrete input shapes. Host-known values (initializers,
//! constants, shape arithmetic) are evaluated here ([`super::fold`]); every other node becomes one or a few atrous
//! nodes ([`super::ops`]), whose shapes are inferred with the graph's own shape inference as they are added, so
//! the parameters of later nodes (a Slice's clamped ends, a Resize's sizes) are computed from real dims.

use super::attrs::Attrs;
use super::fold::{self, FOLDABLE};
use super::proto::{GraphProto, NodeProto};
use super::tensor::HostTensor;
use crate::error::{Error, Result};
use crate::graph::{self, DType, Graph, GraphInput, Node, Op, TensorInfo};
use crate::ops::{PadMode, SlicePad};
use crate::tensor::Shape;
use crate::weights::Weights;
use std::collections::{HashMap, HashSet};
use std::sync::Arc as Rc;

/// A tensor computed on the GPU: the atrous tensor holding it, its ONNX dims, and the NCHW shape atrous gives it.
#[derive(Clone, Debug)]
pub struct DataValue {
    pub tensor: String,
    pub dims: Vec<usize>,
    pub nchw: Shape,
    pub dtype: DType,
    /// For max-pooling indices (u32, per plane on the GPU): what ONNX takes them to be.
    pub indices: Option<Indices>,
}

/// How ONNX sees a tensor of max-pooling indices that atrous holds per plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Indices {
    /// Positions within each plane (PyTorch's convention, after an exporter subtracted the plane offsets).
    PerPlane,
    /// Positions over the whole tensor, planes of `plane` elements (ONNX MaxPool's convention).
    Flat { plane: usize },
}

/// What an ONNX value is during translation.
#[derive(Clone, Debug)]
pub enum Value {
    /// Known on the host. `dynamic`: it depends on the input shapes (it cannot become a weight).
    Host {
        t: Rc<HostTensor>,
        dynamic: bool,
    },
    /// A floating-point initializer, held in the model's weights under its name.
    Weight {
        name: String,
        dims: Vec<usize>,
    },
    Data(DataValue),
    /// The Indices output of a 1 x 1 max pool: every element's flat position in a tensor of this shape. PyTorch's
    /// exporter slices it to get each plane's offset.
    Positions {
        shape: Shape,
    },
    /// The flat offset of each plane of a tensor of this shape (`Positions` sliced to `[:, :, 0:1, 0:1]`).
    PlaneOffsets {
        shape: Shape,
    },
    /// A ScatterND of pooled values into a zero tensor at flat indices: max unpooling, waiting for the Reshape that
    /// gives its output's height and width.
    Scatter {
        values: DataValue,
        indices: DataValue,
        plane: usize,
    },
}

/// The NCHW shape of ONNX dims of rank <= 4, padded with leading 1s as NumPy broadcasting does.
pub fn natural_nchw(dims: &[usize]) -> Option<Shape> {
    if dims.len() > 4 {
        return None;
    }
    let mut d = [1usize; 4];
    d[4 - dims.len()..].copy_from_slice(dims);
    Some(Shape::new(d[0], d[1], d[2], d[3]))
}

pub(super) fn err(message: impl Into<String>) -> Error {
    Error::Model(message.into())
}

/// Where translation puts the host tensors that become weights (constant operands, folded values).
pub enum Constants<'a> {
    /// Loading: new constants are added to the weights.
    Add(&'a mut Weights),
    /// Compiling for other shapes: every constant was added at load; one that was not depends on the shapes.
    Existing(&'a Weights),
}

impl Constants<'_> {
    fn weights(&self) -> &Weights {
        match self {
            Constants::Add(w) => w,
            Constants::Existing(w) => w,
        }
    }
}

pub struct Translator<'a> {
    pub opset: i64,
    pub graph: Graph,
    values: HashMap<String, Value>,
    infos: HashMap<String, TensorInfo>,
    /// How many nodes (and graph outputs) read each ONNX value.
    uses: HashMap<String, usize>,
    constants: Constants<'a>,
    node_names: HashSet<String>,
    /// Which atrous node produced each atrous tensor.
    producer: HashMap<String, usize>,
}

/// The ONNX op types translated to GPU nodes (beyond those folded on the host).
pub const DATA_OPS: &[&str] = &[
    "Abs",
    "Add",
    "ArgMax",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Ceil",
    "Clip",
    "Concat",
    "Conv",
    "ConvTranspose",
    "Div",
    "Dropout",
    "Elu",
    "Exp",
    "Expand",
    "Flatten",
    "Floor",
    "Gelu",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LeakyRelu",
    "Log",
    "MaxPool",
    "MaxUnpool",
    "Mul",
    "Neg",
    "Pad",
    "PRelu",
    "Reciprocal",
    "ReduceMean",
    "Relu",
    "Reshape",
    "Resize",
    "ScatterND",
    "Shape",
    "Sigmoid",
    "Size",
    "Slice",
    "Softmax",
    "Softplus",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Tanh",
    "Transpose",
    "Unsqueeze",
    "Upsample",
];

/// Whether atrous translates or folds this op type.
pub fn is_supported(op: &str) -> bool {
    DATA_OPS.contains(&op) || FOLDABLE.contains(&op)
}

impl<'a> Translator<'a> {
    /// Starts a translation: graph inputs get the given NCHW shapes, initializers become values.
    pub fn new(
        g: &GraphProto,
        opset: i64,
        inputs: &[(String, Vec<usize>)],
        host_initializers: &HashMap<String, Rc<HostTensor>>,
        constants: Constants<'a>,
    ) -> Result<Self> {
        let mut t = Translator {
            opset,
            graph: Graph::default(),
            values: HashMap::new(),
            infos: HashMap::new(),
            uses: HashMap::new(),
            constants,
            node_names: HashSet::new(),
            producer: HashMap::new(),
        };
        for init in &g.initializer {
            let value = match host_initializers.get(&init.name) {
                Some(h) => Value::Host {
                    t: h.clone(),
                    dynamic: false,
                },
                None => Value::Weight {
                    name: init.name.clone(),
                    dims: t.constants.weights().shape(&init.name).ok_or_else(|| {
                        err(format!(
                            "initializer {:?} is missing from the weights",
                            init.name
                        ))
                    })?,
                },
            };
            t.values.insert(init.name.clone(), value);
        }
        for (name, dims) in inputs {
            let nchw = natural_nchw(dims).ok_or_else(|| {
                err(format!(
                    "graph input {name:?} has rank {}; atrous reads rank 1 to 4",
                    dims.len()
                ))
            })?;
            t.graph.inputs.push(GraphInput {
                name: name.clone(),
                channels: nchw.c,
                kind: Default::default(),
            });
            t.infos.insert(
                name.clone(),
                TensorInfo {
                    shape: nchw,
                    dtype: DType::F32,
                },
            );
            t.values.insert(
                name.clone(),
                Value::Data(DataValue {
                    tensor: name.clone(),
                    dims: dims.clone(),
                    nchw,
                    dtype: DType::F32,
                    indices: None,
                }),
            );
        }
        for node in &g.node {
            for i in node.input.iter().filter(|i| !i.is_empty()) {
                *t.uses.entry(i.clone()).or_default() += 1;
            }
        }
        for o in &g.output {
            *t.uses.entry(o.name.clone()).or_default() += 1;
        }
        Ok(t)
    }

    /// Translates every node, collecting one error per node that fails (nodes reading a failed node's outputs are
    /// skipped), then names the graph outputs.
    pub fn run(mut self, g: &GraphProto) -> Result<Graph> {
        let mut errors = Vec::new();
        let mut failed: HashSet<&str> = HashSet::new();
        for (i, node) in g.node.iter().enumerate() {
            if node.input.iter().any(|n| failed.contains(n.as_str())) {
                failed.extend(node.output.iter().map(String::as_str));
                continue;
            }
            if let Err(e) = self.node(node, i) {
                errors.push(format!(
                    "node {:?} ({}): {e}",
                    node_label(node, i),
                    node.op_type
                ));
                failed.extend(node.output.iter().map(String::as_str));
            }
        }
        if !errors.is_empty() {
            return Err(err(errors.join("; ")));
        }
        let outputs: Vec<String> = g.output.iter().map(|o| o.name.clone()).collect();
        self.name_outputs(&outputs)?;
        Ok(self.graph)
    }

    fn node(&mut self, node: &NodeProto, index: usize) -> Result<()> {
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(err(format!("domain {:?} is not supported", node.domain)));
        }
        if node.output.first().is_none_or(|o| o.is_empty()) {
            return Err(err("the node has no output"));
        }
        if let Some(a) = node.attribute.iter().find(|a| !a.ref_attr_name.is_empty()) {
            return Err(err(format!(
                "attribute {:?} refers to a function's attribute",
                a.name
            )));
        }
        let inputs: Vec<Option<Value>> = node
            .input
            .iter()
            .map(|name| {
                if name.is_empty() {
                    Ok(None)
                } else {
                    self.values.get(name).cloned().map(Some).ok_or_else(|| {
                        err(format!("input {name:?} is not produced before this node (unsorted graph or a cycle)"))
                    })
                }
            })
            .collect::<Result<_>>()?;
        let attrs = Attrs::new(&node.attribute);
        let op = node.op_type.as_str();
        let all_host = inputs
            .iter()
            .flatten()
            .all(|v| matches!(v, Value::Host { .. } | Value::Weight { .. }));
        let outputs = if matches!(op, "Shape" | "Size") && !all_host {
            // Shape and Size read only the dims: fold them on an empty stand-in of the right dims.
            let dims = match &inputs[0] {
                Some(Value::Data(d)) => d.dims.clone(),
                _ => return Err(err("input 0 is missing")),
            };
            let stand_in = HostTensor {
                dims,
                ..HostTensor::i64(vec![], vec![])
            };
            fold::fold(op, &attrs, &[Some(&stand_in)], self.opset)?
                .into_iter()
                .map(|t| Value::Host {
                    t: Rc::new(t),
                    dynamic: true,
                })
                .collect()
        } else if all_host && FOLDABLE.contains(&op) {
            let dynamic = inputs
                .iter()
                .flatten()
                .any(|v| matches!(v, Value::Host { dynamic: true, .. }));
            let hosts: Vec<Option<Rc<HostTensor>>> = inputs
                .iter()
                .map(|v| v.as_ref().map(|v| self.host(v)).transpose())
                .collect::<Result<_>>()?;
            let refs: Vec<Option<&HostTensor>> = hosts.iter().map(|h| h.as_deref()).collect();
            fold::fold(op, &attrs, &refs, self.opset)?
                .into_iter()
                .map(|t| Value::Host {
                    t: Rc::new(t),
                    dynamic,
                })
                .collect()
        } else if DATA_OPS.contains(&op) {
            let name = self.unique_name(&node_label(node, index));
            super::ops::translate(self, &name, op, &attrs, &inputs, node)?
        } else {
            return Err(err(format!("op {op:?} is not supported")));
        };
        for (name, value) in node.output.iter().zip(outputs) {
            if !name.is_empty() {
                self.values.insert(name.clone(), value);
            }
        }
        Ok(())
    }

    /// A host value's tensor, reading a weight's data when needed.
    pub fn host(&self, v: &Value) -> Result<Rc<HostTensor>> {
        match v {
            Value::Host { t, .. } => Ok(t.clone()),
            Value::Weight { name, .. } => {
                let w = self.constants.weights().get(name)?;
                Ok(Rc::new(HostTensor::f32(w.shape, w.data)))
            }
            _ => Err(err(
                "needs a value known before the graph runs, got a computed tensor",
            )),
        }
    }

    /// The host tensor of optional input `i`, if given.
    pub fn host_input(&self, inputs: &[Option<Value>], i: usize) -> Result<Option<Rc<HostTensor>>> {
        match inputs.get(i) {
            Some(Some(v)) => self
                .host(v)
                .map(Some)
                .map_err(|e| err(format!("input {i}: {e}"))),
            _ => Ok(None),
        }
    }

    /// Input `i` as a GPU tensor of floats.
    pub fn data(&self, inputs: &[Option<Value>], i: usize) -> Result<DataValue> {
        match inputs.get(i) {
            Some(Some(Value::Data(d))) if d.dtype == DType::F32 => Ok(d.clone()),
            Some(Some(Value::Data(d))) => Err(err(format!(
                "input {i} holds indices ({:?}); a float tensor is needed",
                d.dims
            ))),
            Some(Some(_)) => Err(err(format!(
                "input {i} is a constant where atrous needs a computed tensor"
            ))),
            _ => Err(err(format!("input {i} is missing"))),
        }
    }

    /// Input `i` as a GPU tensor: computed, or a constant turned into a `constant` node over a weight.
    pub fn operand(&mut self, inputs: &[Option<Value>], i: usize, base: &str) -> Result<DataValue> {
        match inputs.get(i) {
            Some(Some(Value::Data(_))) => self.data(inputs, i),
            Some(Some(v)) => {
                let v = v.clone();
                let (weight, dims) = self.weight(&v, &format!("{base}#const{i}"))?;
                let nchw = natural_nchw(&dims).ok_or_else(|| {
                    err(format!("constant input {i} has rank {} > 4", dims.len()))
                })?;
                let tensor = format!("{base}#const{i}");
                let node = self.unique_name(&tensor);
                self.emit(
                    &node,
                    Op::Constant {
                        weight,
                        shape: nchw.dims(),
                    },
                    vec![],
                    vec![tensor.clone()],
                )?;
                Ok(DataValue {
                    tensor,
                    dims,
                    nchw,
                    dtype: DType::F32,
                    indices: None,
                })
            }
            _ => Err(err(format!("input {i} is missing"))),
        }
    }

    /// A constant value as a named weight: an initializer's own name, or `name` for a folded one (added at load).
    pub fn weight(&mut self, v: &Value, name: &str) -> Result<(String, Vec<usize>)> {
        match v {
            Value::Weight { name, dims } => Ok((name.clone(), dims.clone())),
            Value::Host { dynamic: true, .. } => Err(err(
                "a constant operand computed from the input's shape is not supported",
            )),
            Value::Host { t, .. } => {
                let values = t.as_f32();
                self.add_constant(name, t.dims.clone(), values)?;
                Ok((name.to_string(), t.dims.clone()))
            }
            _ => Err(err(
                "needs a constant (an initializer), got a computed tensor",
            )),
        }
    }

    /// Adds a weight made by the translation (a folded constant, a batch norm's unit scale) at load; when compiling
    /// for other shapes it must already be there.
    pub fn add_constant(&mut self, name: &str, dims: Vec<usize>, values: Vec<f32>) -> Result<()> {
        match &mut self.constants {
            Constants::Add(w) => w.insert(name, dims, values),
            Constants::Existing(w) => match w.shape(name) {
                Some(d) if d == dims => Ok(()),
                _ => Err(err(format!(
                    "constant {name:?} ({dims:?}) differs from the one made at load: it depends on the input shape"
                ))),
            },
        }
    }

    pub fn unique_name(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while self.node_names.contains(&name) {
            k += 1;
            name = format!("{base}#{k}");
        }
        self.node_names.insert(name.clone());
        name
    }

    /// Adds an atrous node, inferring its outputs' shapes; returns their infos.
    pub fn emit(
        &mut self,
        name: &str,
        op: Op,
        inputs: Vec<String>,
        outputs: Vec<String>,
    ) -> Result<Vec<TensorInfo>> {
        let node = Node {
            name: name.to_string(),
            op,
            inputs,
            outputs,
        };
        let ins: Vec<TensorInfo> = node.inputs.iter().map(|n| self.infos[n]).collect();
        let outs = graph::node_outputs(&node, &ins)?;
        if outs.len() != node.outputs.len() {
            return Err(err(format!(
                "{} produces {} outputs, {} named",
                node.op.name(),
                outs.len(),
                node.outputs.len()
            )));
        }
        for (n, info) in node.outputs.iter().zip(&outs) {
            self.infos.insert(n.clone(), *info);
            self.producer.insert(n.clone(), self.graph.nodes.len());
        }
        self.graph.nodes.push(node);
        Ok(outs)
    }

    /// Adds a node with one float output named `output`, of ONNX dims `dims`.
    pub fn emit_data(
        &mut self,
        name: &str,
        op: Op,
        inputs: Vec<String>,
        output: &str,
        dims: Vec<usize>,
    ) -> Result<DataValue> {
        let info = self.emit(name, op, inputs, vec![output.to_string()])?[0];
        Ok(DataValue {
            tensor: output.to_string(),
            dims,
            nchw: info.shape,
            dtype: info.dtype,
            indices: None,
        })
    }

    /// Adds a node with one float output named `output` whose ONNX dims are its NCHW shape (a 4-D result).
    pub fn emit_image(
        &mut self,
        name: &str,
        op: Op,
        inputs: Vec<String>,
        output: &str,
    ) -> Result<DataValue> {
        let d = self.emit_data(name, op, inputs, output, vec![])?;
        Ok(DataValue {
            dims: d.nchw.dims().to_vec(),
            ..d
        })
    }

    /// How many nodes and graph outputs read an ONNX value.
    pub fn uses(&self, value: &str) -> usize {
        self.uses.get(value).copied().unwrap_or(0)
    }

    /// The atrous node that produced a tensor, if a node did.
    pub fn producer_mut(&mut self, tensor: &str) -> Option<&mut Node> {
        let i = *self.producer.get(tensor)?;
        self.graph.nodes.get_mut(i)
    }

    /// Renames a node's output tensor (only when nothing has read it yet).
    pub fn rename_output(&mut self, from: &str, to: &str) {
        if let Some(i) = self.producer.remove(from) {
            for o in &mut self.graph.nodes[i].outputs {
                if o == from {
                    *o = to.to_string();
                }
            }
            self.producer.insert(to.to_string(), i);
        }
        if let Some(info) = self.infos.remove(from) {
            self.infos.insert(to.to_string(), info);
        }
    }

    /// Graph outputs take their ONNX names: the producing node's tensor is renamed where possible, else copied.
    fn name_outputs(&mut self, outputs: &[String]) -> Result<()> {
        let mut taken: HashSet<String> = HashSet::new();
        for name in outputs {
            let d = match self.values.get(name) {
                Some(Value::Data(d)) => d.clone(),
                Some(_) => {
                    return Err(err(format!(
                        "graph output {name:?} is a constant; atrous computes outputs on the GPU"
                    )))
                }
                None => {
                    return Err(err(format!(
                        "graph output {name:?} is not produced by any node"
                    )))
                }
            };
            if d.tensor != *name {
                let is_input = self.graph.inputs.iter().any(|i| i.name == d.tensor);
                let readers = self
                    .graph
                    .nodes
                    .iter()
                    .any(|n| n.inputs.contains(&d.tensor));
                if !is_input
                    && !readers
                    && !taken.contains(&d.tensor)
                    && self.producer.contains_key(&d.tensor)
                {
                    self.rename_output(&d.tensor, name);
                } else {
                    let params = SlicePad {
                        start: [0; 4],
                        step: [1; 4],
                        output: d.nchw.dims(),
                        mode: PadMode::Constant { value: 0.0 },
                    };
                    let node = self.unique_name(&format!("{name}#copy"));
                    self.emit(
                        &node,
                        Op::SlicePad { params },
                        vec![d.tensor.clone()],
                        vec![name.clone()],
                    )?;
                }
            }
            taken.insert(name.clone());
        }
        self.graph.outputs = outputs.to_vec();
        Ok(())
    }
}

/// A node's name for messages and atrous node names: its ONNX name, or its op type and position.
pub fn node_label(node: &NodeProto, index: usize) -> String {
    if node.name.is_empty() {
        format!("{}_{index}", node.op_type)
    } else {
        node.name.clone()
    }
}
