//! `qconv bench`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use qconv::Isa;
use qconv::bench::{SUITE, SuiteLayer, time_engine};
use qconv::engines::EngineKind;

use crate::compute::ComputeArgs;
use crate::report::{parse_engine, parse_isa};

/// Time engines on the standard layer suite: milliseconds and GOPS (2 x MACs / s, median of
/// repeated runs).
///
/// The timed region is one inference: a uint8 NCHW input in, the uint8 NCHW output out, weights
/// packed beforehand.
#[derive(clap::Args)]
pub struct Args {
    /// Suite layers to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    layers: Vec<String>,
    /// Engines to time, comma-separated: exact, qnnpack, fbgemm (default: exact).
    #[arg(long, value_delimiter = ',', value_parser = parse_engine)]
    engines: Vec<EngineKind>,
    /// ISA modelled by ISA-dependent engines (fbgemm). Default: this CPU's.
    #[arg(long, value_parser = parse_isa)]
    isa: Option<Isa>,
    /// Time budget per layer and engine, in milliseconds.
    #[arg(long, default_value_t = 400)]
    time_ms: u64,
    /// Output format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
}

pub fn main(args: Args, compute: &ComputeArgs) -> Result<ExitCode> {
    let layers: Vec<SuiteLayer> = if args.layers.is_empty() {
        SUITE.to_vec()
    } else {
        args.layers
            .iter()
            .map(|n| SuiteLayer::by_name(n))
            .collect::<Result<_, _>>()?
    };
    let engines = if args.engines.is_empty() {
        vec![EngineKind::Exact]
    } else {
        args.engines.clone()
    };
    let options = compute.run_options(args.isa);
    let kernel = options.resolve_kernel()?;
    let budget = Duration::from_millis(args.time_ms);
    let mut rows = Vec::new();
    if args.format == "text" {
        outln!(
            "{:<22} {:>12} {:<8} {:>3} {:>10} {:>9}  kernels",
            "layer", "MACs", "engine", "thr", "ms", "GOPS"
        );
    }
    for l in &layers {
        let layer = l.build();
        let threads = options.resolve_threads(&layer)?;
        for &engine in &engines {
            let t = time_engine(&layer, engine, &options, threads, kernel, budget)?;
            if args.format == "text" {
                outln!(
                    "{:<22} {:>12} {:<8} {:>3} {:>10.4} {:>9.1}  {}",
                    t.layer,
                    layer.geometry.macs(),
                    t.engine.name(),
                    t.threads,
                    t.median_ms,
                    t.gops,
                    t.kernel
                );
            }
            rows.push(t);
        }
    }
    if args.format == "json" {
        outln!("[");
        for (i, t) in rows.iter().enumerate() {
            outln!(
                "  {{\"layer\": \"{}\", \"engine\": \"{}\", \"threads\": {}, \"kernels\": \"{}\", \"runs\": {}, \"median_ms\": {:.6}, \"min_ms\": {:.6}, \"gops\": {:.3}}}{}",
                t.layer,
                t.engine.name(),
                t.threads,
                t.kernel,
                t.runs,
                t.median_ms,
                t.min_ms,
                t.gops,
                if i + 1 < rows.len() { "," } else { "" }
            );
        }
        outln!("]");
    }
    Ok(ExitCode::SUCCESS)
}
