//! Golden cases: JSON objects recording a layer and what real engines returned for it (see
//! `tests/data/golden/FORMAT.md`). Read from `.json` (one case), `.jsonl` or `.jsonl.gz` files.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};

use serde::Deserialize;

use super::{read_file, to_i32_data};
use crate::error::{Error, Result};
use crate::geometry::Padding;
use crate::layer::{Activations, Bias, ConvLayer, ConvParams, OutputQuant, Weights};
use crate::quant::WeightQuant;

/// One golden case.
#[derive(Clone, Debug)]
pub struct GoldenCase {
    pub id: String,
    pub layer: ConvLayer,
    /// Engine key -> the integers that engine returned (NCHW).
    pub expected: BTreeMap<String, Vec<i64>>,
    /// Engine key -> the first line of the error that engine raised.
    pub errors: BTreeMap<String, String>,
    /// The case's `source` object as recorded.
    pub source: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct RawCase {
    id: String,
    #[serde(default)]
    source: serde_json::Map<String, serde_json::Value>,
    conv: RawConv,
    input: RawInput,
    weight: RawWeight,
    #[serde(default)]
    bias: Option<RawBias>,
    #[serde(default)]
    relu: Option<bool>,
    output: RawOutput,
    #[serde(default)]
    expected: BTreeMap<String, Vec<i64>>,
    #[serde(default)]
    errors: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct RawConv {
    #[serde(default)]
    kernel: Option<[usize; 2]>,
    stride: [usize; 2],
    padding: Vec<i64>,
    dilation: [usize; 2],
    groups: usize,
}

#[derive(Deserialize)]
struct RawInput {
    dtype: String,
    shape: [usize; 4],
    #[serde(default)]
    scale: Option<f64>,
    zero_point: i64,
    data: Vec<i64>,
}

#[derive(Deserialize)]
struct RawWeight {
    dtype: String,
    shape: [usize; 4],
    #[serde(default)]
    axis: Option<i64>,
    #[serde(default)]
    scale: Option<Vec<f64>>,
    zero_point: Vec<i64>,
    data: Vec<i64>,
}

#[derive(Deserialize)]
struct RawBias {
    dtype: String,
    data: Vec<f64>,
}

#[derive(Deserialize)]
struct RawOutput {
    dtype: String,
    #[serde(default)]
    scale: Option<f64>,
    #[serde(default)]
    zero_point: Option<i64>,
    #[serde(default)]
    shape: Option<[usize; 4]>,
    #[serde(default)]
    clamp: Option<[i64; 2]>,
}

fn zero_points(field: &str, values: &[i64]) -> Result<Vec<i32>> {
    values
        .iter()
        .enumerate()
        .map(|(i, &z)| {
            i32::try_from(z).map_err(|_| {
                Error::invalid(
                    format!("{field}[{i}]"),
                    format!("{z} is not a 32-bit integer"),
                )
            })
        })
        .collect()
}

fn small_int(field: &str, v: i64) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::invalid(field, format!("{v} is not a 32-bit integer")))
}

impl RawCase {
    fn into_case(self) -> Result<GoldenCase> {
        let conv = ConvParams {
            kernel: self.conv.kernel,
            stride: self.conv.stride,
            dilation: self.conv.dilation,
            padding: Padding::from_list(&self.conv.padding).map_err(|e| e.within("conv"))?,
            groups: self.conv.groups,
        };
        let input = Activations {
            dtype: self
                .input
                .dtype
                .parse()
                .map_err(|e: Error| e.within("input"))?,
            shape: self.input.shape,
            data: to_i32_data("input.data", &self.input.data)?,
            scale: self.input.scale,
            zero_point: small_int("input.zero_point", self.input.zero_point)?,
        };
        let per_channel = match self.weight.axis {
            None => false,
            Some(0) => true,
            Some(a) => {
                return Err(Error::invalid(
                    "weight.axis",
                    format!("{a}: only axis 0 (output channels) is supported"),
                ));
            }
        };
        let weight = Weights {
            dtype: self
                .weight
                .dtype
                .parse()
                .map_err(|e: Error| e.within("weight"))?,
            shape: self.weight.shape,
            data: to_i32_data("weight.data", &self.weight.data)?,
            quant: WeightQuant {
                scales: self.weight.scale,
                zero_points: zero_points("weight.zero_point", &self.weight.zero_point)?,
                per_channel,
            },
        };
        let bias = match self.bias {
            None => None,
            Some(b) => Some(match b.dtype.as_str() {
                "float32" => Bias::Float32(b.data.iter().map(|&v| v as f32).collect()),
                "int32" => Bias::Int32(
                    b.data
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| {
                            if v.fract() == 0.0 && (i32::MIN as f64..=i32::MAX as f64).contains(&v)
                            {
                                Ok(v as i32)
                            } else {
                                Err(Error::invalid(
                                    format!("bias.data[{i}]"),
                                    format!("{v} is not an int32"),
                                ))
                            }
                        })
                        .collect::<Result<_>>()?,
                ),
                other => {
                    return Err(Error::invalid(
                        "bias.dtype",
                        format!("`{other}` (expected float32 or int32)"),
                    ));
                }
            }),
        };
        let output_dtype = self
            .output
            .dtype
            .parse()
            .map_err(|e: Error| e.within("output"))?;
        let output = OutputQuant {
            dtype: output_dtype,
            scale: self.output.scale,
            zero_point: small_int("output.zero_point", self.output.zero_point.unwrap_or(0))?,
            clamp: match self.output.clamp {
                Some([lo, hi]) => Some([
                    small_int("output.clamp[0]", lo)?,
                    small_int("output.clamp[1]", hi)?,
                ]),
                None => None,
            },
        };
        let mut layer = ConvLayer::new(
            self.id.clone(),
            conv,
            input,
            weight,
            bias,
            output,
            self.relu.unwrap_or(false),
        )?;
        if let Some(shape) = self.output.shape {
            if shape != layer.geometry.output_shape() {
                return Err(Error::invalid(
                    "output.shape",
                    format!(
                        "{shape:?} does not match the geometry's output {:?}",
                        layer.geometry.output_shape()
                    ),
                ));
            }
        }
        let out_len = layer.output_len();
        for (key, values) in &self.expected {
            if values.len() != out_len {
                return Err(Error::invalid(
                    format!("expected.{key}"),
                    format!("has {} values, the output has {out_len}", values.len()),
                ));
            }
        }
        if let Some(isa) = self.source.get("isa").and_then(|v| v.as_str()) {
            layer.recorded_isa = Some(isa.parse().map_err(|e: Error| e.within("source"))?);
        }
        Ok(GoldenCase {
            id: self.id,
            layer,
            expected: self.expected,
            errors: self.errors.unwrap_or_default(),
            source: self.source,
        })
    }
}

/// Parses one case from JSON text; errors carry the field path.
fn parse_case(text: &str) -> Result<GoldenCase> {
    let mut de = serde_json::Deserializer::from_str(text);
    let raw: RawCase = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        Error::invalid(
            if field == "." { String::new() } else { field },
            format!("{inner}"),
        )
    })?;
    raw.into_case()
}

fn locate(path: &str, line: Option<usize>, e: Error) -> Error {
    match (line, e) {
        (Some(n), Error::Invalid { field, message }) => Error::parse(
            path,
            if field.is_empty() {
                format!("line {n}")
            } else {
                format!("line {n}, field `{field}`")
            },
            message,
        ),
        (None, e) => e.in_file(path),
        (_, other) => other,
    }
}

/// Reads every case of a golden file (`.json`, `.jsonl`, `.jsonl.gz`).
pub fn read_cases(path: &str) -> Result<Vec<GoldenCase>> {
    let bytes = read_file(path)?;
    if path.ends_with(".json") {
        let text =
            std::str::from_utf8(&bytes).map_err(|_| Error::parse(path, "", "not UTF-8 text"))?;
        return Ok(vec![parse_case(text).map_err(|e| locate(path, None, e))?]);
    }
    let reader: Box<dyn Read> = if path.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(&bytes[..]))
    } else {
        Box::new(&bytes[..])
    };
    let mut cases = Vec::new();
    for (i, line) in BufReader::new(reader).lines().enumerate() {
        let line = line.map_err(|e| {
            Error::parse(
                path,
                format!("line {}", i + 1),
                format!("cannot be read: {e}"),
            )
        })?;
        if line.trim().is_empty() {
            continue;
        }
        cases.push(parse_case(&line).map_err(|e| locate(path, Some(i + 1), e))?);
    }
    if cases.is_empty() {
        return Err(Error::parse(path, "", "contains no cases"));
    }
    Ok(cases)
}

/// Reads the case `id` of a golden file, or its only case when `id` is `None`.
pub fn read_case(path: &str, id: Option<&str>) -> Result<GoldenCase> {
    let mut cases = read_cases(path)?;
    match id {
        Some(id) => {
            let i = cases
                .iter()
                .position(|c| c.id == id)
                .ok_or_else(|| Error::parse(path, "", format!("has no case with id `{id}`")))?;
            Ok(cases.swap_remove(i))
        }
        None if cases.len() == 1 => Ok(cases.pop().expect("one case")),
        None => Err(Error::parse(
            path,
            "",
            format!(
                "holds {} cases; choose one as {path}#ID (first: {})",
                cases.len(),
                cases[0].id
            ),
        )),
    }
}
