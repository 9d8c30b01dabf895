//! `qconv conformance`.

use std::process::ExitCode;

use anyhow::Result;
use qconv::Isa;
use qconv::conformance::{CaseOutcome, check_case, describe_failure, read_cases};
use qconv::engines::EngineKind;

use crate::compute::ComputeArgs;
use crate::progress::Progress;
use crate::report::{parse_engine, parse_isa};

/// Check an engine model against golden case files or ONNX backend node tests, bit for bit.
///
/// FILE is a golden case file (.jsonl, .jsonl.gz or .json), or one of the ONNX project's
/// backend node tests for QLinearConv / ConvInteger: a directory holding model.onnx and
/// test_data_set_N/ (input_K.pb, output_0.pb), that model.onnx, or a directory of such test
/// directories. A backend test records its expected output for the `onnx` and `onnxruntime`
/// engines, except where its engine-errors.json records that the real engine refuses it.
///
/// For every case that records a result under KEY (the engine's own key unless --expect says
/// otherwise), runs the engine with the ISA the case records and compares every element. A case
/// whose `errors[KEY]` is set passes when the model refuses it too. Prints one line per failing
/// case (with --verbose, one line per case), then `N passed, M failed` (and `, K skipped` when
/// cases recorded nothing under KEY). Exits 0 when nothing failed, 1 otherwise.
#[derive(clap::Args)]
pub struct Args {
    /// Golden case files (.jsonl, .jsonl.gz or .json) or ONNX backend test directories.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<String>,
    /// Engine model to check. Default: every engine model, each against its own key.
    #[arg(long, short, value_parser = parse_engine)]
    engine: Option<EngineKind>,
    /// The `expected` / `errors` key to compare with (default: the engine's key: float-path ->
    /// float_path, onnx -> onnx_reference, otherwise the engine's name).
    #[arg(long)]
    expect: Option<String>,
    /// Model this ISA instead of the one each case records.
    #[arg(long, value_parser = parse_isa)]
    isa: Option<Isa>,
    /// Print every case's result, passes included (`PASS <id>`, and what a case that passes by
    /// refusal recorded).
    #[arg(long, short)]
    verbose: bool,
}

pub fn main(args: Args, compute: &ComputeArgs) -> Result<ExitCode> {
    let engines: Vec<EngineKind> = match args.engine {
        Some(e) => vec![e],
        None => EngineKind::ALL.to_vec(),
    };
    if args.expect.is_some() && args.engine.is_none() {
        anyhow::bail!("--expect needs --engine (which engine should match that key?)");
    }
    // Read every file first: a malformed file is an input error, reported before any result.
    let mut files = Vec::new();
    for path in &args.files {
        files.push(read_cases(path)?);
    }
    let options = compute.run_options(args.isa);
    let (mut passed, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    let total: usize = files.iter().map(Vec::len).sum();
    let mut progress = Progress::new("checking cases");
    let mut done = 0;
    for cases in &files {
        for case in cases {
            progress.update(done, total);
            done += 1;
            for &engine in &engines {
                let key = args.expect.as_deref().unwrap_or(engine.expected_key());
                let id = if engines.len() > 1 {
                    format!("{} [{engine}]", case.id)
                } else {
                    case.id.clone()
                };
                match check_case(case, engine, key, &options) {
                    CaseOutcome::Pass => {
                        passed += 1;
                        if args.verbose {
                            match case.errors.get(key) {
                                Some(e) => {
                                    outln!("PASS {id}: refused, as the engine does (recorded: {e})")
                                }
                                None => outln!("PASS {id}"),
                            }
                        }
                    }
                    CaseOutcome::Skipped => {
                        skipped += 1;
                        if args.verbose {
                            outln!("SKIP {id}: nothing recorded under `{key}`");
                        }
                    }
                    CaseOutcome::Fail(m) => {
                        failed += 1;
                        outln!("{}", describe_failure(&id, &m));
                    }
                }
            }
        }
    }
    progress.finish();
    if skipped > 0 {
        outln!("{passed} passed, {failed} failed, {skipped} skipped");
    } else {
        outln!("{passed} passed, {failed} failed");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
