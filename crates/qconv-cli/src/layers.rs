//! `qconv layers`.

use std::process::ExitCode;

use anyhow::Result;
use qconv::io::onnx::{OnnxModel, listing};

/// List the convolution nodes of an ONNX model, with geometry, types and quantization.
///
/// Lists QLinearConv and ConvInteger nodes (QOperator format) and DequantizeLinear -> Conv ->
/// QuantizeLinear groups (QDQ format), with their index and name (use either as
/// MODEL.onnx#NODE), input shape, geometry, types, quantization parameters, and how ONNX
/// Runtime's CPU provider on x86 runs each (as is, fused into QLinearConv, fused as uint8, or not
/// fused).
#[derive(clap::Args)]
pub struct Args {
    /// The model (.onnx).
    model: String,
    /// Output format on stdout.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
}

pub fn main(args: Args) -> Result<ExitCode> {
    let model = OnnxModel::read(&args.model)?;
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
