//! Test vectors for verifying an accelerator: a layer's input, weights, bias, per-channel
//! requantization parameters, the engine's accumulators and expected output, each in a file of
//! the chosen format, and a manifest (`manifest.json`) describing them.
//!
//! Layouts: input NCHW, weights OIHW (O = output channel, I = input channel within the group;
//! for a depthwise layer I = 1 and output channel `o` reads input channel `o / multiplier`),
//! accumulators and output NCHW, per-channel parameters in output-channel order. Every file is
//! row-major over its shape.

use serde_json::{Value, json};

use crate::dtype::DType;
use crate::engines::{self, Accumulators, EngineKind, RunOptions, tflite, tflite_reference};
use crate::error::{Error, Result};
use crate::layer::ConvLayer;
use crate::requant::{FixedPointRounding, quantize_multiplier};

/// The file format of the vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VectorFormat {
    /// One value per line in hexadecimal, two's complement at the element's width (2 digits for
    /// 8-bit, 8 for 32-bit; float32 as its IEEE-754 bits): Verilog's `$readmemh`.
    Hex,
    /// One innermost row per line, comma-separated decimal (qconv's CSV layout).
    Csv,
    /// NumPy `.npy` arrays with their shapes.
    Npy,
    /// One C header per tensor: a `static const` array and its dimensions as macros.
    CHeader,
}

impl VectorFormat {
    pub fn name(self) -> &'static str {
        match self {
            VectorFormat::Hex => "hex",
            VectorFormat::Csv => "csv",
            VectorFormat::Npy => "npy",
            VectorFormat::CHeader => "c-header",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            VectorFormat::Hex => "hex",
            VectorFormat::Csv => "csv",
            VectorFormat::Npy => "npy",
            VectorFormat::CHeader => "h",
        }
    }
}

impl std::str::FromStr for VectorFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "hex" => Ok(VectorFormat::Hex),
            "csv" => Ok(VectorFormat::Csv),
            "npy" => Ok(VectorFormat::Npy),
            "c-header" | "c" | "h" => Ok(VectorFormat::CHeader),
            _ => Err(Error::invalid(
                "format",
                format!("unknown format `{s}` (expected hex, csv, npy or c-header)"),
            )),
        }
    }
}

/// The element type of a vector file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Elem {
    Int(DType),
    F32,
}

impl Elem {
    fn name(self) -> &'static str {
        match self {
            Elem::Int(DType::Int8) => "int8",
            Elem::Int(DType::Uint8) => "uint8",
            Elem::Int(DType::Int32) => "int32",
            Elem::F32 => "float32",
        }
    }

    fn c_type(self) -> &'static str {
        match self {
            Elem::Int(DType::Int8) => "int8_t",
            Elem::Int(DType::Uint8) => "uint8_t",
            Elem::Int(DType::Int32) => "int32_t",
            Elem::F32 => "float",
        }
    }
}

/// One tensor of the vector set.
struct Tensor {
    name: &'static str,
    elem: Elem,
    shape: Vec<usize>,
    layout: &'static str,
    /// Integer values, or float32 bits for `Elem::F32`.
    values: Vec<i32>,
    meaning: String,
}

/// A written vector set: the files (name and contents) and the manifest.
pub struct VectorSet {
    pub files: Vec<(String, Vec<u8>)>,
    pub manifest: Value,
}

fn encode(t: &Tensor, format: VectorFormat) -> Vec<u8> {
    use std::fmt::Write as _;
    match format {
        VectorFormat::Hex => {
            let mut s = String::with_capacity(t.values.len() * 9);
            for &v in &t.values {
                let _ = match t.elem {
                    Elem::Int(DType::Int8) | Elem::Int(DType::Uint8) => {
                        writeln!(s, "{:02x}", v as u8)
                    }
                    _ => writeln!(s, "{:08x}", v as u32),
                };
            }
            s.into_bytes()
        }
        VectorFormat::Csv => match t.elem {
            Elem::F32 => {
                let width = (*t.shape.last().unwrap_or(&1)).max(1);
                let mut s = String::new();
                for row in t.values.chunks(width) {
                    let cells: Vec<String> = row
                        .iter()
                        .map(|&b| format!("{:?}", f32::from_bits(b as u32)))
                        .collect();
                    let _ = writeln!(s, "{}", cells.join(","));
                }
                s.into_bytes()
            }
            Elem::Int(_) => crate::io::csv::format(&t.shape, &t.values).into_bytes(),
        },
        VectorFormat::Npy => match t.elem {
            Elem::Int(d) => crate::io::npy::encode(d, &t.shape, &t.values),
            Elem::F32 => {
                // The integer encoder's header with a float32 descriptor.
                let mut bytes = crate::io::npy::encode(DType::Int32, &t.shape, &t.values);
                let at = bytes
                    .windows(4)
                    .position(|w| w == b"<i4'")
                    .expect("npy header has the descriptor");
                bytes[at..at + 3].copy_from_slice(b"<f4");
                bytes
            }
        },
        VectorFormat::CHeader => {
            let upper = t.name.to_ascii_uppercase();
            let mut s = format!(
                "/* {}: {} {}, shape {:?} ({}), written by qconv vectors. */\n#pragma once\n#include <stdint.h>\n\n",
                t.name,
                t.elem.name(),
                t.layout,
                t.shape,
                t.meaning
            );
            for (i, d) in t.shape.iter().enumerate() {
                let _ = writeln!(s, "#define {upper}_DIM{i} {d}");
            }
            let _ = writeln!(s, "#define {upper}_LEN {}\n", t.values.len());
            let _ = writeln!(
                s,
                "static const {} {}[{}] = {{",
                t.elem.c_type(),
                t.name,
                t.values.len().max(1)
            );
            for chunk in t.values.chunks(16) {
                let cells: Vec<String> = chunk
                    .iter()
                    .map(|&v| match t.elem {
                        Elem::F32 => {
                            let f = f32::from_bits(v as u32);
                            format!("{f:?}f")
                        }
                        // INT32_MIN cannot be written as a negated literal.
                        Elem::Int(DType::Int32) if v == i32::MIN => "INT32_MIN".to_string(),
                        Elem::Int(_) => v.to_string(),
                    })
                    .collect();
                let _ = writeln!(s, "  {},", cells.join(", "));
            }
            s.push_str("};\n");
            s.into_bytes()
        }
    }
}

/// Builds the vector set of `layer` for `engine` (a TFLite engine) in `format`. With
/// `options.accumulator`, the accumulators and expected output are those of that narrow
/// accumulator.
pub fn vectors(
    layer: &ConvLayer,
    engine: EngineKind,
    options: &RunOptions,
    format: VectorFormat,
) -> Result<VectorSet> {
    if !engine.models_accumulator_width() {
        return Err(Error::invalid(
            "engine",
            format!(
                "vectors are written for the TFLite engines (tflite-reference, \
                 tflite-reference-single-rounding, tflite), whose requantization parameters are \
                 integers and a float32 multiplier; not {engine}"
            ),
        ));
    }
    let out = engines::run(engine, layer, options)?;
    let g = &layer.geometry;
    let oc_len = g.out_channels;
    let plane = g.out_h() * g.out_w();
    let scales = layer.scales(engine.name())?;
    let (si, so) = (scales.input as f32, scales.output as f32);
    let rounding = match engine {
        EngineKind::TfliteReferenceSingleRounding => FixedPointRounding::Single,
        _ => FixedPointRounding::Double,
    };
    let bias: Vec<i32> = layer.int32_bias();
    let (mut multipliers, mut shifts, mut float_multipliers) = (vec![], vec![], vec![]);
    for oc in 0..oc_len {
        let ws = layer.weight.quant.scale(oc) as f32;
        let (m, s) = quantize_multiplier(si as f64 * ws as f64 / so as f64, rounding);
        multipliers.push(m);
        shifts.push(s);
        float_multipliers.push((si * ws / so).to_bits() as i32);
    }
    let (range, scheme) = match engine {
        EngineKind::Tflite => (
            tflite::requantizer(layer)?.range,
            "y = clamp(round_half_even(float32(acc) * requant_scale), min - zp, max - zp) + zp, \
             the clamp in float32 before rounding (XNNPACK fp32); acc includes the bias",
        ),
        _ => (
            tflite_reference::requantizer(layer, rounding)?.range,
            match rounding {
                FixedPointRounding::Double => {
                    "y = clamp(RDBPOT(SRDHM(acc * 2^max(shift,0), multiplier), max(-shift,0)) + zp, min, max): \
                     gemmlowp's saturating rounding doubling high multiply (ties toward +inf) then rounding \
                     divide by a power of two (ties away from zero) (TFLite reference); acc includes the bias"
                }
                FixedPointRounding::Single => {
                    "y = clamp(((acc * multiplier + 2^(30 - shift)) >> (31 - shift)) + zp, min, max) in 64 \
                     bits, one rounding half up (TFLITE_SINGLE_ROUNDING); acc includes the bias"
                }
            },
        ),
    };
    let Accumulators::Int32(acc) = &out.accumulators else {
        unreachable!("TFLite engines return int32 accumulators")
    };
    let with_bias: Vec<i32> = acc
        .iter()
        .enumerate()
        .map(|(i, &a)| a.wrapping_add(bias[i / plane % oc_len]))
        .collect();
    let out_shape = g.output_shape().to_vec();
    let tensors = vec![
        Tensor {
            name: "input",
            elem: Elem::Int(layer.input.dtype),
            shape: layer.input.shape.to_vec(),
            layout: "NCHW",
            values: layer.input.data.clone(),
            meaning: "quantized input activations".into(),
        },
        Tensor {
            name: "weights",
            elem: Elem::Int(layer.weight.dtype),
            shape: layer.weight.shape.to_vec(),
            layout: "OIHW",
            values: layer.weight.data.clone(),
            meaning: "quantized weights: output channel, input channel within its group, kernel row, kernel column".into(),
        },
        Tensor {
            name: "bias",
            elem: Elem::Int(DType::Int32),
            shape: vec![oc_len],
            layout: "O",
            values: bias.clone(),
            meaning: "int32 bias per output channel (scale input_scale * weight_scale[o]; zeros when the layer has none)".into(),
        },
        Tensor {
            name: "requant_multiplier",
            elem: Elem::Int(DType::Int32),
            shape: vec![oc_len],
            layout: "O",
            values: multipliers,
            meaning: "Q31 fixed-point multiplier per output channel (TFLite QuantizeMultiplier)".into(),
        },
        Tensor {
            name: "requant_shift",
            elem: Elem::Int(DType::Int32),
            shape: vec![oc_len],
            layout: "O",
            values: shifts,
            meaning: "shift per output channel: real multiplier = multiplier * 2^(shift - 31); positive shifts left".into(),
        },
        Tensor {
            name: "requant_scale",
            elem: Elem::F32,
            shape: vec![oc_len],
            layout: "O",
            values: float_multipliers,
            meaning: "float32 multiplier per output channel, f32(f32(input_scale * weight_scale[o]) / output_scale) (XNNPACK)".into(),
        },
        Tensor {
            name: "accumulator",
            elem: Elem::Int(DType::Int32),
            shape: out_shape.clone(),
            layout: "NCHW",
            values: with_bias,
            meaning: "the accumulator before requantization, bias included (as the engine computes it; narrowed when --acc-bits is given)".into(),
        },
        Tensor {
            name: "expected_output",
            elem: Elem::Int(out.dtype),
            shape: out_shape,
            layout: "NCHW",
            values: out.values.clone(),
            meaning: format!("the output {engine} computes"),
        },
    ];
    let mut files = Vec::new();
    let mut entries = Vec::new();
    for t in &tensors {
        let file = format!("{}.{}", t.name, format.extension());
        entries.push(json!({
            "name": t.name,
            "file": file,
            "dtype": t.elem.name(),
            "shape": t.shape,
            "layout": t.layout,
            "elements": t.values.len(),
            "meaning": t.meaning,
        }));
        files.push((file, encode(t, format)));
    }
    let p = g.padding;
    let manifest = json!({
        "schema": "qconv-vectors/1",
        "layer": layer.name,
        "engine": engine.name(),
        "route": out.path,
        "warnings": out.warnings,
        "format": format.name(),
        "format_notes": match format {
            VectorFormat::Hex => "one value per line, lowercase hexadecimal, two's complement at the element width (int8/uint8: 2 digits, int32: 8 digits, float32: its IEEE-754 bits, 8 digits); $readmemh reads it",
            VectorFormat::Csv => "one innermost row per line, comma-separated decimal; lines run over the outer dimensions in row-major order",
            VectorFormat::Npy => "NumPy .npy arrays (version 1.0, C order) with their shapes",
            VectorFormat::CHeader => "one C header per tensor: static const array NAME[NAME_LEN] and NAME_DIMi macros",
        },
        "conv": {
            "kernel": g.kernel,
            "stride": g.stride,
            "dilation": g.dilation,
            "padding": {"top": p.top, "left": p.left, "bottom": p.bottom, "right": p.right,
                        "mode": layer.padding_mode.map(|m| m.name())},
            "groups": g.groups,
            "taps_outside_the_input": "skipped (equivalent to padding with the input zero point)",
        },
        "quantization": {
            "input_scale": scales.input,
            "input_zero_point": layer.input.zero_point,
            "output_scale": scales.output,
            "output_zero_point": layer.output.zero_point,
            "weight_scales": (0..oc_len).map(|oc| layer.weight.quant.scale(oc)).collect::<Vec<_>>(),
            "weight_zero_points": (0..oc_len).map(|oc| layer.weight.quant.zero_point(oc)).collect::<Vec<_>>(),
            "activation": layer.activation.map(|a| a.name()),
            "output_min": range.0,
            "output_max": range.1,
        },
        "accumulator": {
            "formula": "acc[n,o,y,x] = bias[o] + sum over (ky, kx, i) inside the input of weights[o,i,ky,kx] * (input[n, g*I + i, y*sh + ky*dh - top, x*sw + kx*dw - left] - input_zero_point), g = o / (O / groups)",
            "bits": options.accumulator.map_or(32, |w| w.bits),
            "overflow": options.accumulator.map_or("wrap (int32)", |w| w.overflow.name()),
            "order": "bias first, then kernel row, kernel column, input channel; with --acc-bits every addition is brought back into the width",
        },
        "requantization": scheme,
        "files": entries,
    });
    Ok(VectorSet { files, manifest })
}

/// Writes `set` into directory `dir` (created if needed): its files and `manifest.json`.
pub fn write(dir: &str, set: &VectorSet) -> Result<()> {
    let io = |path: String| move |error| Error::Io { path, error };
    std::fs::create_dir_all(dir).map_err(io(dir.to_string()))?;
    for (name, bytes) in &set.files {
        let path = std::path::Path::new(dir).join(name);
        std::fs::write(&path, bytes).map_err(io(path.to_string_lossy().into_owned()))?;
    }
    let path = std::path::Path::new(dir).join("manifest.json");
    let text = serde_json::to_string_pretty(&set.manifest).expect("serializable") + "\n";
    std::fs::write(&path, text).map_err(io(path.to_string_lossy().into_owned()))
}
