//! `.tflite` models as layer sources: the int8 `CONV_2D` and `DEPTHWISE_CONV_2D` operators of a
//! TFLite flatbuffer, read with a small hand-written FlatBuffers reader (no schema compiler).
//!
//! `MODEL.tflite#N` is operator `N` of the model's first subgraph. The model holds weights, bias
//! and quantization parameters but no activations: the layer's input is a fixed pseudo-random
//! pattern over the input dtype's range (the same for every run), unless the caller replaces it.
//! NHWC activations and OHWI (depthwise: 1HWO) filters become qconv's NCHW and OIHW; SAME and
//! VALID padding become explicit amounts (TFLite's rule: the odd pixel at the bottom / right).

mod flatbuffer;

use flatbuffer::{Buffer, FbError, Table};

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::geometry::Padding;
use crate::layer::{
    Activation, Activations, Bias, ConvLayer, ConvParams, OutputQuant, PaddingMode, Weights,
};
use crate::quant::WeightQuant;

/// The builtin operator codes qconv reads.
const CONV_2D: i32 = 3;
const DEPTHWISE_CONV_2D: i32 = 4;

/// Names of common builtin operators, for listings.
fn builtin_name(code: i32) -> String {
    let name = match code {
        0 => "ADD",
        1 => "AVERAGE_POOL_2D",
        2 => "CONCATENATION",
        3 => "CONV_2D",
        4 => "DEPTHWISE_CONV_2D",
        6 => "DEQUANTIZE",
        9 => "FULLY_CONNECTED",
        14 => "LOGISTIC",
        17 => "MAX_POOL_2D",
        18 => "MUL",
        19 => "RELU",
        21 => "RELU6",
        22 => "RESHAPE",
        25 => "SOFTMAX",
        34 => "PAD",
        40 => "MEAN",
        41 => "SUB",
        114 => "QUANTIZE",
        _ => return format!("BUILTIN_{code}"),
    };
    name.to_string()
}

/// A tensor's type (the schema's `TensorType`), as far as qconv cares.
fn tensor_type_name(t: u8) -> &'static str {
    match t {
        0 => "float32",
        1 => "float16",
        2 => "int32",
        3 => "uint8",
        4 => "int64",
        7 => "int16",
        9 => "int8",
        _ => "other",
    }
}

struct Quant {
    scale: Vec<f32>,
    zero_point: Vec<i64>,
    quantized_dimension: i32,
}

struct Tensor {
    shape: Vec<i32>,
    dtype: u8,
    buffer: u32,
    name: String,
    quant: Option<Quant>,
}

/// One operator of a model, summarized for `qconv layers`.
#[derive(Clone, Debug, PartialEq)]
pub struct OperatorInfo {
    pub index: usize,
    /// `CONV_2D`, `DEPTHWISE_CONV_2D`, ... (`BUILTIN_<code>` for codes qconv does not name,
    /// `CUSTOM:<name>` for custom operators).
    pub op: String,
    /// For convolutions: a one-line description of the layer (`None` otherwise).
    pub summary: Option<String>,
    /// Whether `MODEL.tflite#index` loads, and if not, why.
    pub loadable: std::result::Result<(), String>,
}

/// A parsed model: the buffer, the first subgraph's tensors and operators, the op codes.
struct Model<'a> {
    bytes: &'a [u8],
    buffers: Vec<Table<'a>>,
    tensors: Vec<Table<'a>>,
    operators: Vec<Table<'a>>,
    opcodes: Vec<i32>,
    custom: Vec<Option<String>>,
}

fn fb(path: &str, e: FbError) -> Error {
    Error::parse(path, format!("field `{}`", e.field), e.message)
}

impl<'a> Model<'a> {
    fn parse(path: &str, bytes: &'a [u8]) -> Result<Self> {
        let buf = Buffer { bytes };
        if bytes.len() < 8 {
            return Err(Error::parse(
                path,
                "",
                format!("is not a TFLite model ({} bytes)", bytes.len()),
            ));
        }
        if buf.identifier() != Some(b"TFL3") {
            return Err(Error::parse(
                path,
                "",
                "is not a TFLite model (no TFL3 file identifier)",
            ));
        }
        let model = buf.root().map_err(|e| fb(path, e))?;
        let subgraphs = model.tables(2, "subgraphs").map_err(|e| fb(path, e))?;
        let Some(sg) = subgraphs.first() else {
            return Err(Error::parse(
                path,
                "field `subgraphs`",
                "the model has no subgraph",
            ));
        };
        let codes = model.tables(1, "operator_codes").map_err(|e| fb(path, e))?;
        let mut opcodes = Vec::new();
        let mut custom = Vec::new();
        for (i, c) in codes.iter().enumerate() {
            let f = format!("operator_codes[{i}]");
            let deprecated = c.i8(0, 0, &f).map_err(|e| fb(path, e))? as i32;
            let code = c.i32(3, 0, &f).map_err(|e| fb(path, e))?;
            opcodes.push(deprecated.max(code));
            custom.push(c.string(1, &f).map_err(|e| fb(path, e))?);
        }
        Ok(Model {
            bytes,
            buffers: model.tables(4, "buffers").map_err(|e| fb(path, e))?,
            tensors: sg
                .tables(0, "subgraphs[0].tensors")
                .map_err(|e| fb(path, e))?,
            operators: sg
                .tables(3, "subgraphs[0].operators")
                .map_err(|e| fb(path, e))?,
            opcodes,
            custom,
        })
    }

    fn tensor(&self, path: &str, index: i32, what: &str) -> Result<Tensor> {
        let t = usize::try_from(index)
            .ok()
            .and_then(|i| self.tensors.get(i))
            .ok_or_else(|| {
                Error::parse(
                    path,
                    format!("{what} tensor"),
                    format!(
                        "index {index} is not a tensor of the subgraph ({} tensors)",
                        self.tensors.len()
                    ),
                )
            })?;
        let f = format!("subgraphs[0].tensors[{index}]");
        let e = |e: FbError| fb(path, e);
        let quant = match t.table(4, &format!("{f}.quantization")).map_err(e)? {
            None => None,
            Some(q) => {
                let qf = format!("{f}.quantization");
                let scale = q.f32s(2, &format!("{qf}.scale")).map_err(e)?;
                (!scale.is_empty())
                    .then(|| -> Result<Quant> {
                        Ok(Quant {
                            scale,
                            zero_point: q.i64s(3, &format!("{qf}.zero_point")).map_err(e)?,
                            quantized_dimension: q.i32(6, 0, &qf).map_err(e)?,
                        })
                    })
                    .transpose()?
            }
        };
        Ok(Tensor {
            shape: t.i32s(0, &format!("{f}.shape")).map_err(e)?,
            dtype: t.u8(1, 0, &format!("{f}.type")).map_err(e)?,
            buffer: t.u32(2, 0, &format!("{f}.buffer")).map_err(e)?,
            name: t
                .string(3, &format!("{f}.name"))
                .map_err(e)?
                .unwrap_or_default(),
            quant,
        })
    }

    /// A constant tensor's bytes.
    fn data(&self, path: &str, t: &Tensor, what: &str) -> Result<&'a [u8]> {
        let b = self.buffers.get(t.buffer as usize).ok_or_else(|| {
            Error::parse(
                path,
                format!("{what} tensor `{}`", t.name),
                format!(
                    "buffer {} does not exist ({} buffers)",
                    t.buffer,
                    self.buffers.len()
                ),
            )
        })?;
        let f = format!("buffers[{}]", t.buffer);
        let data = b.bytes(0, &format!("{f}.data")).map_err(|e| fb(path, e))?;
        if !data.is_empty() {
            return Ok(data);
        }
        // Large models keep buffers outside the flatbuffer: offset and size into the file.
        let offset = b
            .u64(1, 0, &format!("{f}.offset"))
            .map_err(|e| fb(path, e))?;
        let size = b.u64(2, 0, &format!("{f}.size")).map_err(|e| fb(path, e))?;
        if offset > 1 {
            let (o, s) = (offset as usize, size as usize);
            return o
                .checked_add(s)
                .and_then(|end| self.bytes.get(o..end))
                .ok_or_else(|| {
                    Error::parse(
                        path,
                        format!("field `{f}.offset`"),
                        "points outside the file",
                    )
                });
        }
        Err(Error::parse(
            path,
            format!("{what} tensor `{}`", t.name),
            "has no constant data (qconv reads convolutions with constant weights)",
        ))
    }

    fn op_name(&self, code_index: usize) -> String {
        match (self.opcodes.get(code_index), self.custom.get(code_index)) {
            (Some(&32), Some(Some(name))) => format!("CUSTOM:{name}"),
            (Some(&c), _) => builtin_name(c),
            _ => "?".to_string(),
        }
    }
}

/// The fields of a conv operator's options.
struct ConvOptions {
    padding: PaddingMode,
    stride: [usize; 2],
    dilation: [usize; 2],
    activation: u8,
    depth_multiplier: i32,
}

fn positive(path: &str, field: &str, v: i32) -> Result<usize> {
    if v <= 0 {
        return Err(Error::parse(
            path,
            format!("field `{field}`"),
            format!("must be > 0, got {v}"),
        ));
    }
    Ok(v as usize)
}

fn conv_options(path: &str, op: &Table<'_>, index: usize, depthwise: bool) -> Result<ConvOptions> {
    let f = format!("subgraphs[0].operators[{index}].builtin_options");
    let e = |e: FbError| fb(path, e);
    let Some(o) = op.table(4, &f).map_err(e)? else {
        return Err(Error::parse(
            path,
            format!("field `{f}`"),
            "missing (a convolution needs its options)",
        ));
    };
    // Conv2DOptions: padding 0, stride_w 1, stride_h 2, activation 3, dilation_w 4, dilation_h 5.
    // DepthwiseConv2DOptions: padding 0, stride_w 1, stride_h 2, depth_multiplier 3,
    // activation 4, dilation_w 5, dilation_h 6.
    let (act, dw, dh) = if depthwise { (4, 5, 6) } else { (3, 4, 5) };
    let padding = match o.u8(0, 0, &format!("{f}.padding")).map_err(e)? {
        0 => PaddingMode::Same,
        1 => PaddingMode::Valid,
        p => {
            return Err(Error::parse(
                path,
                format!("field `{f}.padding`"),
                format!("unknown padding {p}"),
            ));
        }
    };
    Ok(ConvOptions {
        padding,
        stride: [
            positive(path, &format!("{f}.stride_h"), o.i32(2, 0, &f).map_err(e)?)?,
            positive(path, &format!("{f}.stride_w"), o.i32(1, 0, &f).map_err(e)?)?,
        ],
        dilation: [
            positive(
                path,
                &format!("{f}.dilation_h_factor"),
                o.i32(dh, 1, &f).map_err(e)?,
            )?,
            positive(
                path,
                &format!("{f}.dilation_w_factor"),
                o.i32(dw, 1, &f).map_err(e)?,
            )?,
        ],
        activation: o
            .u8(act, 0, &format!("{f}.fused_activation_function"))
            .map_err(e)?,
        depth_multiplier: if depthwise {
            o.i32(3, 1, &f).map_err(e)?
        } else {
            1
        },
    })
}

fn activation(path: &str, field: &str, code: u8) -> Result<Activation> {
    match code {
        0 => Ok(Activation::None),
        1 => Ok(Activation::Relu),
        2 => Ok(Activation::ReluN1To1),
        3 => Ok(Activation::Relu6),
        4 => Err(Error::parse(path, field, "fused TANH is not modelled")),
        5 => Err(Error::parse(path, field, "fused SIGN_BIT is not modelled")),
        c => Err(Error::parse(
            path,
            field,
            format!("unknown fused activation {c}"),
        )),
    }
}

fn dims4(path: &str, t: &Tensor, what: &str) -> Result<[usize; 4]> {
    match t.shape.as_slice() {
        [a, b, c, d] if t.shape.iter().all(|&v| v > 0) => {
            let dims = [*a as usize, *b as usize, *c as usize, *d as usize];
            crate::geometry::check_elements("shape", &dims).map_err(|e| {
                Error::parse(path, format!("{what} tensor `{}`", t.name), e.to_string())
            })?;
            Ok(dims)
        }
        s => Err(Error::parse(
            path,
            format!("{what} tensor `{}`", t.name),
            format!("shape {s:?} is not a 4-D shape of positive sizes"),
        )),
    }
}

fn quant<'t>(path: &str, t: &'t Tensor, what: &str) -> Result<&'t Quant> {
    let q = t.quant.as_ref().ok_or_else(|| {
        Error::parse(
            path,
            format!("{what} tensor `{}`", t.name),
            "is not quantized (no scale)",
        )
    })?;
    if q.zero_point.len() != q.scale.len() && q.zero_point.len() != 1 {
        return Err(Error::parse(
            path,
            format!("{what} tensor `{}`", t.name),
            format!(
                "has {} scales and {} zero points",
                q.scale.len(),
                q.zero_point.len()
            ),
        ));
    }
    Ok(q)
}

fn dtype(path: &str, t: &Tensor, what: &str) -> Result<DType> {
    match t.dtype {
        9 => Ok(DType::Int8),
        3 => Ok(DType::Uint8),
        other => Err(Error::parse(
            path,
            format!("{what} tensor `{}`", t.name),
            format!(
                "has type {}; qconv reads int8 / uint8 convolutions",
                tensor_type_name(other)
            ),
        )),
    }
}

/// A fixed pseudo-random input over `dtype`'s range (a 64-bit LCG seeded by the operator index),
/// so that runs of the same `MODEL.tflite#N` see the same input.
fn pseudo_random_input(len: usize, dtype: DType, seed: u64) -> Vec<i32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    let (lo, hi) = (dtype.min(), dtype.max());
    let span = (hi - lo + 1) as u64;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (lo + ((state >> 33) % span) as i64) as i32
        })
        .collect()
}

/// Reads operator `index` of the model in `bytes` (read from `path`) as a layer.
fn layer_from(path: &str, model: &Model<'_>, index: usize) -> Result<ConvLayer> {
    let op = model.operators.get(index).ok_or_else(|| {
        Error::parse(
            path,
            format!("#{index}"),
            format!(
                "the model has {} operators (0 to {})",
                model.operators.len(),
                model.operators.len().saturating_sub(1)
            ),
        )
    })?;
    let f = format!("subgraphs[0].operators[{index}]");
    let e = |e: FbError| fb(path, e);
    let code_index = op.u32(0, 0, &format!("{f}.opcode_index")).map_err(e)? as usize;
    let code = *model.opcodes.get(code_index).ok_or_else(|| {
        Error::parse(
            path,
            format!("field `{f}.opcode_index`"),
            format!("{code_index} is not an operator code"),
        )
    })?;
    let depthwise = match code {
        CONV_2D => false,
        DEPTHWISE_CONV_2D => true,
        _ => {
            return Err(Error::parse(
                path,
                format!("#{index}"),
                format!(
                    "operator {index} is {}, not CONV_2D or DEPTHWISE_CONV_2D",
                    model.op_name(code_index)
                ),
            ));
        }
    };
    let inputs = op.i32s(1, &format!("{f}.inputs")).map_err(e)?;
    let outputs = op.i32s(2, &format!("{f}.outputs")).map_err(e)?;
    if inputs.len() < 2 || outputs.is_empty() {
        return Err(Error::parse(
            path,
            format!("field `{f}.inputs`"),
            "a convolution needs an input, a filter and an output",
        ));
    }
    let opts = conv_options(path, op, index, depthwise)?;
    let x = model.tensor(path, inputs[0], "input")?;
    let w = model.tensor(path, inputs[1], "filter")?;
    let b = match inputs.get(2) {
        Some(&i) if i >= 0 => Some(model.tensor(path, i, "bias")?),
        _ => None,
    };
    let y = model.tensor(path, outputs[0], "output")?;
    let [n, h, wd, c] = dims4(path, &x, "input")?;
    let [fo, kh, kw, fi] = dims4(path, &w, "filter")?;
    let [_, oh, ow, oc] = dims4(path, &y, "output")?;
    let (in_dtype, w_dtype, out_dtype) = (
        dtype(path, &x, "input")?,
        dtype(path, &w, "filter")?,
        dtype(path, &y, "output")?,
    );
    let (xq, wq, yq) = (
        quant(path, &x, "input")?,
        quant(path, &w, "filter")?,
        quant(path, &y, "output")?,
    );
    // Weights to OIHW.
    let raw = model.data(path, &w, "filter")?;
    let w_len = fo * kh * kw * fi;
    if raw.len() != w_len {
        return Err(Error::parse(
            path,
            format!("filter tensor `{}`", w.name),
            format!(
                "has {} bytes of data, shape {:?} needs {w_len}",
                raw.len(),
                w.shape
            ),
        ));
    }
    let value = |i: usize| -> i32 {
        match w_dtype {
            DType::Uint8 => raw[i] as i32,
            _ => raw[i] as i8 as i32,
        }
    };
    let (weight_shape, weights, groups) = if depthwise {
        // 1 x KH x KW x (C * M) -> (C * M) x 1 x KH x KW.
        if fo != 1 || fi != oc {
            return Err(Error::parse(
                path,
                format!("filter tensor `{}`", w.name),
                format!(
                    "depthwise filter shape {:?} does not match {oc} output channels",
                    w.shape
                ),
            ));
        }
        if opts.depth_multiplier > 0 && oc != c * opts.depth_multiplier as usize {
            return Err(Error::parse(
                path,
                format!("field `{f}.builtin_options.depth_multiplier`"),
                format!(
                    "{} does not match {c} input and {oc} output channels",
                    opts.depth_multiplier
                ),
            ));
        }
        let mut v = vec![0; w_len];
        for ky in 0..kh {
            for kx in 0..kw {
                for o in 0..oc {
                    v[(o * kh + ky) * kw + kx] = value((ky * kw + kx) * oc + o);
                }
            }
        }
        ([oc, 1, kh, kw], v, c)
    } else {
        // OC x KH x KW x I -> OC x I x KH x KW.
        if fo != oc || fi == 0 || c % fi != 0 {
            return Err(Error::parse(
                path,
                format!("filter tensor `{}`", w.name),
                format!(
                    "shape {:?} does not fit input channels {c} and output channels {oc}",
                    w.shape
                ),
            ));
        }
        let mut v = vec![0; w_len];
        for o in 0..oc {
            for ky in 0..kh {
                for kx in 0..kw {
                    for i in 0..fi {
                        v[((o * fi + i) * kh + ky) * kw + kx] =
                            value(((o * kh + ky) * kw + kx) * fi + i);
                    }
                }
            }
        }
        ([oc, fi, kh, kw], v, c / fi)
    };
    let per_channel = wq.scale.len() > 1;
    if per_channel {
        let axis = if depthwise { 3 } else { 0 };
        if wq.scale.len() != oc || wq.quantized_dimension != axis {
            return Err(Error::parse(
                path,
                format!("filter tensor `{}`", w.name),
                format!(
                    "{} scales along dimension {}: qconv reads per-output-channel scales ({oc} along dimension {axis})",
                    wq.scale.len(),
                    wq.quantized_dimension
                ),
            ));
        }
    }
    let bias = match &b {
        None => None,
        Some(bt) => {
            if bt.dtype != 2 {
                return Err(Error::parse(
                    path,
                    format!("bias tensor `{}`", bt.name),
                    format!(
                        "has type {}; qconv reads int32 bias",
                        tensor_type_name(bt.dtype)
                    ),
                ));
            }
            let raw = model.data(path, bt, "bias")?;
            if raw.len() != 4 * oc {
                return Err(Error::parse(
                    path,
                    format!("bias tensor `{}`", bt.name),
                    format!("has {} bytes, {oc} int32 values need {}", raw.len(), 4 * oc),
                ));
            }
            Some(Bias::Int32(
                raw.chunks_exact(4)
                    .map(|q| i32::from_le_bytes([q[0], q[1], q[2], q[3]]))
                    .collect(),
            ))
        }
    };
    let pad = |input, k, s, d, name: &str| {
        opts.padding.padding(input, k, s, d).ok_or_else(|| {
            Error::parse(
                path,
                format!("#{index}"),
                format!("the VALID kernel does not fit the input {name}"),
            )
        })
    };
    let (top, bottom) = pad(h, kh, opts.stride[0], opts.dilation[0], "height")?;
    let (left, right) = pad(wd, kw, opts.stride[1], opts.dilation[1], "width")?;
    let act = activation(
        path,
        &format!("field `{f}.builtin_options.fused_activation_function`"),
        opts.activation,
    )?;
    let zp = |q: &Quant, i: usize| {
        q.zero_point
            .get(i)
            .or(q.zero_point.first())
            .copied()
            .unwrap_or(0)
    };
    let int = |v: i64, what: &str| {
        i32::try_from(v).map_err(|_| {
            Error::parse(
                path,
                what.to_string(),
                format!("zero point {v} is not a 32-bit integer"),
            )
        })
    };
    let mut layer = ConvLayer::new(
        format!("{}#{index}", file_name(path)),
        ConvParams {
            kernel: Some([kh, kw]),
            stride: opts.stride,
            dilation: opts.dilation,
            padding: Padding {
                top,
                left,
                bottom,
                right,
            },
            groups,
        },
        Activations {
            dtype: in_dtype,
            shape: [n, c, h, wd],
            data: pseudo_random_input(n * c * h * wd, in_dtype, index as u64),
            scale: Some(xq.scale[0] as f64),
            zero_point: int(
                xq.zero_point.first().copied().unwrap_or(0),
                "input zero point",
            )?,
        },
        Weights {
            dtype: w_dtype,
            shape: weight_shape,
            data: weights,
            quant: WeightQuant {
                scales: Some(wq.scale.iter().map(|&s| s as f64).collect()),
                zero_points: (0..if per_channel { oc } else { 1 })
                    .map(|i| int(zp(wq, i), "filter zero point"))
                    .collect::<Result<_>>()?,
                per_channel,
            },
        },
        bias,
        OutputQuant {
            dtype: out_dtype,
            scale: Some(yq.scale[0] as f64),
            zero_point: int(
                yq.zero_point.first().copied().unwrap_or(0),
                "output zero point",
            )?,
            clamp: None,
        },
        false,
    )
    .map_err(|e| e.in_file(path))?;
    if layer.geometry.output_shape() != [n, oc, oh, ow] {
        return Err(Error::parse(
            path,
            format!("output tensor `{}`", y.name),
            format!(
                "shape {:?} does not match the geometry's output {:?} (NCHW)",
                y.shape,
                layer.geometry.output_shape()
            ),
        ));
    }
    layer.activation = Some(act);
    layer.padding_mode = Some(opts.padding);
    // The quantized range TFLite computes for a fused activation, for engines that read `clamp`.
    if let (Some(scale), false) = (layer.output.scale, act == Activation::None) {
        let (lo, hi) = crate::engines::tflite_reference::activation_range(&layer, scale as f32);
        layer.output.clamp = Some([lo, hi]);
    }
    Ok(layer)
}

fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// Reads operator `index` of the `.tflite` model at `path` as a layer.
pub fn read_layer(path: &str, index: Option<&str>) -> Result<ConvLayer> {
    let bytes = super::read_file(path)?;
    let model = Model::parse(path, &bytes)?;
    let index = match index {
        Some(s) => s.trim().parse::<usize>().map_err(|_| {
            Error::parse(
                path,
                format!("#{s}"),
                "the operator index must be a non-negative integer (see `qconv layers`)",
            )
        })?,
        None => {
            let convs: Vec<usize> = (0..model.operators.len())
                .filter(|&i| layer_from(path, &model, i).is_ok())
                .collect();
            match convs.as_slice() {
                [only] => *only,
                _ => {
                    return Err(Error::parse(
                        path,
                        "",
                        format!(
                            "holds {} convolutions qconv can read; choose one as {path}#OP_INDEX (see `qconv layers {path}`)",
                            convs.len()
                        ),
                    ));
                }
            }
        }
    };
    layer_from(path, &model, index)
}

/// Every operator of the model's first subgraph, with a summary of its convolutions.
pub fn list_operators(path: &str) -> Result<Vec<OperatorInfo>> {
    let bytes = super::read_file(path)?;
    let model = Model::parse(path, &bytes)?;
    let mut out = Vec::new();
    for (i, op) in model.operators.iter().enumerate() {
        let code_index = op
            .u32(0, 0, &format!("subgraphs[0].operators[{i}].opcode_index"))
            .map_err(|e| fb(path, e))? as usize;
        let name = model.op_name(code_index);
        let is_conv = matches!(
            model.opcodes.get(code_index),
            Some(&CONV_2D) | Some(&DEPTHWISE_CONV_2D)
        );
        let (summary, loadable) = if is_conv {
            match layer_from(path, &model, i) {
                Ok(l) => (Some(summarize(&l)), Ok(())),
                Err(e) => (None, Err(e.to_string())),
            }
        } else {
            (None, Err(format!("{name} is not a convolution")))
        };
        out.push(OperatorInfo {
            index: i,
            op: name,
            summary,
            loadable,
        });
    }
    Ok(out)
}

fn summarize(l: &ConvLayer) -> String {
    let g = &l.geometry;
    format!(
        "input {:?} {}, weight {:?} {}{}, stride {:?}, dilation {:?}, padding {} {:?}, groups {}, {}, activation {} -> output {:?} {}",
        l.input.shape,
        l.input.dtype,
        l.weight.shape,
        l.weight.dtype,
        if l.weight.quant.per_channel {
            " per-channel"
        } else {
            ""
        },
        g.stride,
        g.dilation,
        l.padding_mode.map_or("?", |p| p.name()),
        g.padding.as_array(),
        g.groups,
        if l.bias.is_some() {
            "int32 bias"
        } else {
            "no bias"
        },
        l.activation.map_or("?", |a| a.name()),
        g.output_shape(),
        l.output.dtype
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_random_input_is_fixed_and_in_range() {
        let a = pseudo_random_input(1000, DType::Int8, 3);
        assert_eq!(a, pseudo_random_input(1000, DType::Int8, 3));
        assert!(a.iter().all(|&v| (-128..=127).contains(&v)));
        assert!(a.iter().any(|&v| v < -100) && a.iter().any(|&v| v > 100));
    }

    #[test]
    fn not_a_model() {
        let dir = std::env::temp_dir().join(format!("qconv-tflite-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.tflite");
        std::fs::write(&p, b"hello world, not a flatbuffer").unwrap();
        let e = read_layer(&p.to_string_lossy(), Some("0"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a TFLite model"), "{e}");
        std::fs::write(&p, b"").unwrap();
        let e = read_layer(&p.to_string_lossy(), Some("0"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a TFLite model"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
