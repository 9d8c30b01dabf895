//! `qconv compare`.

use std::process::ExitCode;

use anyhow::Result;
use qconv::Isa;
use qconv::compare::compare;
use qconv::engines::{EngineKind, EngineOutput};
use qconv::io;

use crate::compute::ComputeArgs;

use crate::report::{isa_origin, parse_engine, parse_isa, print_layer};

/// Run several engine models on a layer and show every output element where they differ.
///
/// Prints one row per output element on which any two engines disagree (its [n,c,h,w] index,
/// each engine's integer, and the exact real value before rounding, in output units), then how
/// many elements each pair of engines disagrees on.
#[derive(clap::Args)]
pub struct Args {
    /// The layer: a TOML layer file, a golden case (.json), FILE.jsonl[.gz]#ID or MODEL.onnx#NODE.
    layer: String,
    /// The input tensor of an ONNX node (MODEL.onnx#NODE): an .npy file, NCHW, in the model's
    /// type.
    #[arg(long, value_name = "FILE.npy")]
    input: Option<String>,
    /// Engines to compare, comma-separated. Default: every engine that accepts the layer.
    #[arg(long, value_delimiter = ',', value_parser = parse_engine)]
    engines: Vec<EngineKind>,
    /// ISA to model for ISA-dependent engines. Default: the ISA the layer records, else this
    /// CPU's.
    #[arg(long, value_parser = parse_isa)]
    isa: Option<Isa>,
    /// Print at most this many differing elements (the summary counts all of them).
    #[arg(long)]
    limit: Option<usize>,
}

pub fn main(args: Args, compute: &ComputeArgs) -> Result<ExitCode> {
    let loaded = io::load_layer_with(
        &args.layer,
        args.input.as_deref(),
        io::InputPolicy::Required,
    )?;
    let layer = &loaded.layer;
    let options = compute.run_options(args.isa);
    let engines = (!args.engines.is_empty()).then_some(args.engines.as_slice());
    let comparison = compare(&loaded, engines, &options)?;
    for r in &comparison.refusals {
        eprintln!("note: {r}");
    }
    let outputs = &comparison.outputs;
    for out in outputs {
        for w in &out.warnings {
            eprintln!("warning: {}: {w}", out.engine);
        }
    }
    print_layer(&loaded);
    if outputs.iter().any(|o| o.engine.depends_on_isa()) {
        outln!("isa     {}", isa_origin(&options, layer));
    }
    outln!();
    out!(
        "{}",
        comparison.table(layer, args.limit.unwrap_or(usize::MAX))
    );
    let total = layer.output_len();
    let modelled = options.resolve_isa(layer);
    let recorded_elsewhere = |o: &EngineOutput| {
        o.engine.depends_on_isa() && layer.recorded_isa.is_some_and(|r| r != modelled)
    };
    let recorded: Vec<String> = outputs
        .iter()
        .filter_map(|o| {
            let expected = loaded.expected.get(o.engine.expected_key())?;
            let matching = expected
                .iter()
                .zip(&o.values)
                .filter(|&(&e, &v)| e == v as i64)
                .count();
            let caveat = if recorded_elsewhere(o) {
                format!(
                    " (recorded on {}, modelled on {modelled})",
                    layer.recorded_isa.map_or("?", |i| i.name())
                )
            } else {
                String::new()
            };
            Some(format!(
                "  {}: the model matches the recorded result on {matching} of {total} elements{caveat}",
                o.engine
            ))
        })
        .collect();
    if !recorded.is_empty() {
        outln!();
        outln!("recorded results in the layer:");
        for line in recorded {
            outln!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
