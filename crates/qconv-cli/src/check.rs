//! `qconv check`.

use std::process::ExitCode;

use anyhow::{Result, bail};
use qconv::check::{check, render};
use qconv::engines::EngineKind;
use qconv::io::onnx::OnnxModel;
use qconv::model_check::{check_model, default_isas, render_model_check};
use qconv::{Isa, RunOptions, io};

use crate::report::{isa_origin, parse_engine, parse_isa, print_layer};

/// Predict int16 pair saturation from the weights and the input range, without running the conv.
///
/// For each output channel: the largest and smallest pair sums over the input range (the full
/// input dtype range, or --input-range), the tap pairs that can leave int16 on the modelled ISA,
/// the largest possible error (accumulator and output steps), what the layer's own input does,
/// and concrete fixes. Given a whole ONNX model (MODEL.onnx), audits every convolution node in
/// one table: on which ISAs each can saturate, and the worst error in output steps. Exits 0 when
/// nothing can saturate, 1 when something can.
#[derive(clap::Args)]
pub struct Args {
    /// The layer: a TOML layer file, a golden case (.json), FILE.jsonl[.gz]#ID or
    /// MODEL.onnx#NODE; or a whole model, MODEL.onnx.
    layer: String,
    /// The input tensor of an ONNX node (MODEL.onnx#NODE): an .npy file, NCHW, in the model's
    /// type. Without it the node's full input range is checked.
    #[arg(long, value_name = "FILE.npy")]
    input: Option<String>,
    /// Engine to check: fbgemm, x86 or onnxruntime. Default: onnxruntime for ONNX models,
    /// fbgemm otherwise.
    #[arg(long, short, value_parser = parse_engine)]
    engine: Option<EngineKind>,
    /// ISA to model. Default: the ISA the layer records, else this CPU's; for a whole model,
    /// every ISA the engine's results differ across.
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
    let onnx = io::split_onnx_spec(&args.layer);
    let engine = args
        .engine
        .unwrap_or_else(|| qconv::check::default_engine(&args.layer));
    if let Some((path, None)) = onnx {
        if args.input.is_some() {
            bail!(
                "--input: a whole model is checked over each node's input range; name one node as {path}#NODE to check an input"
            );
        }
        let model = OnnxModel::read(path)?;
        let isas = match args.isa {
            Some(isa) => vec![isa],
            None => default_isas(engine),
        };
        let report = check_model(&model, engine, &isas, range)?;
        out!("{}", render_model_check(&report));
        return Ok(if report.can_saturate() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    let loaded = io::load_layer_with(
        &args.layer,
        args.input.as_deref(),
        io::InputPolicy::Placeholder,
    )?;
    loaded.check_modelled(&[engine])?;
    let options = RunOptions {
        isa: args.isa,
        ..RunOptions::default()
    };
    let isa = options.resolve_isa(&loaded.layer);
    let use_input = !args.ignore_input && !loaded.placeholder_input;
    let report = check(&loaded.layer, engine, isa, range, use_input)?;
    print_layer(&loaded);
    if loaded.placeholder_input {
        outln!("input   none given (--input FILE.npy): the full input range is checked");
    }
    outln!("isa     {}", isa_origin(&options, &loaded.layer));
    out!("{}", render(&report));
    Ok(if report.can_saturate() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
