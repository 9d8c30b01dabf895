//! Reading layers and golden cases, and writing results.

pub mod csv;
pub mod golden;
pub mod layer_file;
pub mod npy;
pub mod output;
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
}

/// Loads a LAYER argument: a TOML layer file, a golden case file (`.json`), or one case of a
/// golden case collection (`FILE.jsonl#ID`, `FILE.jsonl.gz#ID`, or the file's only case).
pub fn load_layer(spec: &str) -> Result<LoadedLayer> {
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
        return Ok(LoadedLayer {
            layer: f.layer,
            expected: f.expected,
            errors: BTreeMap::new(),
        });
    }
    if path.ends_with(".tflite") {
        return Ok(LoadedLayer {
            layer: tflite::read_layer(path, id)?,
            expected: BTreeMap::new(),
            errors: BTreeMap::new(),
        });
    }
    if path.ends_with(".json") || path.ends_with(".jsonl") || path.ends_with(".jsonl.gz") {
        let case = golden::read_case(path, id)?;
        return Ok(LoadedLayer {
            layer: case.layer,
            expected: case.expected,
            errors: case.errors,
        });
    }
    Err(Error::parse(
        path,
        "",
        "unknown layer format (expected .toml, .json, .jsonl, .jsonl.gz or .tflite)",
    ))
}
