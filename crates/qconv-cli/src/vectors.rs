//! `qconv vectors`: test vectors for verifying an accelerator against an engine model.

use std::process::ExitCode;

use anyhow::Result;
use qconv::engines::EngineKind;
use qconv::io;
use qconv::vectors::{self, VectorFormat};

use crate::compute::ComputeArgs;
use crate::report::parse_engine;

/// Write test vectors: the layer's input (NCHW), weights (OIHW), bias, per-channel
/// requantization parameters (Q31 multiplier and shift, float32 multiplier), the accumulators
/// (bias included) and expected output of a TFLite engine model, and manifest.json describing
/// every file (dtype, shape, layout, formulas).
///
/// hex writes one value per line ($readmemh), two's complement at the element width. With
/// --acc-bits the accumulators and expected output are those of a narrower accumulator.
#[derive(clap::Args)]
pub struct Args {
    /// The layer: a TOML layer file, a golden case (.json), FILE.jsonl[.gz]#ID or
    /// MODEL.tflite#OP_INDEX.
    layer: String,
    /// Engine model: tflite-reference, tflite-reference-single-rounding or tflite.
    #[arg(long, short, default_value = "tflite-reference", value_parser = parse_engine)]
    engine: EngineKind,
    /// Directory to write (created if missing; files in it are replaced).
    #[arg(long)]
    out: String,
    /// File format: hex, csv, npy or c-header.
    #[arg(long, default_value = "hex", value_parser = parse_format)]
    format: VectorFormat,
    #[command(flatten)]
    acc: crate::accumulator::AccArgs,
}

fn parse_format(s: &str) -> Result<VectorFormat, String> {
    s.parse().map_err(|e: qconv::Error| match e {
        qconv::Error::Invalid { message, .. } => message,
        other => other.to_string(),
    })
}

pub fn main(args: Args, compute: &ComputeArgs) -> Result<ExitCode> {
    let loaded = io::load_layer(&args.layer)?;
    let mut options = compute.run_options(None);
    args.acc.apply(&mut options)?;
    let set = vectors::vectors(&loaded.layer, args.engine, &options, args.format)?;
    vectors::write(&args.out, &set)?;
    for w in set.manifest["warnings"].as_array().into_iter().flatten() {
        eprintln!(
            "warning: {}: {}",
            args.engine,
            w.as_str().unwrap_or_default()
        );
    }
    outln!("layer   {}", loaded.layer.name);
    outln!(
        "engine  {} ({})",
        args.engine,
        set.manifest["route"].as_str().unwrap_or_default()
    );
    for (name, bytes) in &set.files {
        outln!("wrote   {}/{name} ({} bytes)", args.out, bytes.len());
    }
    outln!("wrote   {}/manifest.json", args.out);
    Ok(ExitCode::SUCCESS)
}
