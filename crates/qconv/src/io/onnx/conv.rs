//! Convolution nodes of an ONNX model: QLinearConv, ConvInteger and QDQ groups, resolved into
//! everything a qconv layer needs except the input tensor, and ONNX Runtime's handling of each.

use super::OnnxModel;
use super::proto::{NodeProto, data_type};
use super::shape::Shape;
use super::tensor::{TensorData, TensorValue};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::geometry::{Padding, check_elements};
use crate::layer::{Activations, Bias, ConvLayer, ConvParams, OutputQuant, Weights};
use crate::quant::WeightQuant;

/// Largest stride, dilation or padding accepted from a model (far above any real layer; keeps
/// every size computation far from overflow).
const MAX_ATTR: i64 = 1 << 20;

/// How a convolution is written in the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvFormat {
    /// A `QLinearConv` node (QOperator format).
    QLinearConv,
    /// A `ConvInteger` node: int32 output, no scales.
    ConvInteger,
    /// `DequantizeLinear -> Conv -> QuantizeLinear` (QDQ format).
    Qdq,
}

impl ConvFormat {
    /// The name shown in reports.
    pub fn name(self) -> &'static str {
        match self {
            ConvFormat::QLinearConv => "QLinearConv",
            ConvFormat::ConvInteger => "ConvInteger",
            ConvFormat::Qdq => "QDQ Conv",
        }
    }
}

/// How ONNX Runtime's CPU execution provider on x86 runs a convolution node (default session
/// options, version 1.32).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrtExecution {
    /// The QLinearConv or ConvInteger node as it is.
    AsIs,
    /// The QDQ group fused into one QLinearConv.
    Fused,
    /// The QDQ group fused into a uint8 QLinearConv after the int8 activations around it were
    /// converted to uint8 (value + 128, zero point + 128) by `QDQS8ToU8Transformer`.
    FusedAsUint8,
    /// The QDQ group left as DequantizeLinear, a float32 Conv and QuantizeLinear.
    NotFused(String),
}

impl OrtExecution {
    /// A short description.
    pub fn short(&self) -> &'static str {
        match self {
            OrtExecution::AsIs => "as is",
            OrtExecution::Fused => "fused QLinearConv",
            OrtExecution::FusedAsUint8 => "fused as uint8",
            OrtExecution::NotFused(_) => "not fused (float)",
        }
    }
}

/// A convolution node of a model, resolved: everything of its layer but the input tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvNode {
    /// Position among the model's convolution nodes (what `MODEL.onnx#INDEX` refers to).
    pub index: usize,
    /// Position of the Conv / QLinearConv / ConvInteger node in the graph.
    pub graph_index: usize,
    /// The node's name (may be empty).
    pub name: String,
    pub format: ConvFormat,
    /// The quantized input tensor (for QDQ, the DequantizeLinear's input).
    pub input_tensor: String,
    /// The quantized output tensor (for QDQ, the QuantizeLinear's output).
    pub output_tensor: String,
    /// The input tensor's type as the model stores it.
    pub input_dtype: DType,
    /// The input's static shape, declared or propagated (dimensions may be unknown).
    pub input_shape: Option<Shape>,
    pub input_scale: Option<f64>,
    pub input_zero_point: i32,
    pub weight: Weights,
    pub bias: Option<Bias>,
    /// The output's quantization as the model stores it.
    pub output: OutputQuant,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// `[top, left, bottom, right]` from `pads` (ignored when `auto_pad` is set).
    pub pads: [usize; 4],
    /// `NOTSET`, `VALID`, `SAME_UPPER` or `SAME_LOWER`.
    pub auto_pad: String,
    pub groups: usize,
    pub ort: OrtExecution,
    /// Things worth knowing about how the node was read.
    pub notes: Vec<String>,
}

/// An input tensor for a node: NCHW shape and values in the model's input type.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeInput {
    pub shape: [usize; 4],
    pub data: Vec<i32>,
}

impl ConvNode {
    /// How the node is named in reports: its name, or `#index`.
    pub fn label(&self) -> String {
        if self.name.is_empty() {
            format!("#{}", self.index)
        } else {
            self.name.clone()
        }
    }

    /// The padding for an input of height `h` and width `w`.
    pub fn padding(&self, h: usize, w: usize) -> Padding {
        let same = |input: usize, k: usize, s: usize, d: usize| {
            let out = input.div_ceil(s);
            let span = d * k.saturating_sub(1) + 1;
            (out.saturating_sub(1) * s + span).saturating_sub(input)
        };
        match self.auto_pad.as_str() {
            "VALID" => Padding::default(),
            "SAME_UPPER" | "SAME_LOWER" => {
                let th = same(h, self.kernel[0], self.stride[0], self.dilation[0]);
                let tw = same(w, self.kernel[1], self.stride[1], self.dilation[1]);
                let (bh, bw) = if self.auto_pad == "SAME_UPPER" {
                    (th / 2, tw / 2)
                } else {
                    (th - th / 2, tw - tw / 2)
                };
                Padding {
                    top: bh,
                    left: bw,
                    bottom: th - bh,
                    right: tw - bw,
                }
            }
            _ => Padding {
                top: self.pads[0],
                left: self.pads[1],
                bottom: self.pads[2],
                right: self.pads[3],
            },
        }
    }

    /// The input shape when the model fixes every dimension.
    pub fn static_input_shape(&self) -> Option<[usize; 4]> {
        match self.input_shape.as_deref() {
            Some(&[Some(n), Some(c), Some(h), Some(w)]) => Some([n, c, h, w]),
            _ => None,
        }
    }

    /// The layer ONNX Runtime computes for this node, on `input` (the node's input tensor in
    /// the model's type). Without `input` the input is a placeholder filled with the zero point
    /// (for `check`, which needs only the shape); a batch size the model leaves open is then 1.
    /// When ONNX Runtime runs the node as uint8 ([`OrtExecution::FusedAsUint8`]) the layer is
    /// that uint8 layer: activations, output and zero points shifted by +128.
    pub fn layer(&self, model: &OnnxModel, input: Option<&NodeInput>) -> Result<ConvLayer> {
        let at = format!("node `{}`", self.label());
        let shape = match input {
            Some(i) => i.shape,
            None => match self.input_shape.as_deref() {
                Some(&[n, Some(c), Some(h), Some(w)]) => [n.unwrap_or(1), c, h, w],
                _ => {
                    return Err(model.err(
                        at,
                        format!(
                            "the shape of its input tensor `{}` is not recorded in the model \
                             (no value_info, and it cannot be propagated from the graph \
                             inputs); give the tensor with --input FILE.npy",
                            self.input_tensor
                        ),
                    ));
                }
            },
        };
        let count = check_elements("input.shape", &shape).map_err(|e| in_node(model, &at, e))?;
        let mut data = match input {
            Some(i) => i.data.clone(),
            None => vec![self.input_zero_point; count],
        };
        let (mut dtype, mut zero_point, mut output) =
            (self.input_dtype, self.input_zero_point, self.output.clone());
        if self.ort == OrtExecution::FusedAsUint8 {
            data.iter_mut().for_each(|v| *v += 128);
            dtype = DType::Uint8;
            zero_point += 128;
            output.dtype = DType::Uint8;
            output.zero_point += 128;
        }
        let name = format!(
            "{}#{}",
            std::path::Path::new(&model.path)
                .file_name()
                .map_or(model.path.clone(), |f| f.to_string_lossy().into_owned()),
            self.label()
        );
        let layer = ConvLayer::new(
            name,
            ConvParams {
                kernel: Some(self.kernel),
                stride: self.stride,
                dilation: self.dilation,
                padding: self.padding(shape[2], shape[3]),
                groups: self.groups,
            },
            Activations {
                dtype,
                shape,
                data,
                scale: self.input_scale,
                zero_point,
            },
            self.weight.clone(),
            self.bias.clone(),
            output,
            false,
        );
        layer.map_err(|e| in_node(model, &at, e))
    }
}

/// Attributes an `Invalid` error to a node of the model.
fn in_node(model: &OnnxModel, at: &str, e: Error) -> Error {
    match e {
        Error::Invalid { field, message } => model.err(format!("{at}, field `{field}`"), message),
        other => other,
    }
}

fn is_onnx_domain(n: &NodeProto) -> bool {
    n.domain.is_empty() || n.domain == "ai.onnx"
}

fn is_op(n: &NodeProto, op: &str) -> bool {
    n.op_type == op && (is_onnx_domain(n) || n.domain == "com.microsoft")
}

/// Why graph node `i` is a `Conv` that is not a quantized convolution, or `None` when it is not
/// a `Conv` or is one.
pub(super) fn unquantized_reason(m: &OnnxModel, i: usize) -> Option<String> {
    let n = &m.graph.node[i];
    if !(n.op_type == "Conv" && is_onnx_domain(n)) {
        return None;
    }
    let dq_input = n
        .input
        .first()
        .and_then(|x| m.producer(x))
        .is_some_and(|(_, p)| is_op(p, "DequantizeLinear"));
    if !dq_input {
        return Some("it is a float Conv (its input does not come from DequantizeLinear)".into());
    }
    output_quantizer(m, n).err()
}

/// The QuantizeLinear a QDQ Conv's output goes to, with the Relu / Clip in between if any; or
/// why there is none.
fn output_quantizer(
    m: &OnnxModel,
    n: &NodeProto,
) -> std::result::Result<(usize, Option<usize>), String> {
    let Some(y) = n.output.first() else {
        return Err("it has no output".into());
    };
    let single = |t: &str| -> Option<usize> {
        let c = m.consumer_nodes(t);
        (c.len() == 1 && m.consumer_edges(t) == 1 && !m.is_graph_output(t)).then(|| c[0])
    };
    let not_quantized = "its output is not quantized (it does not go to a single QuantizeLinear)";
    let Some(next) = single(y) else {
        return Err(not_quantized.into());
    };
    let nn = &m.graph.node[next];
    if is_op(nn, "QuantizeLinear") {
        return Ok((next, None));
    }
    if is_onnx_domain(nn)
        && (nn.op_type == "Relu" || nn.op_type == "Clip")
        && let Some(q) = nn.output.first().and_then(|t| single(t))
        && is_op(&m.graph.node[q], "QuantizeLinear")
    {
        return Ok((q, Some(next)));
    }
    Err(not_quantized.into())
}

/// Resolves graph node `i` when it is a quantized convolution.
pub(super) fn resolve(m: &OnnxModel, i: usize) -> Result<Option<ConvNode>> {
    let n = &m.graph.node[i];
    let r = Resolver {
        m,
        n,
        at: m.node_label(i),
    };
    if n.op_type == "QLinearConv" && (is_onnx_domain(n) || n.domain == "com.microsoft") {
        return r.qlinear(i).map(Some);
    }
    if n.op_type == "ConvInteger" && is_onnx_domain(n) {
        return r.conv_integer(i).map(Some);
    }
    if n.op_type == "Conv" && is_onnx_domain(n) && unquantized_reason(m, i).is_none() {
        return r.qdq(i).map(Some);
    }
    Ok(None)
}

/// Strides, dilations, pads, auto_pad and groups of a node.
type Geometry = ([usize; 2], [usize; 2], [usize; 4], String, usize);

/// A weight tensor with its per-tensor or per-channel parameters.
struct WeightParts {
    weight: Weights,
}

struct Resolver<'a> {
    m: &'a OnnxModel,
    n: &'a NodeProto,
    at: String,
}

/// The qconv dtype of an 8-bit ONNX data type.
fn dtype_of(t: i32) -> Option<DType> {
    match t {
        data_type::UINT8 => Some(DType::Uint8),
        data_type::INT8 => Some(DType::Int8),
        _ => None,
    }
}

impl<'a> Resolver<'a> {
    fn err(&self, what: &str, message: impl Into<String>) -> Error {
        self.m.err(format!("{}, {what}", self.at), message)
    }

    /// Input slot `slot` of node `node` (named `what` in errors): its tensor name, required.
    fn input_of(&self, node: &'a NodeProto, slot: usize, what: &str) -> Result<&'a str> {
        match node.input.get(slot) {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(self.err(
                what,
                format!(
                    "missing: {} has {} inputs",
                    if std::ptr::eq(node, self.n) {
                        "the node".to_string()
                    } else {
                        format!("its {} `{}`", node.op_type, node.name)
                    },
                    node.input.iter().filter(|s| !s.is_empty()).count()
                ),
            )),
        }
    }

    /// The constant tensor `name` (named `what` in errors); an error when it is not a constant.
    fn constant(&self, name: &str, what: &str) -> Result<TensorValue> {
        match self.m.constant(name)? {
            Some(v) => Ok(v),
            None => Err(self.err(
                what,
                format!(
                    "`{name}` is {}; qconv needs it as a constant (an initializer)",
                    if let Some((_, p)) = self.m.producer(name) {
                        format!("computed at run time by a {} node", p.op_type)
                    } else if self.m.is_graph_input(name) {
                        "a graph input".to_string()
                    } else {
                        "not defined anywhere in the graph (a missing initializer)".to_string()
                    }
                ),
            )),
        }
    }

    fn floats(&self, v: &TensorValue, what: &str) -> Result<Vec<f64>> {
        match (&v.data, v.data_type) {
            (TensorData::Float(f), data_type::FLOAT) => {
                if let Some(bad) = f.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                    return Err(self.err(what, format!("scale {bad} is not finite and > 0")));
                }
                Ok(f.clone())
            }
            _ => Err(self.err(
                what,
                format!(
                    "has type {}, expected float (float32)",
                    data_type::name(v.data_type)
                ),
            )),
        }
    }

    /// A per-tensor scale: a float constant with one element.
    fn scalar_scale(&self, name: &str, what: &str) -> Result<f64> {
        let v = self.constant(name, what)?;
        let f = self.floats(&v, what)?;
        match f.as_slice() {
            [s] => Ok(*s),
            _ => Err(self.err(
                what,
                format!("has {} values, expected one (per-tensor)", f.len()),
            )),
        }
    }

    /// 8-bit integer values and their dtype.
    fn ints8(&self, v: &TensorValue, what: &str) -> Result<(DType, Vec<i32>)> {
        let dtype = dtype_of(v.data_type).ok_or_else(|| {
            self.err(
                what,
                format!(
                    "has type {}, expected uint8 or int8 (qconv models 8-bit quantization)",
                    data_type::name(v.data_type)
                ),
            )
        })?;
        let TensorData::Int(ints) = &v.data else {
            return Err(self.err(what, "holds no integers"));
        };
        Ok((dtype, ints.iter().map(|&x| x as i32).collect()))
    }

    /// A per-tensor zero point: an 8-bit constant with one element.
    fn scalar_zero_point(&self, name: &str, what: &str) -> Result<(DType, i32)> {
        let v = self.constant(name, what)?;
        let (dtype, z) = self.ints8(&v, what)?;
        match z.as_slice() {
            [z] => Ok((dtype, *z)),
            _ => Err(self.err(
                what,
                format!("has {} values, expected one (per-tensor)", z.len()),
            )),
        }
    }

    /// The weight (OIHW, 8-bit constant) with scales and zero points (`None` for ConvInteger),
    /// per-tensor or per output channel.
    fn weight(
        &self,
        w_name: &str,
        scale: Option<(&str, &str)>,
        zero_point: Option<(&str, &str)>,
        axis: Option<i64>,
    ) -> Result<WeightParts> {
        let w = self.constant(w_name, "weight")?;
        let (dtype, data) = self.ints8(&w, "weight")?;
        let shape: [usize; 4] = match w.dims.as_slice() {
            &[o, i, h, w] => [o, i, h, w],
            d => {
                return Err(self.err(
                    "weight",
                    format!(
                        "has {} dimensions {d:?}; qconv handles 2-D convolutions (OIHW weights)",
                        d.len()
                    ),
                ));
            }
        };
        let oc = shape[0];
        let scales = match scale {
            Some((name, what)) => {
                let v = self.constant(name, what)?;
                let s = self.floats(&v, what)?;
                if s.len() != 1 && s.len() != oc {
                    return Err(self.err(
                        what,
                        format!(
                            "has {} values, expected 1 (per-tensor) or {oc} (one per output channel)",
                            s.len()
                        ),
                    ));
                }
                Some(s)
            }
            None => None,
        };
        let zero_points = match zero_point {
            Some((name, what)) => {
                let v = self.constant(name, what)?;
                let (zdtype, z) = self.ints8(&v, what)?;
                if zdtype != dtype {
                    return Err(self.err(
                        what,
                        format!("has type {zdtype}, but the weight is {dtype}"),
                    ));
                }
                z
            }
            None => vec![0],
        };
        let n_scales = scales.as_ref().map_or(1, |s| s.len());
        let per_channel = n_scales > 1 || zero_points.len() > 1;
        if per_channel && let Some(axis) = axis {
            let a = if axis < 0 { axis + 4 } else { axis };
            if a != 0 {
                return Err(self.err(
                    "weight",
                    format!(
                        "per-channel parameters along axis {axis}; qconv handles axis 0 \
                             (output channels)"
                    ),
                ));
            }
        }
        let expand = |v: Vec<i32>| -> Result<Vec<i32>> {
            match v.len() {
                n if n == oc => Ok(v),
                1 if per_channel => Ok(vec![v[0]; oc]),
                1 => Ok(v),
                n => Err(self.err(
                    "weight zero point",
                    format!("has {n} values, expected 1 or {oc} (one per output channel)"),
                )),
            }
        };
        let zero_points = expand(zero_points)?;
        let scales = scales.map(|s| {
            if per_channel && s.len() == 1 {
                vec![s[0]; oc]
            } else {
                s
            }
        });
        Ok(WeightParts {
            weight: Weights {
                dtype,
                shape,
                data,
                quant: WeightQuant {
                    scales,
                    zero_points,
                    per_channel,
                },
            },
        })
    }

    /// An int32 bias constant with one value per output channel.
    fn int32_bias(&self, name: &str, oc: usize, what: &str) -> Result<Vec<i32>> {
        let v = self.constant(name, what)?;
        match (&v.data, v.data_type) {
            (TensorData::Int(b), data_type::INT32) if b.len() == oc => {
                Ok(b.iter().map(|&x| x as i32).collect())
            }
            (TensorData::Int(b), data_type::INT32) => Err(self.err(
                what,
                format!(
                    "has {} values, expected one per output channel ({oc})",
                    b.len()
                ),
            )),
            _ => Err(self.err(
                what,
                format!("has type {}, expected int32", data_type::name(v.data_type)),
            )),
        }
    }

    fn attr_pair(&self, name: &str, default: usize) -> Result<[usize; 2]> {
        match self.n.attr(name) {
            None => Ok([default, default]),
            Some(a) => match a.ints.as_slice() {
                &[a0, a1] if [a0, a1].iter().all(|a| (1..=MAX_ATTR).contains(a)) => {
                    Ok([a0 as usize, a1 as usize])
                }
                v => Err(self.err(
                    &format!("attribute `{name}`"),
                    format!("{v:?}: expected two integers in [1, {MAX_ATTR}] (a 2-D convolution)"),
                )),
            },
        }
    }

    /// The geometry attributes, checked against the weight's shape.
    fn geometry(&self, weight: &Weights) -> Result<Geometry> {
        let kernel = [weight.shape[2], weight.shape[3]];
        if let Some(a) = self.n.attr("kernel_shape") {
            let k: Vec<i64> = a.ints.clone();
            if k.len() != 2 || k[0] as usize != kernel[0] || k[1] as usize != kernel[1] {
                return Err(self.err(
                    "attribute `kernel_shape`",
                    format!("{k:?} does not match the weight's shape {:?}", weight.shape),
                ));
            }
        }
        let stride = self.attr_pair("strides", 1)?;
        let dilation = self.attr_pair("dilations", 1)?;
        let pads = match self.n.attr("pads") {
            None => [0; 4],
            Some(a) => match a.ints.as_slice() {
                &[t, l, b, r] if [t, l, b, r].iter().all(|p| (0..=MAX_ATTR).contains(p)) => {
                    [t as usize, l as usize, b as usize, r as usize]
                }
                v => {
                    return Err(self.err(
                        "attribute `pads`",
                        format!(
                            "{v:?}: expected four non-negative integers [top, left, bottom, right]"
                        ),
                    ));
                }
            },
        };
        let auto_pad = match self.n.attr("auto_pad") {
            None => "NOTSET".to_string(),
            Some(a) => {
                let s = String::from_utf8_lossy(a.s.as_deref().unwrap_or_default()).into_owned();
                match s.as_str() {
                    "" | "NOTSET" => "NOTSET".into(),
                    "VALID" | "SAME_UPPER" | "SAME_LOWER" => s,
                    other => {
                        return Err(self.err(
                            "attribute `auto_pad`",
                            format!("`{other}` (expected NOTSET, VALID, SAME_UPPER or SAME_LOWER)"),
                        ));
                    }
                }
            }
        };
        let groups = match self.n.attr("group").and_then(|a| a.i) {
            None => 1,
            Some(g) if (1..=1 << 24).contains(&g) => g as usize,
            Some(g) => {
                return Err(self.err(
                    "attribute `group`",
                    format!("{g}: must be a positive integer"),
                ));
            }
        };
        Ok((stride, dilation, pads, auto_pad, groups))
    }

    #[allow(clippy::too_many_arguments)]
    fn node(
        &self,
        graph_index: usize,
        format: ConvFormat,
        input_tensor: &str,
        output_tensor: &str,
        input: (DType, Option<f64>, i32),
        weight: Weights,
        bias: Option<Bias>,
        output: OutputQuant,
        ort: OrtExecution,
        notes: Vec<String>,
    ) -> Result<ConvNode> {
        let (stride, dilation, pads, auto_pad, groups) = self.geometry(&weight)?;
        if let Some(t) = self.m.declared_type(input_tensor)
            && dtype_of(t) != Some(input.0)
        {
            return Err(self.err(
                "input",
                format!(
                    "tensor `{input_tensor}` is declared {}, but its zero point is {}",
                    data_type::name(t),
                    input.0
                ),
            ));
        }
        let input_shape = self.m.shape(input_tensor).cloned();
        if let Some(s) = &input_shape
            && s.len() != 4
        {
            return Err(self.err(
                "input",
                format!(
                    "tensor `{input_tensor}` has {} dimensions; qconv handles 2-D convolutions \
                         (NCHW input)",
                    s.len()
                ),
            ));
        }
        Ok(ConvNode {
            index: 0,
            graph_index,
            name: self.n.name.clone(),
            format,
            input_tensor: input_tensor.to_string(),
            output_tensor: output_tensor.to_string(),
            input_dtype: input.0,
            input_shape,
            input_scale: input.1,
            input_zero_point: input.2,
            kernel: [weight.shape[2], weight.shape[3]],
            weight,
            bias,
            output,
            stride,
            dilation,
            pads,
            auto_pad,
            groups,
            ort,
            notes,
        })
    }

    fn qlinear(&self, i: usize) -> Result<ConvNode> {
        let n = self.n;
        if n.attr("channels_last").and_then(|a| a.i) == Some(1) {
            return Err(self.err(
                "attribute `channels_last`",
                "1: a channels-last (NHWC) QLinearConv, as ONNX Runtime writes into optimized \
                 models; qconv reads the model before ONNX Runtime's optimizations",
            ));
        }
        let x = self.input_of(n, 0, "input 0 (x)")?;
        let x_scale = self.scalar_scale(
            self.input_of(n, 1, "input 1 (x_scale)")?,
            "input 1 (x_scale)",
        )?;
        let (x_dtype, x_zp) = self.scalar_zero_point(
            self.input_of(n, 2, "input 2 (x_zero_point)")?,
            "input 2 (x_zero_point)",
        )?;
        let w = self.weight(
            self.input_of(n, 3, "input 3 (w)")?,
            Some((
                self.input_of(n, 4, "input 4 (w_scale)")?,
                "input 4 (w_scale)",
            )),
            Some((
                self.input_of(n, 5, "input 5 (w_zero_point)")?,
                "input 5 (w_zero_point)",
            )),
            None,
        )?;
        let y_scale = self.scalar_scale(
            self.input_of(n, 6, "input 6 (y_scale)")?,
            "input 6 (y_scale)",
        )?;
        let (y_dtype, y_zp) = self.scalar_zero_point(
            self.input_of(n, 7, "input 7 (y_zero_point)")?,
            "input 7 (y_zero_point)",
        )?;
        let oc = w.weight.shape[0];
        let bias = match n.input.get(8).filter(|s| !s.is_empty()) {
            Some(b) => Some(Bias::Int32(self.int32_bias(b, oc, "input 8 (B)")?)),
            None => None,
        };
        let y = self.output_name()?;
        self.node(
            i,
            ConvFormat::QLinearConv,
            x,
            y,
            (x_dtype, Some(x_scale), x_zp),
            w.weight,
            bias,
            OutputQuant {
                dtype: y_dtype,
                scale: Some(y_scale),
                zero_point: y_zp,
                clamp: None,
            },
            OrtExecution::AsIs,
            Vec::new(),
        )
    }

    fn output_name(&self) -> Result<&'a str> {
        match self.n.output.first() {
            Some(y) if !y.is_empty() => Ok(y),
            _ => Err(self.err("output 0", "missing: the node has no output")),
        }
    }

    fn conv_integer(&self, i: usize) -> Result<ConvNode> {
        let n = self.n;
        let x = self.input_of(n, 0, "input 0 (x)")?;
        let x_zp_name = n.input.get(2).filter(|s| !s.is_empty());
        let (x_dtype, x_zp) = match x_zp_name {
            Some(z) => self.scalar_zero_point(z, "input 2 (x_zero_point)")?,
            None => {
                let t = self.m.declared_type(x).or_else(|| {
                    self.m
                        .producer(x)
                        .filter(|(_, p)| p.op_type == "DynamicQuantizeLinear")
                        .map(|_| data_type::UINT8)
                });
                match t.and_then(dtype_of) {
                    Some(d) => (d, 0),
                    None => {
                        return Err(self.err(
                            "input 0 (x)",
                            format!(
                                "the type of `{x}` is not recorded (no x_zero_point, no \
                                 value_info); qconv needs to know whether it is uint8 or int8"
                            ),
                        ));
                    }
                }
            }
        };
        let w = self.weight(
            self.input_of(n, 1, "input 1 (w)")?,
            None,
            n.input
                .get(3)
                .filter(|s| !s.is_empty())
                .map(|z| (z.as_str(), "input 3 (w_zero_point)")),
            None,
        )?;
        let y = self.output_name()?;
        self.node(
            i,
            ConvFormat::ConvInteger,
            x,
            y,
            (x_dtype, None, x_zp),
            w.weight,
            None,
            OutputQuant {
                dtype: DType::Int32,
                scale: None,
                zero_point: 0,
                clamp: None,
            },
            OrtExecution::AsIs,
            Vec::new(),
        )
    }

    /// A DequantizeLinear's `axis` attribute (default 1).
    fn dq_axis(node: &NodeProto) -> i64 {
        node.attr("axis").and_then(|a| a.i).unwrap_or(1)
    }

    fn qdq(&self, i: usize) -> Result<ConvNode> {
        let m = self.m;
        let n = self.n;
        let mut notes = Vec::new();
        let x_dq_out = self.input_of(n, 0, "input 0")?;
        let Some((x_dq_i, x_dq)) = m.producer(x_dq_out) else {
            return Err(self.err("input 0", "does not come from DequantizeLinear"));
        };
        let x = self.input_of(x_dq, 0, "input DequantizeLinear's x")?;
        let x_scale = self.scalar_scale(
            self.input_of(x_dq, 1, "input DequantizeLinear's x_scale")?,
            "input scale",
        )?;
        let (x_dtype, x_zp) = match x_dq.input.get(2).filter(|s| !s.is_empty()) {
            Some(z) => self.scalar_zero_point(z, "input zero point")?,
            None => match m.declared_type(x).and_then(dtype_of) {
                Some(d) => (d, 0),
                None => {
                    return Err(self.err(
                        "input zero point",
                        format!(
                            "the input DequantizeLinear has no zero point and the type of `{x}` \
                             is not recorded"
                        ),
                    ));
                }
            },
        };
        if let Some(b) = x_dq
            .attr("block_size")
            .and_then(|a| a.i)
            .filter(|&b| b != 0)
        {
            return Err(self.err(
                "input DequantizeLinear",
                format!("block_size {b}: blocked quantization is not supported"),
            ));
        }

        // The weight: DequantizeLinear of a constant.
        let w_dq_out = self.input_of(n, 1, "input 1 (weight)")?;
        let w_dq = match m.producer(w_dq_out) {
            Some((_, p)) if is_op(p, "DequantizeLinear") => p,
            other => {
                let what = match other {
                    Some((_, p)) => format!("comes from a {} node", p.op_type),
                    None if m.constant(w_dq_out).ok().flatten().is_some() => {
                        "is a float constant (ONNX Runtime would quantize it itself, per tensor; \
                         qconv does not model that)"
                            .to_string()
                    }
                    None => "is not defined in the graph".to_string(),
                };
                return Err(self.err(
                    "input 1 (weight)",
                    format!("`{w_dq_out}` {what}; a QDQ Conv's weight must be DequantizeLinear of an 8-bit constant"),
                ));
            }
        };
        if let Some(b) = w_dq
            .attr("block_size")
            .and_then(|a| a.i)
            .filter(|&b| b != 0)
        {
            return Err(self.err(
                "weight DequantizeLinear",
                format!("block_size {b}: blocked quantization is not supported"),
            ));
        }
        let w = self.weight(
            self.input_of(w_dq, 0, "weight DequantizeLinear's x")?,
            Some((
                self.input_of(w_dq, 1, "weight DequantizeLinear's x_scale")?,
                "weight scale",
            )),
            w_dq.input
                .get(2)
                .filter(|s| !s.is_empty())
                .map(|z| (z.as_str(), "weight zero point")),
            Some(Self::dq_axis(w_dq)),
        )?;
        let oc = w.weight.shape[0];

        // The output: QuantizeLinear, possibly behind a redundant Relu / Clip.
        let (q_i, clip) = output_quantizer(m, n).map_err(|e| self.err("output", e))?;
        let q = &m.graph.node[q_i];
        let y = self.input_of(q, 0, "output QuantizeLinear's x").and(
            q.output
                .first()
                .filter(|s| !s.is_empty())
                .map(String::as_str)
                .ok_or_else(|| self.err("output QuantizeLinear", "has no output")),
        )?;
        let y_scale = self.scalar_scale(
            self.input_of(q, 1, "output QuantizeLinear's y_scale")?,
            "output scale",
        )?;
        let (y_dtype, y_zp) = match q.input.get(2).filter(|s| !s.is_empty()) {
            Some(z) => self.scalar_zero_point(z, "output zero point")?,
            None => match q.attr("output_dtype").and_then(|a| a.i) {
                None => (DType::Uint8, 0),
                Some(t) => match dtype_of(t as i32) {
                    Some(d) => (d, 0),
                    None => {
                        return Err(self.err(
                            "output QuantizeLinear",
                            format!(
                                "output_dtype {}: qconv models 8-bit outputs",
                                data_type::name(t as i32)
                            ),
                        ));
                    }
                },
            },
        };
        if let Some(c) = clip {
            let cn = &m.graph.node[c];
            self.check_redundant(cn, y_scale, y_zp, y_dtype)?;
            notes.push(format!(
                "the {} between Conv and QuantizeLinear is made redundant by the output \
                 quantization (ONNX Runtime drops it when fusing)",
                cn.op_type
            ));
        }

        // The bias: int32 via DequantizeLinear, or a float constant ONNX Runtime quantizes.
        let mut bias_via_dq = true;
        let bias = match n.input.get(2).filter(|s| !s.is_empty()) {
            None => None,
            Some(b) => {
                match m.producer(b) {
                    Some((_, p)) if is_op(p, "DequantizeLinear") => {
                        let values = self.int32_bias(
                            self.input_of(p, 0, "bias DequantizeLinear's x")?,
                            oc,
                            "bias",
                        )?;
                        self.note_bias_scale(p, x_scale, &w.weight, &mut notes)?;
                        Some(Bias::Int32(values))
                    }
                    Some((_, p)) => {
                        return Err(self.err(
                        "input 2 (bias)",
                        format!("comes from a {} node; expected DequantizeLinear or a float constant", p.op_type),
                    ));
                    }
                    None => {
                        bias_via_dq = false;
                        let v = self.constant(b, "input 2 (bias)")?;
                        let f = match (&v.data, v.data_type) {
                            (TensorData::Float(f), data_type::FLOAT) if f.len() == oc => f.clone(),
                            (_, data_type::FLOAT) => {
                                return Err(self.err(
                                    "input 2 (bias)",
                                    format!(
                                        "has {} values, expected one per output channel ({oc})",
                                        v.len()
                                    ),
                                ));
                            }
                            _ => {
                                return Err(self.err(
                                "input 2 (bias)",
                                format!(
                                    "has type {}, expected float (or int32 through DequantizeLinear)",
                                    data_type::name(v.data_type)
                                ),
                            ));
                            }
                        };
                        notes.push(
                            "float bias, quantized as ONNX Runtime does when fusing: \
                         round_half_even(f32(b / f32(x_scale * w_scale)))"
                                .to_string(),
                        );
                        Some(Bias::Int32(self.quantize_bias(&f, x_scale, &w.weight)?))
                    }
                }
            }
        };

        let ort = self.ort_fusion(
            i,
            x_dq_i,
            q_i,
            x_dtype,
            y_dtype,
            w.weight.dtype,
            bias_via_dq,
        );
        if ort == OrtExecution::FusedAsUint8 {
            notes.push(
                "ONNX Runtime (x86) runs it as a uint8 QLinearConv: QDQS8ToU8Transformer adds \
                 128 to the int8 activations and zero points; the layer is that uint8 layer"
                    .to_string(),
            );
        }
        self.node(
            i,
            ConvFormat::Qdq,
            x,
            y,
            (x_dtype, Some(x_scale), x_zp),
            w.weight,
            bias,
            OutputQuant {
                dtype: y_dtype,
                scale: Some(y_scale),
                zero_point: y_zp,
                clamp: None,
            },
            ort,
            notes,
        )
    }

    /// Notes a bias DequantizeLinear whose parameters differ from what fusion assumes (ONNX
    /// Runtime moves the int32 values into QLinearConv and drops the scale and zero point).
    fn note_bias_scale(
        &self,
        dq: &NodeProto,
        x_scale: f64,
        w: &Weights,
        notes: &mut Vec<String>,
    ) -> Result<()> {
        if let Some(z) = dq.input.get(2).filter(|s| !s.is_empty()) {
            let v = self.constant(z, "bias zero point")?;
            if let TensorData::Int(zs) = &v.data
                && zs.iter().any(|&z| z != 0)
            {
                notes.push("the bias DequantizeLinear has a non-zero zero point, which the fused QLinearConv ignores".into());
            }
        }
        let scale_name = self.input_of(dq, 1, "bias DequantizeLinear's x_scale")?;
        let s = self.floats(&self.constant(scale_name, "bias scale")?, "bias scale")?;
        let scales = w.quant.scales.as_deref().unwrap_or_default();
        let differs = (0..w.shape[0]).any(|oc| {
            let want =
                (x_scale as f32 * scales[if w.quant.per_channel { oc } else { 0 }] as f32) as f64;
            let got = if s.len() == 1 {
                s[0]
            } else {
                s.get(oc).copied().unwrap_or(f64::NAN)
            };
            got != want
        });
        if differs {
            notes.push(
                "the bias scale differs from x_scale * w_scale; the fused QLinearConv uses the \
                 int32 values as they are (in units of x_scale * w_scale)"
                    .into(),
            );
        }
        Ok(())
    }

    /// ONNX Runtime's quantization of a float bias when it fuses a QDQ Conv
    /// (`WeightBiasQuantization`): `Round(b / (x_scale * w_scale))` in float32, cast to int32.
    fn quantize_bias(&self, b: &[f64], x_scale: f64, w: &Weights) -> Result<Vec<i32>> {
        let scales = w.quant.scales.as_deref().unwrap_or_default();
        b.iter()
            .enumerate()
            .map(|(oc, &v)| {
                let ws = scales[if w.quant.per_channel { oc } else { 0 }];
                let scale = x_scale as f32 * ws as f32;
                let q = (v as f32 / scale).round_ties_even();
                if q.is_finite() && q >= i32::MIN as f32 && q < 2_147_483_648.0 {
                    Ok(q as i32)
                } else {
                    Err(self.err(
                        "input 2 (bias)",
                        format!("bias[{oc}] = {v} quantizes to {q}, outside int32"),
                    ))
                }
            })
            .collect()
    }

    /// ONNX Runtime's test that a Relu / Clip between Conv and QuantizeLinear is redundant.
    fn check_redundant(&self, c: &NodeProto, scale: f64, zp: i32, dtype: DType) -> Result<()> {
        let (lo, hi) = (dtype.min() as i32, dtype.max() as i32);
        let ok = if c.op_type == "Relu" {
            zp == lo
        } else {
            let bound = |slot: usize, attr: &str, default: f32| -> Result<f32> {
                if let Some(name) = c.input.get(slot).filter(|s| !s.is_empty()) {
                    let v = self.constant(name, "Clip bound")?;
                    match &v.data {
                        TensorData::Float(f) if f.len() == 1 => Ok(f[0] as f32),
                        _ => Err(self.err("Clip bound", "expected one float")),
                    }
                } else {
                    Ok(c.attr(attr).and_then(|a| a.f).unwrap_or(default))
                }
            };
            let min = bound(1, "min", f32::MIN)?;
            let max = bound(2, "max", f32::MAX)?;
            let q = |v: f32| ((v / scale as f32).round_ties_even() as f64 + zp as f64) as i64;
            q(min) <= lo as i64 && q(max) >= hi as i64
        };
        if ok {
            Ok(())
        } else {
            Err(self.err(
                "output",
                format!(
                    "a {} between Conv and QuantizeLinear that the output quantization does not \
                     make redundant; ONNX Runtime does not fuse such a group, and qconv does not \
                     model it",
                    c.op_type
                ),
            ))
        }
    }

    /// How ONNX Runtime (x86, default options) runs this QDQ group.
    #[allow(clippy::too_many_arguments)]
    fn ort_fusion(
        &self,
        conv: usize,
        x_dq: usize,
        q: usize,
        x_dtype: DType,
        y_dtype: DType,
        w_dtype: DType,
        _bias_via_dq: bool,
    ) -> OrtExecution {
        let m = self.m;
        let n = &m.graph.node[conv];
        let dq = &m.graph.node[x_dq];
        if n.output.first().is_some_and(|y| m.is_graph_output(y)) {
            return OrtExecution::NotFused("the Conv output is a graph output".into());
        }
        if dq.output.first().is_some_and(|y| m.is_graph_output(y)) {
            return OrtExecution::NotFused(
                "the input DequantizeLinear's output is a graph output".into(),
            );
        }
        if x_dtype == DType::Uint8 && y_dtype == DType::Uint8 {
            return OrtExecution::Fused;
        }
        if x_dtype != y_dtype {
            return OrtExecution::NotFused(format!(
                "input {x_dtype} and output {y_dtype} differ; ONNX Runtime fuses only equal types"
            ));
        }
        // int8 activations: x86 fuses only after QDQS8ToU8Transformer made both sides uint8.
        let input_side = self.s8_pair(
            m.producer(&dq.input[0]).map(|(i, _)| i),
            Some(x_dq),
            "input",
        );
        let output_side = {
            let qn = &m.graph.node[q];
            let next = qn.output.first().and_then(|y| {
                let c = m.consumer_nodes(y);
                (c.len() == 1).then(|| c[0])
            });
            self.s8_pair(Some(q), next, "output")
        };
        match (input_side, output_side, w_dtype) {
            (Ok(()), Ok(()), _) => OrtExecution::FusedAsUint8,
            (Err(e), _, _) | (_, Err(e), _) => OrtExecution::NotFused(format!(
                "int8 activations, fused on x86 only once both QuantizeLinear -> \
                 DequantizeLinear pairs are converted to uint8; {e}"
            )),
        }
    }

    /// Whether `QDQS8ToU8Transformer` converts the QuantizeLinear `q` -> DequantizeLinear `dq`
    /// pair on the `side` of the conv to uint8: a pair of single consumers with equal scalar
    /// int8 zero-point constants.
    fn s8_pair(
        &self,
        q: Option<usize>,
        dq: Option<usize>,
        side: &str,
    ) -> std::result::Result<(), String> {
        let m = self.m;
        let fail = |why: &str| Err(format!("the {side} pair {why}"));
        let pair_error = "is not a QuantizeLinear -> DequantizeLinear pair";
        let (Some(qi), Some(dqi)) = (q, dq) else {
            return fail(pair_error);
        };
        let (qn, dqn) = (&m.graph.node[qi], &m.graph.node[dqi]);
        if !is_op(qn, "QuantizeLinear") || !is_op(dqn, "DequantizeLinear") {
            return fail(pair_error);
        }
        let q_out = qn.output.first().map(String::as_str).unwrap_or_default();
        if m.consumer_edges(q_out) != 1 || m.is_graph_output(q_out) {
            return fail(&format!(
                "is not: `{q_out}` has {} consumers{}",
                m.consumer_edges(q_out),
                if m.is_graph_output(q_out) {
                    " and is a graph output"
                } else {
                    ""
                }
            ));
        }
        let dq_out = dqn.output.first().map(String::as_str).unwrap_or_default();
        if m.consumer_edges(dq_out) != 1 || m.is_graph_output(dq_out) {
            return fail(&format!(
                "is not: `{dq_out}` has {} consumers",
                m.consumer_edges(dq_out)
            ));
        }
        let zp = |node: &NodeProto| -> Option<i64> {
            let name = node.input.get(2).filter(|s| !s.is_empty())?;
            match m.constant(name).ok()?? {
                TensorValue {
                    data_type: data_type::INT8,
                    data: TensorData::Int(v),
                    ..
                } if v.len() == 1 => Some(v[0]),
                _ => None,
            }
        };
        match (zp(qn), zp(dqn)) {
            (Some(a), Some(b)) if a == b => Ok(()),
            _ => fail("is not: its zero points are not equal scalar int8 constants"),
        }
    }
}
