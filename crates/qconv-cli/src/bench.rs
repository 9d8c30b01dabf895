//! `qconv bench`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use qconv::bench::{SUITE, SuiteLayer, time_engine};
use qconv::engines::EngineKind;
use qconv::kernels::KernelIsa;
use qconv::{Isa, RunOptions};

use crate::report::{parse_engine, parse_isa};

/// Time engines on the standard layer suite: milliseconds and GOPS (2 x MACs / s, median of
/// repeated runs).
///
/// The timed region is one inference: a uint8 NCHW input in, the uint8 NCHW output out, weights
/// packed beforehand.
#[derive(clap::Args)]
pub struct Args {
    /// Threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Suite layers to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    layers: Vec<String>,
    /// Engines to time, comma-separated: exact, qnnpack, fbgemm (default: exact).
    #[arg(long, value_delimiter = ',', value_parser = parse_engine)]
    engines: Vec<EngineKind>,
    /// Kernel set (scalar, avx2, avx-vnni, avx512-vnni). Default: the best this CPU has.
    #[arg(long)]
    kernel: Option<String>,
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

pub fn main(args: Args) -> Result<ExitCode> {
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
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        anyhow::bail!("--threads: must be at least 1");
    }
    let kernel = match &args.kernel {
        Some(name) => KernelIsa::by_name(name)?,
        None => KernelIsa::detect()?,
    };
    let options = RunOptions { isa: args.isa };
    let budget = Duration::from_millis(args.time_ms);
    let mut rows = Vec::new();
    if args.format == "text" {
        outln!(
            "{:<22} {:>12} {:<8} {:>3} {:>10} {:>9}  kernels",
            "layer",
            "MACs",
            "engine",
            "thr",
            "ms",
            "GOPS"
        );
    }
    for l in &layers {
        let layer = l.build();
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
