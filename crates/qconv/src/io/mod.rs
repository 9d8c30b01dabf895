//! Reading layers and golden cases, and writing results.

pub mod csv;
pub mod golden;
pub mod layer_file;
pub mod npy;
pub mod onnx;
pub mod output;
pub mod parts;
pub mod tflite;

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::layer::{Bias, ConvLayer, OutputQuant};

/// Reads a whole file; the error names the path.
pub fn read_file(path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|error| Error::Io {
        path: path.to_string(),
        error,
    })
}

/// Converts integers to `i32`, naming the first that does not fit.
pub(crate) fn to_i32_data(field: &str, values: &[i64]) -> Result<Vec<i32>> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            i32::try_from(v).map_err(|_| {
                Error::invalid(field, format!("element {i} is {v}, not a 32-bit integer"))
            })
        })
        .collect()
}

/// Converts one integer to `i32`, naming the field if it does not fit.
pub(crate) fn int32(field: &str, v: i64) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::invalid(field, format!("{v} is not a 32-bit integer")))
}

/// Interprets a weight `axis`: `None` when absent, `Some(true)` for axis 0 (per output channel).
pub(crate) fn weight_axis(axis: Option<i64>) -> Result<Option<bool>> {
    match axis {
        None => Ok(None),
        Some(0) => Ok(Some(true)),
        Some(a) => Err(Error::invalid(
            "weight.axis",
            format!("{a}: only axis 0 (output channels) is supported"),
        )),
    }
}

/// Builds a bias of `dtype` (`float32` or `int32`) from numbers.
pub(crate) fn bias(dtype: &str, values: &[f64]) -> Result<Bias> {
    match dtype {
        "float32" => Ok(Bias::Float32(values.iter().map(|&v| v as f32).collect())),
        "int32" => values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if v.fract() == 0.0 && (i32::MIN as f64..=i32::MAX as f64).contains(&v) {
                    Ok(v as i32)
                } else {
                    Err(Error::invalid(
                        format!("bias.data[{i}]"),
                        format!("{v} is not an int32"),
                    ))
                }
            })
            .collect::<Result<_>>()
            .map(Bias::Int32),
        other => Err(Error::invalid(
            "bias.dtype",
            format!("`{other}` (expected float32 or int32)"),
        )),
    }
}

/// Builds the output quantization from a file's fields.
pub(crate) fn output_quant(
    dtype: &str,
    scale: Option<f64>,
    zero_point: Option<i64>,
    clamp: Option<[i64; 2]>,
) -> Result<OutputQuant> {
    Ok(OutputQuant {
        dtype: dtype.parse().map_err(|e: Error| e.within("output"))?,
        scale,
        zero_point: int32("output.zero_point", zero_point.unwrap_or(0))?,
        clamp: match clamp {
            Some([lo, hi]) => Some([int32("output.clamp[0]", lo)?, int32("output.clamp[1]", hi)?]),
            None => None,
        },
    })
}

/// Checks that every recorded result has one value per output element.
pub(crate) fn check_expected(
    layer: &ConvLayer,
    expected: &BTreeMap<String, Vec<i64>>,
) -> Result<()> {
    let out_len = layer.output_len();
    for (key, values) in expected {
        if values.len() != out_len {
            return Err(Error::invalid(
                format!("expected.{key}"),
                format!("has {} values, the output has {out_len}", values.len()),
            ));
        }
    }
    Ok(())
}

/// A layer loaded from any supported source, with reference results when the source has them.
#[derive(Clone, Debug)]
pub struct LoadedLayer {
    pub layer: ConvLayer,
    /// Engine key -> integers a real engine returned (golden cases) or a file records.
    pub expected: BTreeMap<String, Vec<i64>>,
    /// Engine key -> the error that engine raised (golden cases).
    pub errors: BTreeMap<String, String>,
    /// Whether the input is a placeholder (an ONNX node loaded without `--input`): the layer's
    /// shape and parameters are real, its input values are not.
    pub placeholder_input: bool,
    /// Engine name -> why qconv does not model what that engine computes for this layer (an
    /// ONNX node ONNX Runtime does not fuse runs as a float convolution).
    pub not_modelled: BTreeMap<String, String>,
    /// Things worth knowing about how the layer was read (ONNX nodes).
    pub notes: Vec<String>,
}

impl LoadedLayer {
    fn from_layer(layer: ConvLayer) -> Self {
        LoadedLayer {
            layer,
            expected: BTreeMap::new(),
            errors: BTreeMap::new(),
            placeholder_input: false,
            not_modelled: BTreeMap::new(),
            notes: Vec::new(),
        }
    }

    /// An error when qconv does not model what one of `engines` computes for this layer.
    pub fn check_modelled(&self, engines: &[crate::EngineKind]) -> Result<()> {
        for e in engines {
            if let Some(reason) = self.not_modelled.get(e.name()) {
                return Err(Error::NotModelled {
                    engine: e.name().to_string(),
                    reason: reason.clone(),
                });
            }
        }
        Ok(())
    }

    /// Runs `engine` on the layer, refusing engines whose result qconv does not model here.
    pub fn run(
        &self,
        engine: crate::EngineKind,
        options: &crate::RunOptions,
    ) -> Result<crate::EngineOutput> {
        self.check_modelled(&[engine])?;
        crate::engines::run(engine, &self.layer, options)
    }
}

impl From<ConvLayer> for LoadedLayer {
    /// A layer with nothing recorded about it.
    fn from(layer: ConvLayer) -> Self {
        LoadedLayer::from_layer(layer)
    }
}

/// Where an ONNX node's input tensor comes from when it is loaded as a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputPolicy {
    /// The input is required (run, compare, explain): without `--input` loading fails.
    Required,
    /// Without `--input` the input is a placeholder filled with the zero point (check).
    Placeholder,
}

/// Loads a LAYER argument: a TOML layer file, a golden case file (`.json`), or one case of a
/// golden case collection (`FILE.jsonl#ID`, `FILE.jsonl.gz#ID`, or the file's only case).
/// ONNX nodes (`MODEL.onnx#NODE`) need an input: see [`load_layer_with`].
pub fn load_layer(spec: &str) -> Result<LoadedLayer> {
    load_layer_with(spec, None, InputPolicy::Required)
}

/// Splits `MODEL.onnx#NODE` into the model path and the node (`None` when not an ONNX spec).
/// The node part may itself contain `#`.
pub fn split_onnx_spec(spec: &str) -> Option<(&str, Option<&str>)> {
    if let Some(i) = spec.find(".onnx#") {
        let (path, node) = spec.split_at(i + 5);
        let node = &node[1..];
        return Some((path, (!node.is_empty()).then_some(node)));
    }
    spec.ends_with(".onnx").then_some((spec, None))
}

/// Loads a LAYER argument like [`load_layer`], and also ONNX model nodes, `MODEL.onnx#NODE`
/// (`NODE` is a node name or an index into the model's convolution nodes), whose input tensor
/// is the `.npy` file `input` (NCHW, in the model's type), or, when there is none, a placeholder
/// if `policy` allows it. `input` is refused for other layers, whose files carry their input.
pub fn load_layer_with(
    spec: &str,
    input: Option<&str>,
    policy: InputPolicy,
) -> Result<LoadedLayer> {
    load_layer_from(spec, input.map(NodeInputSource::File), policy)
}

/// The input tensor of an ONNX node: an `.npy` file, or the bytes of one already in memory.
#[derive(Clone, Copy, Debug)]
pub enum NodeInputSource<'a> {
    File(&'a str),
    /// `label` names the tensor in errors (where a file name would be).
    Npy {
        label: &'a str,
        bytes: &'a [u8],
    },
}

impl NodeInputSource<'_> {
    fn label(&self) -> &str {
        match self {
            NodeInputSource::File(path) => path,
            NodeInputSource::Npy { label, .. } => label,
        }
    }
}

/// [`load_layer_with`] with the node input from a file or from memory.
pub fn load_layer_from(
    spec: &str,
    input: Option<NodeInputSource>,
    policy: InputPolicy,
) -> Result<LoadedLayer> {
    if let Some((path, node)) = split_onnx_spec(spec) {
        let Some(node) = node else {
            return Err(Error::parse(
                path,
                "",
                "a model holds many layers; choose one as MODEL.onnx#NODE (a node name or an index; `qconv layers MODEL.onnx` lists them)",
            ));
        };
        return load_onnx_node(path, node, input, policy);
    }
    if let Some(input) = input {
        return Err(Error::invalid(
            "--input",
            format!(
                "`{}`: --input gives the input of an ONNX model node (MODEL.onnx#NODE); {spec} carries its own input",
                input.label()
            ),
        ));
    }
    let (path, id) = match spec.rsplit_once('#') {
        Some((p, id)) if !id.is_empty() => (p, Some(id)),
        _ => (spec, None),
    };
    if path.ends_with(".toml") {
        if id.is_some() {
            return Err(Error::parse(
                path,
                "",
                "a TOML layer file holds one layer; drop the #ID",
            ));
        }
        let f = layer_file::read_layer_file(path)?;
        let mut loaded = LoadedLayer::from_layer(f.layer);
        loaded.expected = f.expected;
        return Ok(loaded);
    }
    if path.ends_with(".tflite") {
        return Ok(LoadedLayer::from_layer(tflite::read_layer(path, id)?));
    }
    if path.ends_with(".json") || path.ends_with(".jsonl") || path.ends_with(".jsonl.gz") {
        let case = golden::read_case(path, id)?;
        let mut loaded = LoadedLayer::from_layer(case.layer);
        loaded.expected = case.expected;
        loaded.errors = case.errors;
        return Ok(loaded);
    }
    Err(Error::parse(
        path,
        "",
        "unknown layer format (expected .toml, .json, .jsonl, .jsonl.gz, MODEL.onnx#NODE or MODEL.tflite#OP_INDEX)",
    ))
}

/// Reads an `.npy` input tensor for `node`: 4-D NCHW, integers of the node's input type, and
/// the shape the model records where it records one.
pub fn read_node_input(path: &str, node: &onnx::ConvNode) -> Result<onnx::NodeInput> {
    parse_node_input(path, &read_file(path)?, node)
}

/// [`read_node_input`] on the bytes of an `.npy` file; `path` names it in errors.
pub fn parse_node_input(
    path: &str,
    bytes: &[u8],
    node: &onnx::ConvNode,
) -> Result<onnx::NodeInput> {
    let array = npy::parse(path, bytes)?;
    let shape: [usize; 4] = match array.shape.as_slice() {
        &[n, c, h, w] => [n, c, h, w],
        s => {
            return Err(Error::parse(
                path,
                "",
                format!(
                    "shape {s:?}: the input of node `{}` is a 4-D NCHW tensor",
                    node.label()
                ),
            ));
        }
    };
    if let Some(model_shape) = &node.input_shape {
        let names = ["N", "C", "H", "W"];
        for (i, (&want, &got)) in model_shape.iter().zip(&shape).enumerate() {
            if want.is_some_and(|w| w != got) {
                return Err(Error::parse(
                    path,
                    "",
                    format!(
                        "shape {shape:?}: the model gives tensor `{}` {} = {} (shape {})",
                        node.input_tensor,
                        names[i],
                        want.unwrap_or(0),
                        onnx::shape::format(model_shape)
                    ),
                ));
            }
        }
    }
    let npy::NpyData::Int(values) = array.data else {
        return Err(Error::parse(
            path,
            "",
            format!(
                "holds floats; the input of node `{}` is {} (quantized integers)",
                node.label(),
                node.input_dtype
            ),
        ));
    };
    let dtype = node.input_dtype;
    let data = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if dtype.contains(v) {
                Ok(v as i32)
            } else {
                Err(Error::parse(
                    path,
                    format!("element {i}"),
                    format!(
                        "{v} is outside {dtype} [{}, {}], the type of tensor `{}`",
                        dtype.min(),
                        dtype.max(),
                        node.input_tensor
                    ),
                ))
            }
        })
        .collect::<Result<_>>()?;
    Ok(onnx::NodeInput { shape, data })
}

fn load_onnx_node(
    path: &str,
    node: &str,
    input: Option<NodeInputSource>,
    policy: InputPolicy,
) -> Result<LoadedLayer> {
    let model = onnx::OnnxModel::read(path)?;
    let conv = model.find_conv(node)?;
    let data = match input {
        Some(NodeInputSource::File(file)) => Some(read_node_input(file, &conv)?),
        Some(NodeInputSource::Npy { label, bytes }) => Some(parse_node_input(label, bytes, &conv)?),
        None if policy == InputPolicy::Placeholder => None,
        None => {
            return Err(Error::invalid(
                "--input",
                format!(
                    "{path}#{node}: this command needs the node's input tensor `{}` ({}, NCHW{}); give it with --input FILE.npy",
                    conv.input_tensor,
                    conv.input_dtype,
                    conv.input_shape
                        .as_ref()
                        .map(|s| format!(" {}", onnx::shape::format(s)))
                        .unwrap_or_default()
                ),
            ));
        }
    };
    let layer = conv.layer(&model, data.as_ref())?;
    let mut loaded = LoadedLayer::from_layer(layer);
    loaded.placeholder_input = data.is_none();
    loaded.notes = conv.notes.clone();
    if let onnx::OrtExecution::NotFused(reason) = &conv.ort {
        loaded.not_modelled.insert(
            crate::EngineKind::OnnxRuntime.name().to_string(),
            format!(
                "ONNX Runtime does not fuse this QDQ group on x86 ({reason}); it runs DequantizeLinear, a float32 Conv and QuantizeLinear"
            ),
        );
    }
    Ok(loaded)
}
