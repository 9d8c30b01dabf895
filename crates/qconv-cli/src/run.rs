//! `qconv run`.

use std::process::ExitCode;

use anyhow::Result;
use qconv::Isa;
use qconv::engines::{EngineKind, EngineOutput};
use qconv::io::{self, output};

use crate::compute::ComputeArgs;

use qconv::geometry::format_index as coords;

use crate::report::{isa_origin, parse_engine, parse_isa, print_layer};

/// Compute a layer's quantized output with one engine model.
///
/// Without --output, prints the output as a table (one block per batch item and output
/// channel). With --output, writes .csv (one output row per line, lines over n, c, h), .npy
/// (NCHW array) or .json, chosen by the file's extension.
#[derive(clap::Args)]
pub struct Args {
    /// The layer: a TOML layer file, a golden case (.json), FILE.jsonl[.gz]#ID, MODEL.onnx#NODE
    /// or MODEL.tflite#OP_INDEX.
    layer: String,
    /// The input tensor of an ONNX node (MODEL.onnx#NODE): an .npy file, NCHW, in the model's
    /// type.
    #[arg(long, value_name = "FILE.npy")]
    input: Option<String>,
    /// Engine model: exact, float-path, fbgemm, x86, qnnpack, onnx, onnxruntime,
    /// tflite-reference, tflite-reference-single-rounding, tflite.
    #[arg(long, short, default_value = "exact", value_parser = parse_engine)]
    engine: EngineKind,
    /// ISA to model (avx2, avx512, avx512-vnni). Default: the ISA the layer records, else this
    /// CPU's.
    #[arg(long, value_parser = parse_isa)]
    isa: Option<Isa>,
    /// Write the output to this .csv, .npy or .json file instead of printing it.
    #[arg(long, short)]
    output: Option<String>,
    #[command(flatten)]
    acc: crate::accumulator::AccArgs,
}

/// Largest output printed in full as a table.
const PRINT_LIMIT: usize = 4096;

pub fn main(args: Args, compute: &ComputeArgs) -> Result<ExitCode> {
    let format = args
        .output
        .as_deref()
        .map(output::OutputFormat::from_path)
        .transpose()?;
    let loaded = io::load_layer_with(
        &args.layer,
        args.input.as_deref(),
        io::InputPolicy::Required,
    )?;
    let mut options = compute.run_options(args.isa);
    args.acc.apply(&mut options)?;
    let out = loaded.run(args.engine, &options)?;
    for w in &out.warnings {
        eprintln!("warning: {}: {w}", args.engine);
    }
    if let (Some(path), Some(format)) = (&args.output, format) {
        output::write_atomically(path, &output::encode(format, &loaded.layer, &out))?;
        eprintln!(
            "{}: wrote {} values of {} to {path}",
            out.label(),
            out.values.len(),
            out.dtype
        );
        return Ok(ExitCode::SUCCESS);
    }
    print_layer(&loaded);
    outln!("engine  {}", args.engine);
    if args.engine.depends_on_isa() {
        outln!("isa     {}", isa_origin(&options, &loaded.layer));
    }
    outln!("route   {}", out.path);
    outln!();
    print_table(&out);
    Ok(ExitCode::SUCCESS)
}

fn print_table(out: &EngineOutput) {
    let [n_len, c_len, h_len, w_len] = out.shape;
    let width = out
        .values
        .iter()
        .map(|v| v.to_string().len())
        .max()
        .unwrap_or(1);
    let plane = h_len * w_len;
    let total = out.values.len();
    let mut printed = 0;
    'outer: for n in 0..n_len {
        for c in 0..c_len {
            if printed + plane > PRINT_LIMIT && printed > 0 {
                outln!(
                    "... {} more values not shown; write them all with --output FILE.csv|.npy|.json",
                    total - printed
                );
                break 'outer;
            }
            outln!("{} (n={n}, c={c}, {h_len}x{w_len})", coords([n, c, 0, 0]));
            let base = (n * c_len + c) * plane;
            for h in 0..h_len {
                let row: Vec<String> = out.values[base + h * w_len..base + (h + 1) * w_len]
                    .iter()
                    .map(|v| format!("{v:>width$}"))
                    .collect();
                outln!("  {}", row.join(" "));
            }
            printed += plane;
        }
    }
}
