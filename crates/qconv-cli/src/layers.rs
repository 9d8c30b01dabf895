//! `qconv layers`: the operators of a model file, and which of them qconv reads as layers.

use std::process::ExitCode;

use anyhow::{Result, bail};
use qconv::io::tflite;

/// List a model's operators and the LAYER argument of each convolution.
///
/// For a .tflite model: every operator of its first subgraph, by index; each int8 CONV_2D and
/// DEPTHWISE_CONV_2D qconv can read is shown with its shapes, stride, padding (SAME / VALID and
/// the explicit amounts), fused activation and output, and is the LAYER MODEL.tflite#INDEX.
#[derive(clap::Args)]
pub struct Args {
    /// The model (.tflite).
    model: String,
}

pub fn main(args: Args) -> Result<ExitCode> {
    let path = args.model.as_str();
    if path.ends_with(".tflite") {
        return tflite_layers(path);
    }
    bail!("{path}: unknown model format (expected .tflite)")
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
