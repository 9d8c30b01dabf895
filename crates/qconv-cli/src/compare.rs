//! `qconv compare`.

use std::process::ExitCode;

use anyhow::{Result, bail};
use qconv::Isa;
use qconv::engines::{Accumulators, EngineKind, EngineOutput, exact};
use qconv::io;

use crate::compute::ComputeArgs;

use crate::report::{coords, engine_label, isa_origin, parse_engine, parse_isa, print_layer};

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
    let explicit = !args.engines.is_empty();
    let wanted: Vec<EngineKind> = if explicit {
        let mut e = args.engines.clone();
        e.dedup();
        e
    } else {
        EngineKind::ALL.to_vec()
    };

    let mut outputs: Vec<EngineOutput> = Vec::new();
    let mut refusals = Vec::new();
    for &engine in &wanted {
        match loaded.run(engine, &options) {
            Ok(out) => outputs.push(out),
            Err(e) if explicit => bail!("{e}"),
            Err(e) => refusals.push(e.to_string()),
        }
    }
    if outputs.len() < 2 {
        bail!(
            "{}: fewer than two engines accept this layer, nothing to compare ({})",
            args.layer,
            refusals.join("; ")
        );
    }
    for r in &refusals {
        eprintln!("note: {r}");
    }
    for out in &outputs {
        for w in &out.warnings {
            eprintln!("warning: {}: {w}", out.engine);
        }
    }
    // The exact real values, for reference; from the exact run if there was one.
    let exact_acc = outputs
        .iter()
        .find_map(|o| match (&o.engine, &o.accumulators) {
            (EngineKind::Exact, Accumulators::Exact(a)) => Some(a.clone()),
            _ => None,
        })
        .map_or_else(|| exact::accumulators(layer, &options), Ok)?;
    let real = exact::real_values(layer, &exact_acc)?;

    print_layer(&loaded);
    if outputs.iter().any(|o| o.engine.depends_on_isa()) {
        outln!("isa     {}", isa_origin(&options, layer));
    }
    outln!();
    let labels: Vec<String> = outputs.iter().map(engine_label).collect();
    let label_width = labels.iter().map(String::len).max().unwrap_or(0);
    for (label, out) in labels.iter().zip(&outputs) {
        outln!("  {label:<label_width$}  {}", out.path);
    }
    outln!();

    let total = layer.output_len();
    let differing: Vec<usize> = (0..total)
        .filter(|&i| outputs.iter().any(|o| o.values[i] != outputs[0].values[i]))
        .collect();
    let widths: Vec<usize> = labels.iter().map(|l| l.len().max(6)).collect();
    let index_width = coords(layer.geometry.output_shape()).len().max(5);
    let mut header = format!("{:<index_width$}", "index");
    for (l, w) in labels.iter().zip(&widths) {
        header.push_str(&format!("  {l:>w$}"));
    }
    header.push_str("  exact real value");
    outln!("{header}");
    let shown = args.limit.unwrap_or(usize::MAX).min(differing.len());
    for &i in &differing[..shown] {
        let mut line = format!("{:<index_width$}", coords(layer.geometry.output_coords(i)));
        for (o, w) in outputs.iter().zip(&widths) {
            line.push_str(&format!("  {:>w$}", o.values[i]));
        }
        line.push_str(&format!("  {:>16.6}", real[i]));
        outln!("{line}");
    }
    if shown < differing.len() {
        outln!(
            "... {} more differing elements not shown (--limit)",
            differing.len() - shown
        );
    }
    outln!();
    outln!(
        "{} of {total} output elements differ between at least two engines.",
        differing.len()
    );
    outln!();
    outln!("pairwise disagreement:");
    for a in 0..outputs.len() {
        for b in a + 1..outputs.len() {
            let n = differing
                .iter()
                .filter(|&&i| outputs[a].values[i] != outputs[b].values[i])
                .count();
            outln!(
                "  {:<w$}  vs  {:<w$}  {n:>8} of {total} ({:.2}%)",
                labels[a],
                labels[b],
                100.0 * n as f64 / total as f64,
                w = label_width
            );
        }
    }
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
