//! `qconv layers`: the convolutions of a model file, and the LAYER argument of each.

use std::process::ExitCode;

use anyhow::{Result, bail};
use qconv::io::onnx::{OnnxModel, listing};
use qconv::io::tflite;

/// List the convolutions of an ONNX or TFLite model, with geometry, types and quantization.
///
/// For an .onnx model: QLinearConv and ConvInteger nodes (QOperator format) and DequantizeLinear
/// -> Conv -> QuantizeLinear groups (QDQ format), with their index and name (use either as
/// MODEL.onnx#NODE), input shape, geometry, types, quantization parameters, and how ONNX
/// Runtime's CPU provider on x86 runs each (as is, fused into QLinearConv, fused as uint8, or not
/// fused).
///
/// For a .tflite model: every operator of its first subgraph, by index; each int8 CONV_2D and
/// DEPTHWISE_CONV_2D qconv can read is shown with its shapes, stride, padding (SAME / VALID and
/// the explicit amounts), fused activation and output, and is the LAYER MODEL.tflite#INDEX.
#[derive(clap::Args)]
pub struct Args {
    /// The model (.onnx or .tflite).
    model: String,
    /// Output format on stdout (json: ONNX models only).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
}

pub fn main(args: Args) -> Result<ExitCode> {
    let path = args.model.as_str();
    if path.ends_with(".tflite") {
        if args.format == "json" {
            bail!("--format json: not available for .tflite models (use text)");
        }
        return tflite_layers(path);
    }
    if !path.ends_with(".onnx") {
        bail!("{path}: unknown model format (expected .onnx or .tflite)");
    }
    let model = OnnxModel::read(path)?;
    let nodes = model.conv_nodes()?;
    if args.format == "json" {
        outln!(
            "{}",
            qconv::explain::to_json_string(&listing::json(&model, &nodes))
        );
    } else {
        out!("{}", listing::text(&model, &nodes));
    }
    Ok(ExitCode::SUCCESS)
}

fn tflite_layers(path: &str) -> Result<ExitCode> {
    let ops = tflite::list_operators(path)?;
    let width = ops.iter().map(|o| o.op.len()).max().unwrap_or(0);
    let mut convs = 0;
    for o in &ops {
        match (&o.summary, &o.loadable) {
            (Some(summary), Ok(())) => {
                convs += 1;
                outln!(
                    "#{:<3} {:<width$}  {path}#{}: {summary}",
                    o.index,
                    o.op,
                    o.index
                );
            }
            (_, Err(reason)) if o.op.ends_with("CONV_2D") => {
                outln!("#{:<3} {:<width$}  not readable: {reason}", o.index, o.op);
            }
            _ => outln!("#{:<3} {}", o.index, o.op),
        }
    }
    outln!("{} operators, {convs} convolutions qconv reads", ops.len());
    Ok(ExitCode::SUCCESS)
}
