//! TOML layer files (the format is documented in the README).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::parts::{LayerParts, TensorParts};
use super::{check_expected, read_file, to_i32_data};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::geometry::check_elements;
use crate::layer::ConvLayer;

/// A layer read from a TOML file, with any engine results the file records.
#[derive(Clone, Debug)]
pub struct LayerFile {
    pub layer: ConvLayer,
    /// Free text describing the layer.
    pub description: Option<String>,
    /// Engine key -> integers observed from that engine, as the file records them.
    pub expected: BTreeMap<String, Vec<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    name: Option<String>,
    description: Option<String>,
    source: Option<RawSource>,
    #[serde(default)]
    conv: RawConv,
    input: RawTensor,
    weight: RawTensor,
    bias: Option<RawBias>,
    output: RawOutput,
    #[serde(default)]
    expected: BTreeMap<String, Vec<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    isa: Option<String>,
    framework: Option<String>,
    note: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConv {
    kernel: Option<[usize; 2]>,
    stride: Option<[usize; 2]>,
    padding: Option<Vec<i64>>,
    dilation: Option<[usize; 2]>,
    groups: Option<usize>,
    relu: Option<bool>,
    /// TFLite padding: `same` or `valid` (the amounts are computed; exclusive with `padding`).
    padding_mode: Option<String>,
}

/// A TOML value that is one number or a list of numbers.
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

/// Numbers a [`OneOrMany`] can hold.
trait Scalar: Sized {
    fn from_i64(v: i64) -> Option<Self>;
    fn from_f64(v: f64) -> Option<Self>;
}

impl Scalar for f64 {
    fn from_i64(v: i64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_f64(v: f64) -> Option<Self> {
        Some(v)
    }
}

impl Scalar for i64 {
    fn from_i64(v: i64) -> Option<Self> {
        Some(v)
    }
    fn from_f64(v: f64) -> Option<Self> {
        (v.fract() == 0.0 && v.abs() < 9.0e15).then_some(v as i64)
    }
}

struct OneOrManyVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Scalar + Deserialize<'de>> serde::de::Visitor<'de> for OneOrManyVisitor<T> {
    type Value = OneOrMany<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a number or a list of numbers")
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        T::from_i64(v)
            .map(OneOrMany::One)
            .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        i64::try_from(v)
            .ok()
            .and_then(T::from_i64)
            .map(OneOrMany::One)
            .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        T::from_f64(v)
            .map(OneOrMany::One)
            .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Float(v), &self))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut values = Vec::new();
        while let Some(v) = seq.next_element()? {
            values.push(v);
        }
        Ok(OneOrMany::Many(values))
    }
}

impl<'de, T: Scalar + Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(OneOrManyVisitor(std::marker::PhantomData))
    }
}

impl<T: Clone> OneOrMany<T> {
    fn into_vec(self) -> (Vec<T>, bool) {
        match self {
            OneOrMany::One(v) => (vec![v], false),
            OneOrMany::Many(v) => (v, true),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTensor {
    dtype: String,
    shape: Option<[usize; 4]>,
    scale: Option<OneOrMany<f64>>,
    zero_point: Option<OneOrMany<i64>>,
    axis: Option<i64>,
    data: Option<Vec<i64>>,
    fill: Option<i64>,
    file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBias {
    dtype: Option<String>,
    data: Option<Vec<f64>>,
    file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    dtype: String,
    scale: Option<f64>,
    zero_point: Option<i64>,
    clamp: Option<[i64; 2]>,
    /// A TFLite fused activation (`linear`, `relu`, `relu_n1_to_1`, `relu6`).
    activation: Option<String>,
}

/// Where a tensor's values come from, resolved to numbers with the file's shape (if any).
struct TensorValues {
    values: Vec<f64>,
    shape: Option<Vec<usize>>,
}

fn load_values(
    field: &str,
    base: &Path,
    data: Option<Vec<f64>>,
    fill: Option<f64>,
    file: Option<&str>,
    shape: Option<&[usize]>,
) -> Result<TensorValues> {
    let given = data.is_some() as u8 + fill.is_some() as u8 + file.is_some() as u8;
    if given != 1 {
        return Err(Error::invalid(
            field,
            "give exactly one of `data` (inline values), `fill` (one value everywhere) or \
             `file` (a .npy or .csv file)",
        ));
    }
    if let Some(values) = data {
        return Ok(TensorValues {
            values,
            shape: None,
        });
    }
    if let Some(v) = fill {
        let shape = shape
            .ok_or_else(|| Error::invalid(format!("{field}.shape"), "required with `fill`"))?;
        let n = check_elements(&format!("{field}.shape"), shape)?;
        return Ok(TensorValues {
            values: vec![v; n],
            shape: None,
        });
    }
    let file = file.expect("one source");
    let path = base.join(file);
    let path_text = path.to_string_lossy().to_string();
    // A file the layer names but that cannot be read is reported against the layer's field.
    let read =
        |p: &str| read_file(p).map_err(|e| Error::invalid(format!("{field}.file"), e.to_string()));
    if file.ends_with(".npy") {
        let array = super::npy::parse(&path_text, &read(&path_text)?)?;
        let values = match array.data {
            super::npy::NpyData::Int(v) => v.into_iter().map(|x| x as f64).collect(),
            super::npy::NpyData::Float(v) => v,
        };
        Ok(TensorValues {
            values,
            shape: Some(array.shape),
        })
    } else if file.ends_with(".csv") {
        let shape = shape
            .ok_or_else(|| Error::invalid(format!("{field}.shape"), "required with a .csv file"))?;
        let bytes = read(&path_text)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| Error::parse(&path_text, "", "not UTF-8 text"))?;
        Ok(TensorValues {
            values: super::csv::parse(&path_text, text, shape)?,
            shape: None,
        })
    } else {
        Err(Error::invalid(
            format!("{field}.file"),
            format!("`{file}`: expected a .npy or .csv file"),
        ))
    }
}

fn integers(field: &str, values: &[f64]) -> Result<Vec<i64>> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v.fract() == 0.0 && v.abs() < 9.0e15 {
                Ok(v as i64)
            } else {
                Err(Error::invalid(
                    format!("{field}[{i}]"),
                    format!("{v} is not an integer"),
                ))
            }
        })
        .collect()
}

/// Resolves a tensor section to its values.
fn tensor(field: &str, base: &Path, raw: RawTensor) -> Result<TensorParts> {
    let dtype: DType = raw.dtype.parse().map_err(|e: Error| e.within(field))?;
    let declared = raw.shape.map(|s| s.to_vec());
    let values = load_values(
        field,
        base,
        raw.data.map(|v| v.into_iter().map(|x| x as f64).collect()),
        raw.fill.map(|v| v as f64),
        raw.file.as_deref(),
        declared.as_deref(),
    )?;
    let shape: [usize; 4] = match (raw.shape, values.shape) {
        (Some(s), Some(file_shape)) if file_shape != s => {
            return Err(Error::invalid(
                format!("{field}.shape"),
                format!("{s:?} but the file holds shape {file_shape:?}"),
            ));
        }
        (Some(s), _) => s,
        (None, Some(file_shape)) => file_shape.as_slice().try_into().map_err(|_| {
            Error::invalid(
                format!("{field}.file"),
                format!("holds shape {file_shape:?}, expected 4 dimensions"),
            )
        })?,
        (None, None) => {
            return Err(Error::invalid(
                format!("{field}.shape"),
                "missing (required unless the data comes from a .npy file)",
            ));
        }
    };
    let data = to_i32_data(
        &format!("{field}.data"),
        &integers(&format!("{field}.data"), &values.values)?,
    )?;
    Ok(TensorParts {
        dtype,
        shape,
        data,
        scales: raw.scale.map(OneOrMany::into_vec),
        zero_points: raw
            .zero_point
            .map(OneOrMany::into_vec)
            .unwrap_or((vec![0], false)),
        axis: raw.axis,
    })
}

fn parse_layer_text(path: &str, text: &str) -> Result<LayerFile> {
    let base = Path::new(path).parent().unwrap_or(Path::new("."));
    let located = |e: toml::de::Error, field: String| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let mut location = String::new();
        if let Some(l) = line {
            location = format!("line {l}");
        }
        if !field.is_empty() && field != "." {
            if !location.is_empty() {
                location.push_str(", ");
            }
            location.push_str(&format!("field `{field}`"));
        }
        Error::parse(path, location, e.message().replace('\n', " "))
    };
    let de = toml::Deserializer::parse(text).map_err(|e| located(e, String::new()))?;
    let raw: RawFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        located(e.into_inner(), field)
    })?;
    build(base, raw).map_err(|e| e.in_file(path))
}

fn build(base: &Path, raw: RawFile) -> Result<LayerFile> {
    let input = tensor("input", base, raw.input)?;
    let weight = tensor("weight", base, raw.weight)?;
    let bias = match raw.bias {
        None => None,
        Some(b) => {
            let dtype = b.dtype.as_deref().unwrap_or("float32");
            let oc = weight.shape[0];
            let values = load_values("bias", base, b.data, None, b.file.as_deref(), Some(&[oc]))?;
            Some((dtype.to_string(), values.values))
        }
    };
    let (isa, description) = match raw.source {
        Some(source) => {
            let _ = (source.framework, source.note);
            (source.isa, raw.description)
        }
        None => (None, raw.description),
    };
    let layer = LayerParts {
        name: raw.name,
        input,
        weight,
        bias,
        output_dtype: raw.output.dtype,
        output_scale: raw.output.scale,
        output_zero_point: raw.output.zero_point,
        output_clamp: raw.output.clamp,
        activation: raw.output.activation,
        kernel: raw.conv.kernel,
        stride: raw.conv.stride,
        padding: raw.conv.padding,
        padding_mode: raw.conv.padding_mode,
        dilation: raw.conv.dilation,
        groups: raw.conv.groups,
        relu: raw.conv.relu,
        isa,
    }
    .build()?;
    check_expected(&layer, &raw.expected)?;
    Ok(LayerFile {
        layer,
        description,
        expected: raw.expected,
    })
}

/// Reads a TOML layer file. Tensor files it names are resolved relative to its directory.
pub fn read_layer_file(path: &str) -> Result<LayerFile> {
    let bytes = read_file(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| Error::parse(path, "", "not UTF-8 text"))?;
    parse_layer_text(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORUM: &str = r#"
name = "forum"
[source]
isa = "avx2"
[conv]
[input]
dtype = "uint8"
shape = [1, 1, 5, 5]
scale = 0.012728
zero_point = 33
fill = 200
[weight]
dtype = "int8"
shape = [1, 1, 5, 5]
scale = 0.00292
zero_point = -11
data = [9, -32, 17, 3, -67, -97, -41, 47, 84, -56, -128, -125, 11, 63, 54, -15, -58, -31, 50, 48, 23, -3, 64, -87, -91]
[output]
dtype = "uint8"
scale = 0.02091
zero_point = 0
"#;

    #[test]
    fn parses_a_layer() {
        let f = parse_layer_text("forum.toml", FORUM).unwrap();
        assert_eq!(f.layer.geometry.output_shape(), [1, 1, 1, 1]);
        assert_eq!(f.layer.input.data, vec![200; 25]);
        assert!(!f.layer.weight.quant.per_channel);
        assert_eq!(f.layer.recorded_isa, Some(crate::Isa::Avx2));
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let bad = FORUM.replace("scale = 0.012728", "scale = \"x\"");
        let e = parse_layer_text("f.toml", &bad).unwrap_err().to_string();
        assert!(e.starts_with("f.toml: line 9, field `input.scale`"), "{e}");
        assert!(e.contains("expected a number or a list of numbers"), "{e}");
        let bad = FORUM.replace("scale = 0.012728", "scale = 0.0");
        let e = parse_layer_text("f.toml", &bad).unwrap_err().to_string();
        assert_eq!(
            e,
            "f.toml: field `input.scale`: scale must be finite and > 0, got 0"
        );
        let bad = FORUM.replace("zero_point = 33", "zero_point = 300");
        let e = parse_layer_text("f.toml", &bad).unwrap_err().to_string();
        assert!(
            e.contains("input.zero_point") && e.contains("outside uint8"),
            "{e}"
        );
        let bad = FORUM.replace("fill = 200", "fill = 256");
        let e = parse_layer_text("f.toml", &bad).unwrap_err().to_string();
        assert!(e.contains("input.data") && e.contains("256"), "{e}");
        let bad = FORUM.replace("[conv]", "[conv]\nstrid = [1, 1]");
        let e = parse_layer_text("f.toml", &bad).unwrap_err().to_string();
        assert!(e.contains("unknown field `strid`"), "{e}");
        let bad = FORUM.replace("dtype = \"int8\"", "dtype = \"int4\"");
        let e = parse_layer_text("f.toml", &bad).unwrap_err().to_string();
        assert!(e.contains("weight.dtype") && e.contains("int4"), "{e}");
        let bad = FORUM.replace("[conv]", "[conv]\nkernel = [6, 6]\npadding = [0, 0]");
        let e = parse_layer_text("f.toml", &bad).unwrap_err().to_string();
        assert!(e.contains("conv.kernel"), "{e}");
        let bad = FORUM.replace("[conv]", "[conv]\ndilation = [3, 3]");
        let e = parse_layer_text("f.toml", &bad).unwrap_err().to_string();
        assert!(e.contains("empty output"), "{e}");
        let bad = FORUM.replace("scale = 0.02091", "scale = -1.0");
        let e = parse_layer_text("f.toml", &bad).unwrap_err().to_string();
        assert!(e.contains("output.scale"), "{e}");
        // A fused ReLU above every value the clamp allows leaves no output: refused, not a panic.
        let bad = FORUM
            .replace("[conv]", "[conv]\nrelu = true")
            .replace("zero_point = 0\n", "zero_point = 100\nclamp = [0, 50]\n");
        let e = parse_layer_text("f.toml", &bad).unwrap_err().to_string();
        assert!(e.contains("output.clamp") && e.contains("ReLU"), "{e}");
        let e = parse_layer_text("f.toml", "[input\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.toml: line 1"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
}
