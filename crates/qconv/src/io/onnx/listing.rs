//! The `qconv layers` listing of a model's convolution nodes, as text and as JSON.

use std::fmt::Write;

use serde_json::{Value, json};

use super::OnnxModel;
use super::conv::{ConvNode, OrtExecution};
use super::shape;
use crate::layer::Bias;

/// The output shape of `node` when its input shape is known.
fn output_shape(node: &ConvNode) -> Option<[usize; 4]> {
    let s = node.input_shape.as_ref()?;
    let (h, w) = (s.get(2).copied()??, s.get(3).copied()??);
    let p = node.padding(h, w);
    let out = |size: usize, pb: usize, pe: usize, k: usize, st: usize, d: usize| {
        (size + pb + pe)
            .checked_sub(d * k.saturating_sub(1) + 1)
            .map(|r| r / st + 1)
    };
    Some([
        s.first().copied().flatten().unwrap_or(0),
        node.weight.shape[0],
        out(
            h,
            p.top,
            p.bottom,
            node.kernel[0],
            node.stride[0],
            node.dilation[0],
        )?,
        out(
            w,
            p.left,
            p.right,
            node.kernel[1],
            node.stride[1],
            node.dilation[1],
        )?,
    ])
}

fn fmt_shape(s: Option<[usize; 4]>, batch_known: bool) -> String {
    match s {
        Some([n, c, h, w]) if batch_known => format!("[{n},{c},{h},{w}]"),
        Some([_, c, h, w]) => format!("[?,{c},{h},{w}]"),
        None => "?".into(),
    }
}

fn short(d: crate::DType) -> &'static str {
    match d {
        crate::DType::Uint8 => "u8",
        crate::DType::Int8 => "s8",
        crate::DType::Int32 => "i32",
    }
}

fn scales_text(s: &[f64]) -> String {
    let min = s.iter().copied().fold(f64::INFINITY, f64::min);
    let max = s.iter().copied().fold(0.0, f64::max);
    if s.len() == 1 || min == max {
        format!("{:.6e}", s[0])
    } else {
        format!("{min:.3e}..{max:.3e}")
    }
}

fn zps_text(z: &[i32]) -> String {
    let min = z.iter().copied().min().unwrap_or(0);
    let max = z.iter().copied().max().unwrap_or(0);
    if min == max {
        min.to_string()
    } else {
        format!("{min}..{max}")
    }
}

/// The text listing.
pub fn text(model: &OnnxModel, nodes: &[ConvNode]) -> String {
    let mut out = String::new();
    let opset = model
        .opsets
        .iter()
        .find(|(d, _)| d.is_empty() || d == "ai.onnx")
        .map_or("?".to_string(), |(_, v)| v.to_string());
    let _ = writeln!(
        out,
        "model   {} (IR {}, opset {opset}{})",
        model.path,
        model.ir_version.map_or("?".to_string(), |v| v.to_string()),
        if model.producer.is_empty() {
            String::new()
        } else {
            format!(", produced by {}", model.producer)
        }
    );
    let unquantized = model.unquantized_convs();
    let _ = writeln!(
        out,
        "        {} convolution nodes{}",
        nodes.len(),
        if unquantized.is_empty() {
            String::new()
        } else {
            format!(
                "; {} Conv nodes are not quantized and not listed",
                unquantized.len()
            )
        }
    );
    if nodes.is_empty() {
        return out;
    }
    let _ = writeln!(out);
    let labels: Vec<String> = nodes.iter().map(ConvNode::label).collect();
    let name_w = labels
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(4)
        .clamp(4, 48);
    let rows: Vec<[String; 9]> = nodes
        .iter()
        .zip(&labels)
        .map(|(n, label)| {
            let batch_known = n
                .input_shape
                .as_ref()
                .is_some_and(|s| s.first().copied().flatten().is_some());
            let input = n.input_shape.as_ref().map_or("?".into(), shape::format);
            let p = match n.auto_pad.as_str() {
                "NOTSET" => {
                    let [t, l, b, r] = n.pads;
                    if t == b && l == r {
                        format!("{t},{l}")
                    } else {
                        format!("{t},{l},{b},{r}")
                    }
                }
                other => other.to_lowercase(),
            };
            let label = if label.len() > name_w {
                format!("...{}", &label[label.len() - (name_w - 3)..])
            } else {
                label.clone()
            };
            [
                n.index.to_string(),
                label,
                n.format.name().to_string(),
                input,
                format!(
                    "{}x{} s{},{} p{} d{},{} g{}",
                    n.kernel[0],
                    n.kernel[1],
                    n.stride[0],
                    n.stride[1],
                    p,
                    n.dilation[0],
                    n.dilation[1],
                    n.groups
                ),
                format!(
                    "{} {} -> {}",
                    short(n.input_dtype),
                    short(n.weight.dtype),
                    short(n.output.dtype)
                ),
                if n.weight.quant.per_channel {
                    "per-channel".into()
                } else {
                    "per-tensor".into()
                },
                fmt_shape(output_shape(n), batch_known),
                n.ort.short().to_string(),
            ]
        })
        .collect();
    let heads = [
        "#",
        "node",
        "op",
        "input",
        "geometry",
        "types",
        "weights",
        "output",
        "onnxruntime",
    ];
    let widths: Vec<usize> = (0..heads.len())
        .map(|j| {
            rows.iter()
                .map(|r| r[j].len())
                .max()
                .unwrap_or(0)
                .max(heads[j].len())
        })
        .collect();
    let line = |cells: &[String]| -> String {
        let mut l = String::new();
        for (j, c) in cells.iter().enumerate() {
            if j == 0 {
                let _ = write!(l, "{c:>w$}", w = widths[0]);
            } else {
                let _ = write!(l, "  {c:<w$}", w = widths[j]);
            }
        }
        l.trim_end().to_string()
    };
    let head: Vec<String> = heads.iter().map(|s| s.to_string()).collect();
    let _ = writeln!(out, "{}", line(&head));
    for r in &rows {
        let _ = writeln!(out, "{}", line(r));
    }

    let _ = writeln!(out, "\nquantization (scale, zero point):");
    let qrows: Vec<[String; 5]> = nodes
        .iter()
        .map(|n| {
            let q = &n.weight.quant;
            [
                n.index.to_string(),
                match n.input_scale {
                    Some(s) => format!("x {s:.6e}, {}", n.input_zero_point),
                    None => format!("x zp {}", n.input_zero_point),
                },
                match &q.scales {
                    Some(s) => format!("w {}, {}", scales_text(s), zps_text(&q.zero_points)),
                    None => format!("w zp {}", zps_text(&q.zero_points)),
                },
                match n.output.scale {
                    Some(s) => format!("y {s:.6e}, {}", n.output.zero_point),
                    None => "y int32".into(),
                },
                match &n.bias {
                    Some(Bias::Int32(_)) => "int32 bias".into(),
                    Some(Bias::Float32(_)) => "float bias".into(),
                    None => "no bias".into(),
                },
            ]
        })
        .collect();
    let qw: Vec<usize> = (0..5)
        .map(|j| qrows.iter().map(|r| r[j].len()).max().unwrap_or(0))
        .collect();
    for r in &qrows {
        let _ = writeln!(
            out,
            "{:>w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = widths[0],
            w1 = qw[1],
            w2 = qw[2],
            w3 = qw[3]
        );
    }
    let noted: Vec<&ConvNode> = nodes
        .iter()
        .filter(|n| !n.notes.is_empty() || matches!(n.ort, OrtExecution::NotFused(_)))
        .collect();
    if !noted.is_empty() {
        let _ = writeln!(out, "\nnotes:");
        for n in noted {
            if let OrtExecution::NotFused(why) = &n.ort {
                let _ = writeln!(
                    out,
                    "  #{} {}: ONNX Runtime does not fuse it on x86 ({why}); it runs a float \
                     Conv, which qconv does not model",
                    n.index,
                    n.label()
                );
            }
            for note in &n.notes {
                let _ = writeln!(out, "  #{} {}: {note}", n.index, n.label());
            }
        }
    }
    out
}

/// The JSON listing: `{"model", "ir_version", "opsets", "producer", "nodes": [...]}`.
pub fn json(model: &OnnxModel, nodes: &[ConvNode]) -> Value {
    let nodes: Vec<Value> = nodes
        .iter()
        .map(|n| {
            let q = &n.weight.quant;
            json!({
                "index": n.index,
                "name": n.name,
                "graph_index": n.graph_index,
                "op": n.format.name(),
                "input": {
                    "tensor": n.input_tensor,
                    "dtype": n.input_dtype.name(),
                    "shape": n.input_shape.clone(),
                    "scale": n.input_scale,
                    "zero_point": n.input_zero_point,
                },
                "weight": {
                    "dtype": n.weight.dtype.name(),
                    "shape": n.weight.shape,
                    "per_channel": q.per_channel,
                    "scale": q.scales,
                    "zero_point": q.zero_points,
                },
                "bias": match &n.bias {
                    Some(Bias::Int32(b)) => json!({"dtype": "int32", "data": b}),
                    Some(Bias::Float32(b)) => json!({"dtype": "float32", "data": b}),
                    None => Value::Null,
                },
                "output": {
                    "tensor": n.output_tensor,
                    "dtype": n.output.dtype.name(),
                    "shape": output_shape(n),
                    "scale": n.output.scale,
                    "zero_point": n.output.zero_point,
                },
                "conv": {
                    "kernel": n.kernel,
                    "stride": n.stride,
                    "dilation": n.dilation,
                    "pads": n.pads,
                    "auto_pad": n.auto_pad,
                    "groups": n.groups,
                },
                "onnxruntime": match &n.ort {
                    OrtExecution::NotFused(why) => json!({"execution": "not-fused", "reason": why}),
                    OrtExecution::AsIs => json!({"execution": "as-is"}),
                    OrtExecution::Fused => json!({"execution": "fused"}),
                    OrtExecution::FusedAsUint8 => json!({"execution": "fused-as-uint8"}),
                },
                "notes": n.notes,
            })
        })
        .collect();
    json!({
        "model": model.path,
        "ir_version": model.ir_version,
        "opsets": model.opsets.iter().map(|(d, v)| json!({"domain": d, "version": v})).collect::<Vec<_>>(),
        "producer": model.producer,
        "nodes": nodes,
    })
}
