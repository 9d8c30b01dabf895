//! `qconv check`.

use std::process::ExitCode;

use anyhow::{Result, bail};
use qconv::check::{check, render};
use qconv::engines::EngineKind;
use qconv::{Isa, RunOptions, io};

use crate::report::{describe_layer, isa_origin, parse_engine, parse_isa};

/// Predict int16 pair saturation from the weights and the input range, without running the conv.
///
/// For each output channel: the largest and smallest pair sums over the input range (the full
/// input dtype range, or --input-range), the tap pairs that can leave int16 on the modelled ISA,
/// the largest possible error (accumulator and output steps), what the layer's own input does,
/// and concrete fixes. Exits 0 when nothing can saturate, 1 when something can.
#[derive(clap::Args)]
pub struct Args {
    /// The layer: a TOML layer file, a golden case (.json) or FILE.jsonl[.gz]#ID.
    layer: String,
    /// Engine to check: fbgemm, x86 or onnxruntime.
    #[arg(long, short, default_value = "fbgemm", value_parser = parse_engine)]
    engine: EngineKind,
    /// ISA to model. Default: the ISA the layer records, else this CPU's.
    #[arg(long, value_parser = parse_isa)]
    isa: Option<Isa>,
    /// Activation range to analyse, as raw integers `LO,HI` (default: the whole input dtype).
    #[arg(long, value_name = "LO,HI")]
    input_range: Option<String>,
    /// Do not analyse the layer's own input values.
    #[arg(long)]
    ignore_input: bool,
}

fn parse_range(s: &str) -> Result<(i32, i32)> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    match parts.as_slice() {
        [lo, hi] => match (lo.parse(), hi.parse()) {
            (Ok(lo), Ok(hi)) => Ok((lo, hi)),
            _ => bail!("--input-range: `{s}`: expected two integers LO,HI"),
        },
        _ => bail!("--input-range: `{s}`: expected two integers LO,HI"),
    }
}

pub fn main(args: Args) -> Result<ExitCode> {
    let range = args.input_range.as_deref().map(parse_range).transpose()?;
    let loaded = io::load_layer(&args.layer)?;
    let options = RunOptions {
        isa: args.isa,
        ..RunOptions::default()
    };
    let isa = options.resolve_isa(&loaded.layer);
    let report = check(&loaded.layer, args.engine, isa, range, !args.ignore_input)?;
    outln!("layer   {}", describe_layer(&loaded));
    outln!("isa     {}", isa_origin(&options, &loaded.layer));
    out!("{}", render(&report));
    Ok(if report.can_saturate() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
