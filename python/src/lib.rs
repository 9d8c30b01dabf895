//! `qconv._native`: the Rust core as a Python extension module.
//!
//! This is the thin, typed boundary between Python and the `qconv` library: tensors cross it as
//! little-endian byte strings (`int64` / `float64` in, `int32` / `int64` / `float64` / `float32`
//! out), structured results as JSON text, and every library error becomes the matching exception
//! class of `qconv._errors` with the library's message. The public API, with NumPy arrays and
//! keyword arguments, is the Python package around it (`python/qconv`). Every computation runs
//! with the GIL released.

use std::collections::BTreeMap;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use qconv::engines::narrow::{AccumulatorWidth, Overflow};
use qconv::engines::{Accumulators, EngineKind, EngineOutput};
use qconv::io::parts::{LayerParts, TensorParts};
use qconv::io::{self, InputPolicy, LoadedLayer, NodeInputSource};
use qconv::kernels::KernelIsa;
use qconv::{Bias, Error, Isa, RunOptions};

/// Raises a library error as the exception class of `qconv._errors` that matches its kind, with
/// the library's message (the CLI prints the same text) and its fields as attributes.
fn raise(py: Python<'_>, e: Error) -> PyErr {
    let mut message = e.to_string();
    let mut errno = None;
    let (class, attributes): (&str, Vec<(&str, String)>) = match e {
        Error::Invalid {
            field,
            message: text,
        } => {
            // The library names some fields by their command-line option; Python has keywords.
            let python = match field.as_str() {
                "--input" => "input",
                "--input-range" => "input_range",
                "acc-bits" => "acc_bits",
                "acc-overflow" => "acc_overflow",
                other => other,
            }
            .to_string();
            if python != field {
                message = format!("{python}: {text}");
            }
            ("InvalidLayerError", vec![("field", python)])
        }
        Error::Refused { engine, reason } => {
            ("RefusedError", vec![("engine", engine), ("reason", reason)])
        }
        Error::NotModelled { engine, reason } => (
            "NotModelledError",
            vec![("engine", engine), ("reason", reason)],
        ),
        Error::Parse { path, location, .. } => {
            ("ParseError", vec![("path", path), ("location", location)])
        }
        Error::Io { path, error } => {
            // OSError's own attributes too, so `e.errno == errno.ENOENT` works.
            // (`strerror` stays unset: OSError would then replace the message with its own.)
            errno = error.raw_os_error();
            (
                "FileError",
                vec![("path", path.clone()), ("filename", path)],
            )
        }
        _ => ("QconvError", vec![]),
    };
    let build = || -> PyResult<PyErr> {
        let exception = py
            .import("qconv._errors")?
            .getattr(class)?
            .call1((message.clone(),))?;
        for (name, value) in attributes {
            exception.setattr(name, value)?;
        }
        if let Some(code) = errno {
            exception.setattr("errno", code)?;
        }
        Ok(PyErr::from_value(exception))
    };
    build().unwrap_or_else(|failure| failure)
}

/// Converts a library result, raising its error.
trait OrRaise<T> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> OrRaise<T> for qconv::Result<T> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| raise(py, e))
    }
}

/// Little-endian 8-byte values (`type_name` names their type in errors).
fn words<T>(
    field: &str,
    type_name: &str,
    bytes: &[u8],
    from: impl Fn([u8; 8]) -> T,
) -> qconv::Result<Vec<T>> {
    if !bytes.len().is_multiple_of(8) {
        return Err(Error::invalid(
            field,
            format!(
                "{} bytes is not a whole number of {type_name} values",
                bytes.len()
            ),
        ));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| from(c.try_into().expect("8 bytes")))
        .collect())
}

/// Little-endian `int64` bytes to integers.
fn i64s(field: &str, bytes: &[u8]) -> qconv::Result<Vec<i64>> {
    words(field, "int64", bytes, i64::from_le_bytes)
}

/// Little-endian `float64` bytes to numbers.
fn f64s(field: &str, bytes: &[u8]) -> qconv::Result<Vec<f64>> {
    words(field, "float64", bytes, f64::from_le_bytes)
}

fn le_bytes<T: Copy, const N: usize>(values: &[T], to: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(|&v| to(v)).collect()
}

/// The computation options the Python functions take (`isa`, `threads`, `kernel`, `acc_bits`,
/// `acc_overflow`), parsed and checked by the library.
fn run_options(
    isa: Option<&str>,
    threads: Option<usize>,
    kernel: Option<&str>,
    acc_bits: Option<u32>,
    acc_overflow: Option<&str>,
) -> qconv::Result<RunOptions> {
    let accumulator = match (acc_bits, acc_overflow) {
        (Some(bits), overflow) => {
            let overflow = match overflow {
                Some(name) => name.parse::<Overflow>()?,
                None => Overflow::Wrap,
            };
            Some(AccumulatorWidth::new(bits, overflow)?)
        }
        (None, Some(_)) => {
            return Err(Error::invalid(
                "acc_overflow",
                "needs acc_bits (the width of the accumulator that overflows)",
            ));
        }
        (None, None) => None,
    };
    let options = RunOptions {
        isa: isa.map(str::parse::<Isa>).transpose()?,
        threads,
        kernel: kernel.map(KernelIsa::by_name).transpose()?,
        reference: false,
        accumulator,
    };
    options.validate()?;
    Ok(options)
}

fn engine(name: &str) -> qconv::Result<EngineKind> {
    name.parse()
}

/// One tensor's arguments: `(dtype, shape, int64 bytes, scales, scales given as a list, zero
/// points, zero points given as a list, axis)`.
type TensorArgs<'a> = (
    String,
    Vec<usize>,
    &'a [u8],
    Option<Vec<f64>>,
    bool,
    Vec<i64>,
    bool,
    Option<i64>,
);

fn tensor_parts(field: &str, args: TensorArgs<'_>) -> qconv::Result<TensorParts> {
    let (dtype, shape, data, scales, scales_many, zero_points, zero_points_many, axis) = args;
    let values = i64s(&format!("{field}.data"), data)?;
    TensorParts::from_values(
        field,
        &dtype,
        &shape,
        &values,
        scales.map(|s| (s, scales_many)),
        (zero_points, zero_points_many),
        axis,
    )
}

/// An engine's result as a dict of plain values and byte strings.
fn output_dict<'py>(py: Python<'py>, out: &EngineOutput) -> PyResult<Bound<'py, PyAny>> {
    let dict = pyo3::types::PyDict::new(py);
    dict.set_item("engine", out.engine.name())?;
    dict.set_item("isa", out.isa.map(Isa::name))?;
    dict.set_item("path", &out.path)?;
    dict.set_item("dtype", out.dtype.name())?;
    dict.set_item("shape", out.shape.to_vec())?;
    dict.set_item(
        "values",
        PyBytes::new(py, &le_bytes(&out.values, i32::to_le_bytes)),
    )?;
    let (kind, bytes) = match &out.accumulators {
        Accumulators::Exact(a) => ("int64", le_bytes(a, i64::to_le_bytes)),
        Accumulators::Int32(a) => ("int32", le_bytes(a, i32::to_le_bytes)),
        Accumulators::Float(a) => ("float32", le_bytes(a, f32::to_le_bytes)),
    };
    dict.set_item("accumulators_dtype", kind)?;
    dict.set_item("accumulators", PyBytes::new(py, &bytes))?;
    dict.set_item("warnings", out.warnings.clone())?;
    Ok(dict.into_any())
}

/// A validated layer, with what its source records (expected results, notes).
#[pyclass(frozen, module = "qconv._native")]
struct Layer {
    loaded: Arc<LoadedLayer>,
    /// Where it came from: `arrays`, or the LAYER argument it was loaded from.
    source: String,
}

impl Layer {
    /// Refuses to compute on a placeholder input (an ONNX node loaded without its input), with
    /// the message the CLI gives when the input is missing.
    fn computable(&self) -> qconv::Result<()> {
        if self.loaded.placeholder_input {
            io::load_layer_from(&self.source, None, InputPolicy::Required)?;
            return Err(Error::invalid(
                "input",
                "the layer's input is a placeholder: give the node's input tensor",
            ));
        }
        Ok(())
    }
}

#[pymethods]
impl Layer {
    /// Builds a layer from arrays and parameters (see `qconv.Layer`).
    #[staticmethod]
    #[allow(clippy::too_many_arguments)] // Mirrors the Python keyword arguments one to one.
    #[pyo3(signature = (name, input, weight, bias, output_dtype, output_scale, output_zero_point,
        output_clamp, activation, stride, padding, padding_mode, dilation, groups, relu, isa))]
    fn from_arrays(
        py: Python<'_>,
        name: Option<String>,
        input: TensorArgs<'_>,
        weight: TensorArgs<'_>,
        bias: Option<(String, &[u8])>,
        output_dtype: String,
        output_scale: Option<f64>,
        output_zero_point: Option<i64>,
        output_clamp: Option<[i64; 2]>,
        activation: Option<String>,
        stride: Option<[usize; 2]>,
        padding: Option<Vec<i64>>,
        padding_mode: Option<String>,
        dilation: Option<[usize; 2]>,
        groups: Option<usize>,
        relu: bool,
        isa: Option<String>,
    ) -> PyResult<Layer> {
        let build = move || -> qconv::Result<LoadedLayer> {
            let input = tensor_parts("input", input)?;
            let weight = tensor_parts("weight", weight)?;
            let bias = match bias {
                Some((dtype, bytes)) => Some((dtype, f64s("bias.data", bytes)?)),
                None => None,
            };
            let layer = LayerParts {
                name,
                input,
                weight,
                bias,
                output_dtype,
                output_scale,
                output_zero_point,
                output_clamp,
                activation,
                kernel: None,
                stride,
                padding,
                padding_mode,
                dilation,
                groups,
                relu: Some(relu),
                isa,
            }
            .build()?;
            Ok(LoadedLayer::from(layer))
        };
        Ok(Layer {
            loaded: Arc::new(py.detach(build).or_raise(py)?),
            source: "arrays".to_string(),
        })
    }

    /// The layer's name.
    #[getter]
    fn name(&self) -> String {
        self.loaded.layer.name.clone()
    }

    /// Where the layer came from: `arrays`, or the LAYER argument it was loaded from.
    #[getter]
    fn source(&self) -> String {
        self.source.clone()
    }

    /// A one-line description: shapes, types, geometry, bias and output.
    fn describe(&self) -> String {
        self.loaded.layer.describe()
    }

    /// `[N, C, H, W]` of the input.
    #[getter]
    fn input_shape(&self) -> Vec<usize> {
        self.loaded.layer.input.shape.to_vec()
    }

    /// `[N, OC, OH, OW]` of the output.
    #[getter]
    fn output_shape(&self) -> Vec<usize> {
        self.loaded.layer.geometry.output_shape().to_vec()
    }

    /// Results the source records: engine key -> integers (golden cases, layer files).
    #[getter]
    fn expected(&self) -> BTreeMap<String, Vec<i64>> {
        self.loaded.expected.clone()
    }

    /// Errors the source records: engine key -> the message that engine raised.
    #[getter]
    fn errors(&self) -> BTreeMap<String, String> {
        self.loaded.errors.clone()
    }

    /// Things worth knowing about how the layer was read (ONNX nodes).
    #[getter]
    fn notes(&self) -> Vec<String> {
        self.loaded.notes.clone()
    }

    /// Whether the input values are a placeholder (an ONNX node loaded without an input).
    #[getter]
    fn placeholder_input(&self) -> bool {
        self.loaded.placeholder_input
    }

    /// The ISA the source's results were recorded on, if it says.
    #[getter]
    fn recorded_isa(&self) -> Option<&'static str> {
        self.loaded.layer.recorded_isa.map(Isa::name)
    }

    /// The layer's tensors and parameters: a dict of plain values, tensors as `int32` bytes.
    fn parameters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let l = &self.loaded.layer;
        let g = &l.geometry;
        let d = pyo3::types::PyDict::new(py);
        d.set_item("input_dtype", l.input.dtype.name())?;
        d.set_item("input_shape", l.input.shape.to_vec())?;
        d.set_item(
            "input",
            PyBytes::new(py, &le_bytes(&l.input.data, i32::to_le_bytes)),
        )?;
        d.set_item("input_scale", l.input.scale)?;
        d.set_item("input_zero_point", l.input.zero_point)?;
        d.set_item("weight_dtype", l.weight.dtype.name())?;
        d.set_item("weight_shape", l.weight.shape.to_vec())?;
        d.set_item(
            "weight",
            PyBytes::new(py, &le_bytes(&l.weight.data, i32::to_le_bytes)),
        )?;
        d.set_item("weight_scale", l.weight.quant.scales.clone())?;
        d.set_item("weight_zero_point", l.weight.quant.zero_points.clone())?;
        d.set_item("per_channel", l.weight.quant.per_channel)?;
        match &l.bias {
            Some(Bias::Float32(v)) => {
                d.set_item("bias_dtype", "float32")?;
                d.set_item("bias", PyBytes::new(py, &le_bytes(v, f32::to_le_bytes)))?;
            }
            Some(Bias::Int32(v)) => {
                d.set_item("bias_dtype", "int32")?;
                d.set_item("bias", PyBytes::new(py, &le_bytes(v, i32::to_le_bytes)))?;
            }
            None => {
                d.set_item("bias_dtype", py.None())?;
                d.set_item("bias", py.None())?;
            }
        }
        d.set_item("output_dtype", l.output.dtype.name())?;
        d.set_item("output_scale", l.output.scale)?;
        d.set_item("output_zero_point", l.output.zero_point)?;
        d.set_item("output_clamp", l.output.clamp.map(|c| c.to_vec()))?;
        d.set_item("stride", g.stride.to_vec())?;
        d.set_item("padding", g.padding.as_array().to_vec())?;
        d.set_item("dilation", g.dilation.to_vec())?;
        d.set_item("groups", g.groups)?;
        d.set_item("relu", l.relu)?;
        d.set_item("activation", l.activation.map(|a| a.name()))?;
        d.set_item("padding_mode", l.padding_mode.map(|m| m.name()))?;
        Ok(d.into_any())
    }

    /// The same layer on other input values (`int64` bytes of the input's shape).
    fn with_input(&self, py: Python<'_>, shape: Vec<usize>, data: &[u8]) -> PyResult<Layer> {
        let build = || -> qconv::Result<LoadedLayer> {
            let dtype = self.loaded.layer.input.dtype.name();
            let values = i64s("input.data", data)?;
            let input = TensorParts::from_values(
                "input",
                dtype,
                &shape,
                &values,
                None,
                (vec![], false),
                None,
            )?;
            let (shape, data) = (input.shape, input.data);
            let mut loaded = (*self.loaded).clone();
            loaded.layer = loaded.layer.with_input_data(shape, data)?;
            // The new input has no recorded results.
            loaded.expected.clear();
            loaded.errors.clear();
            loaded.placeholder_input = false;
            Ok(loaded)
        };
        Ok(Layer {
            loaded: Arc::new(build().or_raise(py)?),
            source: self.source.clone(),
        })
    }

    /// Runs one engine model; returns its output and accumulators.
    #[allow(clippy::too_many_arguments)] // Mirrors the Python keyword arguments one to one.
    #[pyo3(signature = (engine_name, isa=None, threads=None, kernel=None, acc_bits=None, acc_overflow=None))]
    fn run<'py>(
        &self,
        py: Python<'py>,
        engine_name: &str,
        isa: Option<&str>,
        threads: Option<usize>,
        kernel: Option<&str>,
        acc_bits: Option<u32>,
        acc_overflow: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.computable().or_raise(py)?;
        let options = run_options(isa, threads, kernel, acc_bits, acc_overflow).or_raise(py)?;
        let kind = engine(engine_name).or_raise(py)?;
        let loaded = Arc::clone(&self.loaded);
        let out = py.detach(move || loaded.run(kind, &options)).or_raise(py)?;
        output_dict(py, &out)
    }

    /// Runs several engines (default: every engine, skipping those that refuse the layer);
    /// returns `(outputs, refusals, exact real values as float64 bytes, modelled ISA, report)`.
    #[pyo3(signature = (engines=None, isa=None, threads=None, kernel=None))]
    #[allow(clippy::type_complexity)] // A plain tuple is what crosses into Python.
    fn compare<'py>(
        &self,
        py: Python<'py>,
        engines: Option<Vec<String>>,
        isa: Option<&str>,
        threads: Option<usize>,
        kernel: Option<&str>,
    ) -> PyResult<(
        Vec<Bound<'py, PyAny>>,
        Vec<String>,
        Bound<'py, PyBytes>,
        &'static str,
        Comparison,
    )> {
        self.computable().or_raise(py)?;
        let options = run_options(isa, threads, kernel, None, None).or_raise(py)?;
        let kinds = engines
            .map(|names| {
                names
                    .iter()
                    .map(|n| engine(n))
                    .collect::<qconv::Result<Vec<_>>>()
            })
            .transpose()
            .or_raise(py)?;
        let loaded = Arc::clone(&self.loaded);
        let modelled = options.resolve_isa(&loaded.layer).name();
        let comparison = py
            .detach(move || qconv::compare::compare(&loaded, kinds.as_deref(), &options))
            .or_raise(py)?;
        let outputs = comparison
            .outputs
            .iter()
            .map(|o| output_dict(py, o))
            .collect::<PyResult<Vec<_>>>()?;
        let real = PyBytes::new(py, &le_bytes(&comparison.real, f64::to_le_bytes));
        let refusals = comparison.refusals.clone();
        let report = Comparison {
            inner: Arc::new(comparison),
            loaded: Arc::clone(&self.loaded),
        };
        Ok((outputs, refusals, real, modelled, report))
    }

    /// Explains every element where two engines differ (default: as `qconv explain` chooses).
    #[pyo3(signature = (engines=None, isa=None, threads=None, kernel=None, acc_bits=None, acc_overflow=None))]
    #[allow(clippy::too_many_arguments)] // Mirrors the Python keyword arguments one to one.
    fn explain(
        &self,
        py: Python<'_>,
        engines: Option<(String, String)>,
        isa: Option<&str>,
        threads: Option<usize>,
        kernel: Option<&str>,
        acc_bits: Option<u32>,
        acc_overflow: Option<&str>,
    ) -> PyResult<Explanation> {
        self.computable().or_raise(py)?;
        let options = run_options(isa, threads, kernel, acc_bits, acc_overflow).or_raise(py)?;
        let kinds = match engines {
            Some((a, b)) => {
                let (a, b) = (engine(&a).or_raise(py)?, engine(&b).or_raise(py)?);
                if a == b {
                    return Err(raise(
                        py,
                        Error::invalid("engines", "name two different engines"),
                    ));
                }
                Some((a, b))
            }
            None => None,
        };
        let loaded = Arc::clone(&self.loaded);
        let explanation = py
            .detach(move || -> qconv::Result<_> {
                let outputs = match kinds {
                    Some((a, b)) => vec![loaded.run(a, &options)?, loaded.run(b, &options)?],
                    None => qconv::explain::default_runs(&loaded, &options)?,
                };
                let engines: Vec<EngineKind> = outputs.iter().map(|o| o.engine).collect();
                loaded.check_modelled(&engines)?;
                qconv::explain::explain_outputs(&loaded.layer, &outputs, &options, &mut |_, _| {})
            })
            .or_raise(py)?;
        Ok(Explanation {
            inner: Arc::new(explanation),
            description: self.loaded.layer.describe(),
        })
    }

    /// Predicts int16 pair saturation (default engine: as `qconv check` chooses); returns
    /// `(report JSON, report text, modelled ISA)`.
    #[pyo3(signature = (engine_name=None, isa=None, input_range=None, use_input=true))]
    fn check(
        &self,
        py: Python<'_>,
        engine_name: Option<&str>,
        isa: Option<&str>,
        input_range: Option<(i32, i32)>,
        use_input: bool,
    ) -> PyResult<(String, String, &'static str)> {
        let kind = match engine_name {
            Some(name) => engine(name).or_raise(py)?,
            None => qconv::check::default_engine(&self.source),
        };
        let options = run_options(isa, None, None, None, None).or_raise(py)?;
        let loaded = Arc::clone(&self.loaded);
        py.detach(move || -> qconv::Result<_> {
            loaded.check_modelled(&[kind])?;
            let isa = options.resolve_isa(&loaded.layer);
            let use_input = use_input && !loaded.placeholder_input;
            let report = qconv::check::check(&loaded.layer, kind, isa, input_range, use_input)?;
            Ok((
                qconv::explain::to_json_string(&qconv::check::to_json(&report)),
                qconv::check::render(&report),
                isa.name(),
            ))
        })
        .or_raise(py)
    }
}

/// Several engines' outputs on one layer; renders the comparison table.
#[pyclass(frozen, module = "qconv._native")]
struct Comparison {
    inner: Arc<qconv::compare::Comparison>,
    loaded: Arc<LoadedLayer>,
}

#[pymethods]
impl Comparison {
    /// The table `qconv compare` prints after its layer lines (at most `limit` rows).
    #[pyo3(signature = (limit=None))]
    fn table(&self, limit: Option<usize>) -> String {
        self.inner
            .table(&self.loaded.layer, limit.unwrap_or(usize::MAX))
    }
}

/// The explanation of where two engines differ; rendered on demand.
#[pyclass(frozen, module = "qconv._native")]
struct Explanation {
    inner: Arc<qconv::explain::Explanation>,
    description: String,
}

#[pymethods]
impl Explanation {
    /// The explanation as JSON text (schema `qconv-explain/1`, as `qconv explain --format json`).
    fn json(&self, py: Python<'_>) -> String {
        let x = Arc::clone(&self.inner);
        py.detach(move || qconv::explain::to_json_string(&x.to_json()))
    }

    /// The explanation as JSON text without its elements (`elements` is empty).
    fn header_json(&self) -> String {
        qconv::explain::to_json_string(&self.inner.to_json_header())
    }

    /// The JSON array of the elements `start..end` (clamped to the number of elements).
    fn elements_json(&self, py: Python<'_>, start: usize, end: usize) -> String {
        let x = Arc::clone(&self.inner);
        py.detach(move || {
            let end = end.min(x.elements.len());
            let start = start.min(end);
            qconv::explain::to_json_string(&x.elements_json(start..end))
        })
    }

    /// The text report, as `qconv explain` prints it.
    #[pyo3(signature = (detail=5, limit=None))]
    fn text(&self, py: Python<'_>, detail: usize, limit: Option<usize>) -> String {
        let x = Arc::clone(&self.inner);
        py.detach(move || qconv::explain::text(&x, detail, limit.unwrap_or(usize::MAX)))
    }

    /// The self-contained HTML report, as `qconv explain --html` writes it.
    #[pyo3(signature = (limit=None))]
    fn html(&self, py: Python<'_>, limit: Option<usize>) -> String {
        let x = Arc::clone(&self.inner);
        let description = self.description.clone();
        py.detach(move || {
            qconv::explain::html(&x, &description, limit.unwrap_or(usize::MAX).min(20_000))
        })
    }

    /// The layer's one-line description.
    fn description(&self) -> String {
        self.description.clone()
    }

    /// Number of differing elements.
    fn __len__(&self) -> usize {
        self.inner.elements.len()
    }
}

/// Loads a LAYER argument (TOML, golden case, `MODEL.onnx#NODE`, `MODEL.tflite#OP`); an ONNX
/// node's input may be given as the bytes of an `.npy` file.
#[pyfunction]
#[pyo3(signature = (spec, npy=None, npy_label="input", placeholder=false))]
fn load_layer(
    py: Python<'_>,
    spec: String,
    npy: Option<Vec<u8>>,
    npy_label: &str,
    placeholder: bool,
) -> PyResult<Layer> {
    let label = npy_label.to_string();
    let policy = if placeholder {
        InputPolicy::Placeholder
    } else {
        InputPolicy::Required
    };
    let spec_for_load = spec.clone();
    let loaded = py
        .detach(move || {
            let input = npy.as_deref().map(|bytes| NodeInputSource::Npy {
                label: &label,
                bytes,
            });
            io::load_layer_from(&spec_for_load, input, policy)
        })
        .or_raise(py)?;
    Ok(Layer {
        loaded: Arc::new(loaded),
        source: spec,
    })
}

/// The convolution nodes of an ONNX model: `(JSON, text)` as `qconv layers` gives them.
#[pyfunction]
fn onnx_layers(py: Python<'_>, path: String) -> PyResult<(String, String)> {
    py.detach(move || -> qconv::Result<_> {
        let model = io::onnx::OnnxModel::read(&path)?;
        let nodes = model.conv_nodes()?;
        Ok((
            qconv::explain::to_json_string(&io::onnx::listing::json(&model, &nodes)),
            io::onnx::listing::text(&model, &nodes),
        ))
    })
    .or_raise(py)
}

/// The operators of a TFLite model: `(index, op, summary, why it does not load)`.
#[pyfunction]
#[allow(clippy::type_complexity)] // A plain tuple is what crosses into Python.
fn tflite_layers(
    py: Python<'_>,
    path: String,
) -> PyResult<Vec<(usize, String, Option<String>, Option<String>)>> {
    let ops = py
        .detach(move || io::tflite::list_operators(&path))
        .or_raise(py)?;
    Ok(ops
        .into_iter()
        .map(|o| (o.index, o.op, o.summary, o.loadable.err()))
        .collect())
}

/// Audits every convolution node of an ONNX model: `(JSON, text)`.
#[pyfunction]
#[pyo3(signature = (path, engine_name=None, isas=None, input_range=None))]
fn check_model(
    py: Python<'_>,
    path: String,
    engine_name: Option<String>,
    isas: Option<Vec<String>>,
    input_range: Option<(i32, i32)>,
) -> PyResult<(String, String)> {
    py.detach(move || -> qconv::Result<_> {
        let kind = match engine_name {
            Some(name) => engine(&name)?,
            None => EngineKind::OnnxRuntime,
        };
        let isas = match isas {
            Some(names) => names
                .iter()
                .map(|n| n.parse())
                .collect::<qconv::Result<Vec<Isa>>>()?,
            None => qconv::model_check::default_isas(kind),
        };
        let model = io::onnx::OnnxModel::read(&path)?;
        let report = qconv::model_check::check_model(&model, kind, &isas, input_range)?;
        Ok((
            qconv::explain::to_json_string(&qconv::model_check::to_json(&report)),
            qconv::model_check::render_model_check(&report),
        ))
    })
    .or_raise(py)
}

/// Every engine: `(name, key of its results in golden cases, whether it depends on the ISA)`.
#[pyfunction]
fn engines() -> Vec<(&'static str, &'static str, bool)> {
    EngineKind::ALL
        .iter()
        .map(|e| (e.name(), e.expected_key(), e.depends_on_isa()))
        .collect()
}

/// The ISAs the engine models know, lowest first.
#[pyfunction]
fn isas() -> Vec<&'static str> {
    Isa::ALL.iter().map(|i| i.name()).collect()
}

/// The ISA of this CPU, as the engine models name it.
#[pyfunction]
fn host_isa() -> &'static str {
    Isa::host().name()
}

/// The kernel sets of the fast kernels this CPU can run, slowest first.
#[pyfunction]
fn kernels() -> Vec<&'static str> {
    KernelIsa::available().iter().map(|k| k.name()).collect()
}

/// The library's version.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Layer>()?;
    m.add_class::<Explanation>()?;
    m.add_class::<Comparison>()?;
    m.add_function(wrap_pyfunction!(load_layer, m)?)?;
    m.add_function(wrap_pyfunction!(onnx_layers, m)?)?;
    m.add_function(wrap_pyfunction!(tflite_layers, m)?)?;
    m.add_function(wrap_pyfunction!(check_model, m)?)?;
    m.add_function(wrap_pyfunction!(engines, m)?)?;
    m.add_function(wrap_pyfunction!(isas, m)?)?;
    m.add_function(wrap_pyfunction!(host_isa, m)?)?;
    m.add_function(wrap_pyfunction!(kernels, m)?)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    Ok(())
}
