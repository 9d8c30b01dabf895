//! `qconv explain`.

use std::process::ExitCode;

use anyhow::{Result, bail};
use qconv::Isa;
use qconv::engines::EngineKind;
use qconv::explain::{self, explain_outputs};
use qconv::io::{self, output};

use crate::compute::ComputeArgs;
use crate::progress::Progress;
use crate::report::{describe_layer, isa_origin, parse_engine, parse_isa, print_layer};

/// Account for every output element where two engines differ, with the integer evidence.
///
/// For each differing element: the exact integer accumulator, each engine's own accumulator, and
/// the causes: `pair-saturation` (which tap pairs, their products, the amount clipped) and the
/// rounding causes (`requant-rounding`, `bias-rounding`, `float-accumulation`,
/// `weight-quantization`, `input-quantization`, `output-clamp`), each with the integers it takes
/// the result from and to; `accumulator-overflow` when --acc-bits models a narrow accumulator,
/// `same-padding-underflow` for TFLite 2.21's XNNPACK. The causes add up exactly: see
/// docs/explain.md.
#[derive(clap::Args)]
pub struct Args {
    /// The layer: a TOML layer file, a golden case (.json), FILE.jsonl[.gz]#ID or MODEL.onnx#NODE.
    layer: String,
    /// The input tensor of an ONNX node (MODEL.onnx#NODE): an .npy file, NCHW, in the model's
    /// type.
    #[arg(long, value_name = "FILE.npy")]
    input: Option<String>,
    /// The two engines to explain, comma-separated. Default: float-path and fbgemm; for TFLite
    /// layers, tflite-reference and tflite; with --acc-bits, exact and tflite-reference; for
    /// other layers PyTorch refuses (ONNX), exact and the first saturating engine that accepts it.
    #[arg(long, value_delimiter = ',', value_parser = parse_engine)]
    engines: Vec<EngineKind>,
    /// ISA to model for ISA-dependent engines. Default: the ISA the layer records, else this
    /// CPU's.
    #[arg(long, value_parser = parse_isa)]
    isa: Option<Isa>,
    /// Output format on stdout.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
    /// Also write a self-contained HTML report (heatmaps, histogram, causes, table) to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<String>,
    /// Tell the story of this many differing elements in words (text format).
    #[arg(long, default_value_t = 5)]
    detail: usize,
    /// Show at most this many rows in the text and HTML tables (JSON always has every element).
    #[arg(long)]
    limit: Option<usize>,
    #[command(flatten)]
    acc: crate::accumulator::AccArgs,
}

pub fn main(args: Args, compute: &ComputeArgs) -> Result<ExitCode> {
    if let Some(path) = &args.html
        && !path.ends_with(".html")
        && !path.ends_with(".htm")
    {
        bail!("--html: `{path}`: expected a .html file name");
    }
    let loaded = io::load_layer_with(
        &args.layer,
        args.input.as_deref(),
        io::InputPolicy::Required,
    )?;
    let layer = &loaded.layer;
    let mut options = compute.run_options(args.isa);
    args.acc.apply(&mut options)?;
    let outputs = match args.engines.as_slice() {
        [] => explain::default_runs(&loaded, &options)?,
        [a, b] if a != b => vec![loaded.run(*a, &options)?, loaded.run(*b, &options)?],
        _ => bail!("--engines: name two different engines, e.g. --engines exact,fbgemm"),
    };
    let kinds: Vec<EngineKind> = outputs.iter().map(|o| o.engine).collect();
    loaded.check_modelled(&kinds)?;
    let mut progress = Progress::new("explaining");
    let x = explain_outputs(layer, &outputs, &options, &mut |done, total| {
        progress.update(done, total)
    })?;
    progress.finish();
    let limit = args.limit.unwrap_or(usize::MAX);
    if let Some(path) = &args.html {
        let page = explain::html(&x, &describe_layer(&loaded), limit.min(20_000));
        output::write_atomically(path, page.as_bytes())?;
        eprintln!("wrote {path}");
    }
    if args.format == "json" {
        outln!("{}", explain::to_json_string(&x.to_json()));
    } else {
        print_layer(&loaded);
        if outputs.iter().any(|o| o.engine.depends_on_isa()) {
            outln!("isa     {}", isa_origin(&options, layer));
        }
        out!("{}", explain::text(&x, args.detail, limit));
    }
    // The explanation of a large layer is millions of small allocations; the process ends here,
    // so let the operating system reclaim them instead of freeing each one.
    std::mem::forget(x);
    std::mem::forget(outputs);
    Ok(ExitCode::SUCCESS)
}
