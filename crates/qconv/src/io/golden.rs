//! Golden cases: JSON objects recording a layer and what real engines returned for it (see
//! `tests/data/golden/FORMAT.md`). Read from `.json` (one case), `.jsonl` or `.jsonl.gz` files.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};

use serde::Deserialize;

use super::{bias, check_expected, int32, output_quant, read_file, to_i32_data, weight_axis};
use crate::error::{Error, Result};
use crate::geometry::Padding;
use crate::layer::{Activations, ConvLayer, ConvParams, Weights};
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
    /// TFLite cases: the fused activation (`linear`, `relu`, `relu6`).
    #[serde(default)]
    activation: Option<String>,
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
            zero_point: int32("input.zero_point", self.input.zero_point)?,
        };
        let per_channel = weight_axis(self.weight.axis)?.unwrap_or(false);
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
                zero_points: self
                    .weight
                    .zero_point
                    .iter()
                    .enumerate()
                    .map(|(i, &z)| int32(&format!("weight.zero_point[{i}]"), z))
                    .collect::<Result<_>>()?,
                per_channel,
            },
        };
        let bias = match self.bias {
            None => None,
            Some(b) => Some(bias(&b.dtype, &b.data)?),
        };
        let output = output_quant(
            &self.output.dtype,
            self.output.scale,
            self.output.zero_point,
            self.output.clamp,
        )?;
        let mut layer = ConvLayer::new(
            self.id.clone(),
            conv,
            input,
            weight,
            bias,
            output,
            self.relu.unwrap_or(false),
        )?;
        if let Some(shape) = self.output.shape
            && shape != layer.geometry.output_shape()
        {
            return Err(Error::invalid(
                "output.shape",
                format!(
                    "{shape:?} does not match the geometry's output {:?}",
                    layer.geometry.output_shape()
                ),
            ));
        }
        check_expected(&layer, &self.expected)?;
        if let Some(a) = &self.output.activation {
            layer.activation = Some(a.parse().map_err(|e: Error| e.within("output"))?);
        }
        if let Some(mode) = self.source.get("padding_mode").and_then(|v| v.as_str()) {
            layer.padding_mode = Some(match mode {
                "same" | "SAME" => crate::layer::PaddingMode::Same,
                "valid" | "VALID" => crate::layer::PaddingMode::Valid,
                other => {
                    return Err(Error::invalid(
                        "source.padding_mode",
                        format!("`{other}` (expected same or valid)"),
                    ));
                }
            });
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
