//! The ONNX project's backend node tests as conformance cases.
//!
//! A backend test is a directory holding `model.onnx` (a graph of one operator) and
//! `test_data_set_N/` directories, each with `input_K.pb` (one serialized `TensorProto` per fed
//! graph input, in graph order) and `output_K.pb` (the expected outputs). For QLinearConv and
//! ConvInteger the scales, zero points and weights are graph inputs fed from the data set, not
//! initializers: they are bound to the graph as constants before the convolution node is
//! resolved, and the node's input tensor becomes the layer's input.
//!
//! Each data set becomes a [`GoldenCase`] whose expected output is recorded under the keys of the
//! engines that compute the ONNX operators, `onnx_reference` and `onnxruntime`. A test that real
//! ONNX Runtime refuses records that in an optional `engine-errors.json` beside `model.onnx`:
//!
//! ```json
//! { "source": "where the error was seen", "errors": { "onnxruntime": "the error" } }
//! ```
//!
//! A key listed there records the engine's error instead of the expected output, so the engine
//! model passes by refusing the case too (as for golden cases). Anything qconv cannot turn into
//! such a case (no single QLinearConv / ConvInteger node, inputs that do not match the graph, an
//! output of the wrong type or shape) is an [`Error::Parse`] naming the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::proto::{self, TensorProto, ValueInfoProto, data_type};
use super::tensor::{self, TensorData, TensorValue};
use super::{ConvFormat, NodeInput, OnnxModel};
use crate::dtype::DType;
use crate::engines::EngineKind;
use crate::error::{Error, Result};
use crate::io::golden::GoldenCase;
use crate::io::read_file;

/// The file beside `model.onnx` recording the errors real engines raise on the test.
pub const ENGINE_ERRORS_FILE: &str = "engine-errors.json";

/// The engines whose results a backend test's expected output is: the ONNX reference and ONNX
/// Runtime (which runs these tests in its own CI).
pub const ENGINES: [EngineKind; 2] = [EngineKind::Onnx, EngineKind::OnnxRuntime];

/// Whether `path` names a backend test (a directory, or a `model.onnx` file) rather than a
/// golden case file.
pub fn is_backend_path(path: &str) -> bool {
    let p = Path::new(path);
    p.is_dir() || p.file_name().is_some_and(|f| f == "model.onnx")
}

/// The backend test directories `path` names: the directory of a `model.onnx`, a directory
/// holding `model.onnx`, or a directory whose subdirectories hold backend tests (sorted by
/// name).
pub fn test_dirs(path: &str) -> Result<Vec<PathBuf>> {
    let p = Path::new(path);
    if p.file_name().is_some_and(|f| f == "model.onnx") && !p.is_dir() {
        let dir = p
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        return Ok(vec![if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        }]);
    }
    if p.join("model.onnx").is_file() {
        return Ok(vec![p.to_path_buf()]);
    }
    let entries = std::fs::read_dir(p).map_err(|error| Error::Io {
        path: path.to_string(),
        error,
    })?;
    let mut dirs = Vec::new();
    for e in entries {
        let e = e.map_err(|error| Error::Io {
            path: path.to_string(),
            error,
        })?;
        if e.path().join("model.onnx").is_file() {
            dirs.push(e.path());
        }
    }
    if dirs.is_empty() {
        return Err(Error::parse(
            path,
            "",
            "is neither an ONNX backend test (a directory with model.onnx and test_data_set_N/) \
             nor a directory of them",
        ));
    }
    dirs.sort();
    Ok(dirs)
}

/// Every case of the backend tests `path` names (see [`test_dirs`]).
pub fn read_cases(path: &str) -> Result<Vec<GoldenCase>> {
    let mut cases = Vec::new();
    for dir in test_dirs(path)? {
        cases.extend(read_test(&dir)?);
    }
    Ok(cases)
}

/// `engine-errors.json`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineErrors {
    source: String,
    errors: BTreeMap<String, String>,
}

fn display(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The numbered entries `prefix<N><suffix>` of directory `dir`, sorted by N; an error when the
/// numbers are not 0, 1, 2, ...
fn numbered(dir: &Path, prefix: &str, suffix: &str, want_dir: bool) -> Result<Vec<PathBuf>> {
    let at = display(dir);
    let entries = std::fs::read_dir(dir).map_err(|error| Error::Io {
        path: at.clone(),
        error,
    })?;
    let mut found: Vec<(usize, PathBuf)> = Vec::new();
    for e in entries {
        let e = e.map_err(|error| Error::Io {
            path: at.clone(),
            error,
        })?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(n) = name
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(suffix))
        else {
            continue;
        };
        let Ok(n) = n.parse::<usize>() else {
            return Err(Error::parse(
                &at,
                "",
                format!("`{name}` is not named {prefix}<number>{suffix}"),
            ));
        };
        if e.path().is_dir() != want_dir {
            return Err(Error::parse(
                display(&e.path()),
                "",
                format!("is not a {}", if want_dir { "directory" } else { "file" }),
            ));
        }
        found.push((n, e.path()));
    }
    found.sort();
    for (i, (n, p)) in found.iter().enumerate() {
        if *n != i {
            return Err(Error::parse(
                display(p),
                "",
                format!(
                    "{prefix}{i}{suffix} is missing (the files are numbered from 0 without gaps)"
                ),
            ));
        }
    }
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// Reads and decodes a serialized `TensorProto`.
fn read_tensor(path: &Path) -> Result<(TensorProto, TensorValue)> {
    let at = display(path);
    let t = proto::parse_tensor_proto(&at, &read_file(&at)?)?;
    let v = tensor::decode(&t, &|m| Error::parse(&at, "", m))?;
    Ok((t, v))
}

/// The ONNX data type code of a qconv output dtype.
fn onnx_type(d: DType) -> i32 {
    match d {
        DType::Uint8 => data_type::UINT8,
        DType::Int8 => data_type::INT8,
        DType::Int32 => data_type::INT32,
    }
}

/// Checks a data-set tensor against the graph input it feeds: name (when the file records one),
/// element type and the dimensions the model declares.
fn check_feed(file: &str, t: &TensorProto, input: &ValueInfoProto, k: usize) -> Result<()> {
    if !t.name.is_empty() && t.name != input.name {
        return Err(Error::parse(
            file,
            "field `tensor.name`",
            format!(
                "`{}`, but graph input {k} (which input_{k}.pb feeds) is `{}`",
                t.name, input.name
            ),
        ));
    }
    if let Some(et) = input.elem_type
        && et != t.data_type
    {
        return Err(Error::parse(
            file,
            "field `tensor.data_type`",
            format!(
                "{}, but the model declares graph input `{}` {}",
                data_type::name(t.data_type),
                input.name,
                data_type::name(et)
            ),
        ));
    }
    if let Some(shape) = &input.shape {
        let fits = shape.len() == t.dims.len()
            && shape.iter().zip(&t.dims).all(|(d, &n)| match d {
                proto::Dim::Value(v) => *v == n,
                _ => true,
            });
        if !fits {
            return Err(Error::parse(
                file,
                "field `tensor.dims`",
                format!(
                    "{:?} does not fit the shape the model declares for graph input `{}` ({})",
                    t.dims,
                    input.name,
                    shape
                        .iter()
                        .map(|d| match d {
                            proto::Dim::Value(v) => v.to_string(),
                            proto::Dim::Param(p) => p.clone(),
                            proto::Dim::Unknown => "?".into(),
                        })
                        .collect::<Vec<_>>()
                        .join("x")
                ),
            ));
        }
    }
    Ok(())
}

/// The cases of one backend test directory, one per data set.
pub fn read_test(dir: &Path) -> Result<Vec<GoldenCase>> {
    let test_name = dir
        .file_name()
        .map_or_else(|| display(dir), |f| f.to_string_lossy().into_owned());
    let model_path = display(&dir.join("model.onnx"));
    let model = OnnxModel::read(&model_path)?;

    let errors_path = dir.join(ENGINE_ERRORS_FILE);
    let recorded = if errors_path.is_file() {
        let at = display(&errors_path);
        let bytes = read_file(&at)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| Error::parse(&at, "", "not UTF-8"))?;
        let e: EngineErrors = serde_json::from_str(text)
            .map_err(|e| Error::parse(&at, format!("line {}", e.line()), e.to_string()))?;
        for key in e.errors.keys() {
            if !ENGINES.iter().any(|k| k.expected_key() == key) {
                return Err(Error::parse(
                    &at,
                    format!("field `errors.{key}`"),
                    format!(
                        "not an engine key a backend test records (expected {})",
                        ENGINES.map(EngineKind::expected_key).join(" or ")
                    ),
                ));
            }
        }
        Some(e)
    } else {
        None
    };

    let data_sets = numbered(dir, "test_data_set_", "", true)?;
    if data_sets.is_empty() {
        return Err(Error::parse(
            display(dir),
            "",
            "has model.onnx but no test_data_set_N directories",
        ));
    }
    let fed: Vec<ValueInfoProto> = model.fed_inputs().into_iter().cloned().collect();
    let outputs = &model.graph.output;
    if outputs.len() != 1 {
        return Err(model.err(
            "graph outputs",
            format!(
                "the graph has {} outputs; a convolution test has one",
                outputs.len()
            ),
        ));
    }
    let graph_output = outputs[0].name.clone();

    let mut cases = Vec::new();
    for set in &data_sets {
        let set_name = set
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
        let inputs = numbered(set, "input_", ".pb", false)?;
        let outs = numbered(set, "output_", ".pb", false)?;
        if inputs.len() != fed.len() {
            return Err(Error::parse(
                display(set),
                "",
                format!(
                    "{} input_N.pb files, but the model has {} graph inputs fed at run time ({})",
                    inputs.len(),
                    fed.len(),
                    fed.iter()
                        .map(|v| v.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if outs.len() != 1 {
            return Err(Error::parse(
                display(set),
                "",
                format!(
                    "{} output_N.pb files; the model has one output (`{graph_output}`)",
                    outs.len()
                ),
            ));
        }

        // Bind every fed tensor to its graph input.
        let mut bound = Vec::new();
        let mut values = BTreeMap::new();
        for (k, (path, input)) in inputs.iter().zip(&fed).enumerate() {
            let (t, v) = read_tensor(path)?;
            check_feed(&display(path), &t, input, k)?;
            values.insert(input.name.clone(), (display(path), v));
            bound.push((input.name.clone(), t));
        }
        let bound_model = model.with_bound_inputs(bound);

        let convs = bound_model.conv_nodes()?;
        let conv = match convs.as_slice() {
            [c] => c,
            _ => {
                return Err(model.err(
                    "graph",
                    format!(
                        "has {} convolution nodes; a backend test case is one QLinearConv or \
                         ConvInteger node",
                        convs.len()
                    ),
                ));
            }
        };
        let at = format!("node `{}`", conv.label());
        if conv.format == ConvFormat::Qdq {
            return Err(model.err(
                at,
                "is a DequantizeLinear -> Conv -> QuantizeLinear group, which the ONNX reference \
                 evaluates in floating point; qconv checks backend tests of QLinearConv and \
                 ConvInteger",
            ));
        }
        if conv.output_tensor != graph_output {
            return Err(model.err(
                at,
                format!(
                    "its output `{}` is not the graph's output `{graph_output}` (other nodes \
                     follow it); qconv checks tests of a single convolution",
                    conv.output_tensor
                ),
            ));
        }
        let Some((x_path, x)) = values.get(&conv.input_tensor) else {
            return Err(model.err(
                at,
                format!(
                    "its input `{}` is not a graph input fed by the data set; qconv checks tests \
                     of a single convolution",
                    conv.input_tensor
                ),
            ));
        };
        let shape: [usize; 4] = match x.dims.as_slice() {
            &[n, c, h, w] => [n, c, h, w],
            d => {
                return Err(Error::parse(
                    x_path,
                    "field `tensor.dims`",
                    format!("{d:?}: qconv models 2-D convolutions (a 4-D NCHW input)"),
                ));
            }
        };
        let TensorData::Int(xs) = &x.data else {
            return Err(Error::parse(
                x_path,
                "",
                "holds floats, not quantized integers",
            ));
        };
        // The type was checked against the model; the decoder keeps values within it.
        let input = NodeInput {
            shape,
            data: xs.iter().map(|&v| v as i32).collect(),
        };
        let layer = conv.layer(&bound_model, Some(&input))?;

        let out_path = display(&outs[0]);
        let (ot, ov) = read_tensor(&outs[0])?;
        let want_type = onnx_type(layer.output.dtype);
        if ot.data_type != want_type {
            return Err(Error::parse(
                &out_path,
                "field `tensor.data_type`",
                format!(
                    "{}, but the {} node's output is {}",
                    data_type::name(ot.data_type),
                    conv.format.name(),
                    data_type::name(want_type)
                ),
            ));
        }
        let out_shape = layer.geometry.output_shape();
        if ov.dims.as_slice() != out_shape.as_slice() {
            return Err(Error::parse(
                &out_path,
                "field `tensor.dims`",
                format!(
                    "{:?}, but the convolution's output is {out_shape:?}",
                    ov.dims
                ),
            ));
        }
        let TensorData::Int(expected) = ov.data else {
            return Err(Error::parse(&out_path, "", "holds floats, not integers"));
        };

        let mut case_expected = BTreeMap::new();
        let mut case_errors = BTreeMap::new();
        for engine in ENGINES {
            let key = engine.expected_key().to_string();
            match recorded.as_ref().and_then(|r| r.errors.get(&key)) {
                Some(e) => {
                    case_errors.insert(key, e.clone());
                }
                None => {
                    case_expected.insert(key, expected.clone());
                }
            }
        }
        let mut source = serde_json::Map::new();
        source.insert("framework".into(), "onnx backend node test".into());
        source.insert("model".into(), model_path.clone().into());
        source.insert("data_set".into(), set_name.clone().into());
        if let Some(r) = &recorded {
            source.insert("errors_source".into(), r.source.clone().into());
        }
        cases.push(GoldenCase {
            id: format!("{test_name}/{set_name}"),
            layer,
            expected: case_expected,
            errors: case_errors,
            source,
        });
    }
    Ok(cases)
}
