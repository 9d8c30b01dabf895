//! Quantized ONNX models as input: every convolution node of a model, as a qconv layer.
//!
//! The model is read by a small protobuf reader ([`proto`]) written for the part of `onnx.proto`
//! qconv needs, so building qconv needs neither `protoc` nor network access. [`OnnxModel`] indexes
//! the main graph; [`OnnxModel::conv_nodes`] finds the quantized convolutions:
//!
//! - QOperator: `QLinearConv` (also in the `com.microsoft` domain) and `ConvInteger` nodes;
//! - QDQ: `DequantizeLinear -> Conv -> QuantizeLinear`, the group ONNX Runtime fuses into a
//!   `QLinearConv`, with the weight (and an int32 bias) dequantized from constants, a float
//!   bias quantized the way ONNX Runtime quantizes it when fusing, and an optional `Relu` /
//!   `Clip` between `Conv` and `QuantizeLinear` that the quantization makes redundant.
//!
//! For every node it also predicts how ONNX Runtime's CPU provider on x86 runs it
//! ([`OrtExecution`]): as it is, fused into `QLinearConv`, fused after converting int8
//! activations to uint8, or not fused at all (a float convolution, which qconv does not model).
//! [`backend`] reads the ONNX project's backend node tests (a one-node model whose scales, zero
//! points and weight are graph inputs fed from `.pb` files) as conformance cases.
//! See `docs/onnx-models.md`.

pub mod backend;
mod conv;
pub mod listing;
pub mod proto;
pub mod shape;
pub mod tensor;

use std::collections::{HashMap, HashSet};

pub use conv::{ConvFormat, ConvNode, NodeInput, OrtExecution};
use proto::{GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto, data_type};
use shape::Shape;
use tensor::{TensorData, TensorValue};

use crate::error::{Error, Result};

/// A parsed ONNX model with its main graph indexed.
#[derive(Clone, Debug)]
pub struct OnnxModel {
    /// The file the model came from (for errors and reports).
    pub path: String,
    pub ir_version: Option<i64>,
    /// `(domain, version)` of every operator set the model imports.
    pub opsets: Vec<(String, i64)>,
    pub producer: String,
    pub graph: GraphProto,
    producer_of: HashMap<String, usize>,
    consumers: HashMap<String, Vec<usize>>,
    initializer: HashMap<String, usize>,
    constant_node: HashMap<String, usize>,
    sparse: HashSet<String>,
    graph_inputs: HashSet<String>,
    graph_outputs: HashSet<String>,
    declared_type: HashMap<String, i32>,
    shapes: HashMap<String, Shape>,
}

impl OnnxModel {
    /// Reads and indexes the model in `path`.
    pub fn read(path: &str) -> Result<Self> {
        if let Ok(meta) = std::fs::metadata(path)
            && meta.len() > proto::MAX_MODEL_BYTES
        {
            return Err(Error::parse(
                path,
                "",
                format!(
                    "{} bytes: larger than the 2 GiB protobuf limit (weights in external \
                         files are not read)",
                    meta.len()
                ),
            ));
        }
        let bytes = super::read_file(path)?;
        Self::parse(path, &bytes)
    }

    /// Parses and indexes a model from its bytes; `path` names it in errors.
    pub fn parse(path: &str, bytes: &[u8]) -> Result<Self> {
        let ModelProto {
            ir_version,
            opset_import,
            producer_name,
            producer_version,
            graph,
        } = proto::parse_model(path, bytes)?;
        let graph = graph.ok_or_else(|| {
            Error::parse(
                path,
                "field `model.graph`",
                "missing: the model has no graph",
            )
        })?;
        let producer = if producer_version.is_empty() {
            producer_name
        } else {
            format!("{producer_name} {producer_version}")
        };
        Ok(Self::index(path, ir_version, opset_import, producer, graph))
    }

    /// The graph inputs fed from outside (not initializers), in graph order: what a test data
    /// set's `input_N.pb` files bind to.
    pub fn fed_inputs(&self) -> Vec<&ValueInfoProto> {
        self.graph
            .input
            .iter()
            .filter(|v| !self.initializer.contains_key(&v.name))
            .collect()
    }

    /// This model with `tensors` bound to graph inputs as constants: each tensor becomes an
    /// initializer named after its input, so that scales, zero points and weights fed at run
    /// time (as in the ONNX backend tests) resolve like initializers. The caller checks that each
    /// name is a fed input and that the tensor fits it.
    pub fn with_bound_inputs(&self, tensors: Vec<(String, TensorProto)>) -> Self {
        let mut graph = self.graph.clone();
        for (name, mut t) in tensors {
            t.name = name;
            graph.initializer.push(t);
        }
        Self::index(
            &self.path,
            self.ir_version,
            self.opsets.clone(),
            self.producer.clone(),
            graph,
        )
    }

    /// Indexes `graph`.
    fn index(
        path: &str,
        ir_version: Option<i64>,
        opsets: Vec<(String, i64)>,
        producer: String,
        graph: GraphProto,
    ) -> Self {
        let mut m = OnnxModel {
            path: path.to_string(),
            ir_version,
            opsets,
            producer,
            producer_of: HashMap::new(),
            consumers: HashMap::new(),
            initializer: HashMap::new(),
            constant_node: HashMap::new(),
            sparse: graph.sparse_initializer_names.iter().cloned().collect(),
            graph_inputs: graph.input.iter().map(|v| v.name.clone()).collect(),
            graph_outputs: graph.output.iter().map(|v| v.name.clone()).collect(),
            declared_type: HashMap::new(),
            shapes: HashMap::new(),
            graph,
        };
        for (i, t) in m.graph.initializer.iter().enumerate() {
            m.initializer.insert(t.name.clone(), i);
            m.declared_type.insert(t.name.clone(), t.data_type);
        }
        for v in m
            .graph
            .input
            .iter()
            .chain(&m.graph.value_info)
            .chain(&m.graph.output)
        {
            if let Some(t) = v.elem_type {
                m.declared_type.entry(v.name.clone()).or_insert(t);
            }
        }
        for (i, n) in m.graph.node.iter().enumerate() {
            for out in n.output.iter().filter(|o| !o.is_empty()) {
                m.producer_of.insert(out.clone(), i);
                if n.op_type == "Constant" && n.domain.is_empty() {
                    m.constant_node.insert(out.clone(), i);
                }
            }
            for inp in n.input.iter().filter(|s| !s.is_empty()) {
                m.consumers.entry(inp.clone()).or_default().push(i);
            }
        }
        let shapes = {
            let ints = |name: &str| -> Option<Vec<i64>> {
                match m.constant(name).ok()?? {
                    TensorValue {
                        data: TensorData::Int(v),
                        ..
                    } if v.len() <= 16 => Some(v),
                    _ => None,
                }
            };
            shape::infer(&m.graph, &ints)
        };
        m.shapes = shapes;
        m
    }

    /// An error in this model at `location`.
    pub(crate) fn err(&self, location: impl Into<String>, message: impl Into<String>) -> Error {
        Error::parse(&self.path, location, message)
    }

    /// How a node is named in messages: its name, or its position and operator.
    pub fn node_label(&self, index: usize) -> String {
        match self.graph.node.get(index) {
            Some(n) if !n.name.is_empty() => format!("node `{}`", n.name),
            Some(n) => format!("node #{index} ({})", n.op_type),
            None => format!("node #{index}"),
        }
    }

    /// The node producing tensor `name`, if a node does.
    pub fn producer(&self, name: &str) -> Option<(usize, &NodeProto)> {
        let i = *self.producer_of.get(name)?;
        Some((i, &self.graph.node[i]))
    }

    /// The nodes consuming tensor `name`, once per input slot that refers to it.
    pub fn consumer_edges(&self, name: &str) -> usize {
        self.consumers.get(name).map_or(0, |c| {
            c.iter()
                .map(|&i| {
                    self.graph.node[i]
                        .input
                        .iter()
                        .filter(|s| s.as_str() == name)
                        .count()
                })
                .sum::<usize>()
                .max(c.len())
        })
    }

    /// The distinct nodes consuming tensor `name`.
    pub fn consumer_nodes(&self, name: &str) -> Vec<usize> {
        let mut v = self.consumers.get(name).cloned().unwrap_or_default();
        v.dedup();
        v
    }

    /// Whether `name` is an output of the graph.
    pub fn is_graph_output(&self, name: &str) -> bool {
        self.graph_outputs.contains(name)
    }

    /// The element type the model declares for tensor `name` (graph input/output, value_info or
    /// initializer).
    pub fn declared_type(&self, name: &str) -> Option<i32> {
        self.declared_type.get(name).copied()
    }

    /// The static shape of tensor `name`, declared or propagated (dimensions may be unknown).
    pub fn shape(&self, name: &str) -> Option<&Shape> {
        self.shapes.get(name)
    }

    /// The value of tensor `name` when it is a constant (an initializer or a `Constant` node's
    /// output); `Ok(None)` when it is computed or fed at run time; an error when it is a constant
    /// qconv cannot read.
    pub fn constant(&self, name: &str) -> Result<Option<TensorValue>> {
        let err = |m: String| self.err(format!("tensor `{name}`"), m);
        if let Some(&i) = self.initializer.get(name) {
            return tensor::decode(&self.graph.initializer[i], &err).map(Some);
        }
        if self.sparse.contains(name) {
            return Err(err(
                "is a sparse initializer, which qconv does not read".into()
            ));
        }
        let Some(&i) = self.constant_node.get(name) else {
            return Ok(None);
        };
        let n = &self.graph.node[i];
        let Some(a) = n.attribute.first() else {
            return Err(err("Constant node without a value".into()));
        };
        let scalar = |data: TensorData, dt: i32| TensorValue {
            data_type: dt,
            dims: Vec::new(),
            data,
        };
        let vector = |data: TensorData, dt: i32, len: usize| TensorValue {
            data_type: dt,
            dims: vec![len],
            data,
        };
        match a.name.as_str() {
            "value" => match &a.t {
                Some(t) => tensor::decode(t, &err).map(Some),
                None => Err(err("Constant `value` attribute holds no tensor".into())),
            },
            "value_float" => {
                Ok(a.f.map(|f| scalar(TensorData::Float(vec![f64::from(f)]), data_type::FLOAT)))
            }
            "value_int" => {
                Ok(a.i.map(|i| scalar(TensorData::Int(vec![i]), data_type::INT64)))
            }
            "value_floats" => Ok(Some(vector(
                TensorData::Float(a.floats.iter().map(|&f| f64::from(f)).collect()),
                data_type::FLOAT,
                a.floats.len(),
            ))),
            "value_ints" => Ok(Some(vector(
                TensorData::Int(a.ints.clone()),
                data_type::INT64,
                a.ints.len(),
            ))),
            other => Err(err(format!(
                "Constant node with a `{other}` value, which qconv does not read"
            ))),
        }
    }

    /// Whether `name` is fed to the graph from outside (a graph input that is not an
    /// initializer).
    pub fn is_graph_input(&self, name: &str) -> bool {
        self.graph_inputs.contains(name) && !self.initializer.contains_key(name)
    }

    /// Every quantized convolution node of the main graph, in graph order.
    pub fn conv_nodes(&self) -> Result<Vec<ConvNode>> {
        let mut out = Vec::new();
        for i in 0..self.graph.node.len() {
            if let Some(mut node) = conv::resolve(self, i)? {
                node.index = out.len();
                out.push(node);
            }
        }
        Ok(out)
    }

    /// `Conv` nodes of the main graph that are not quantized convolutions, with the reason.
    pub fn unquantized_convs(&self) -> Vec<(usize, String)> {
        (0..self.graph.node.len())
            .filter_map(|i| conv::unquantized_reason(self, i).map(|r| (i, r)))
            .collect()
    }

    /// The convolution node `spec` names: a node name, else an index into
    /// [`conv_nodes`](Self::conv_nodes).
    pub fn find_conv(&self, spec: &str) -> Result<ConvNode> {
        let nodes = self.conv_nodes()?;
        if let Some(n) = nodes.iter().find(|n| n.name == spec) {
            return Ok(n.clone());
        }
        if let Some(i) = self.graph.node.iter().position(|n| n.name == spec) {
            let n = &self.graph.node[i];
            let why = conv::unquantized_reason(self, i).unwrap_or_else(|| {
                format!(
                    "it is a{} {} node, not a convolution",
                    if n.op_type.starts_with(['A', 'E', 'I', 'O', 'U']) {
                        "n"
                    } else {
                        ""
                    },
                    if n.domain.is_empty() {
                        n.op_type.clone()
                    } else {
                        format!("{}.{}", n.domain, n.op_type)
                    }
                )
            });
            return Err(self.err(
                format!("node `{spec}`"),
                format!(
                    "{why}; qconv reads QLinearConv, ConvInteger and DequantizeLinear -> Conv -> \
                     QuantizeLinear nodes (`qconv layers {}` lists them)",
                    self.path
                ),
            ));
        }
        if let Ok(i) = spec.parse::<usize>() {
            return nodes.into_iter().nth(i).ok_or_else(|| {
                self.err(
                    format!("node #{spec}"),
                    format!(
                        "the model has {} convolution nodes (#0 to #{})",
                        self.conv_nodes().map_or(0, |n| n.len()),
                        self.conv_nodes().map_or(0, |n| n.len()).saturating_sub(1)
                    ),
                )
            });
        }
        let names: Vec<&str> = nodes.iter().take(5).map(|n| n.name.as_str()).collect();
        Err(self.err(
            format!("node `{spec}`"),
            format!(
                "no node of that name (convolution nodes: {}{}; or give an index 0..{})",
                names.join(", "),
                if nodes.len() > 5 { ", ..." } else { "" },
                nodes.len()
            ),
        ))
    }
}
