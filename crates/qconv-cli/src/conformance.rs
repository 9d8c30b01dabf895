//! `qconv conformance`.

use std::process::ExitCode;

use anyhow::Result;
use qconv::Isa;
use qconv::conformance::{CaseOutcome, check_case, describe_failure};
use qconv::engines::EngineKind;
use qconv::io::golden::read_cases;

use crate::compute::ComputeArgs;
use crate::progress::Progress;
use crate::report::{parse_engine, parse_isa};

/// Check an engine model against golden case files, bit for bit.
///
/// For every case that records a result under KEY (the engine's own key unless --expect says
/// otherwise), runs the engine with the ISA the case records and compares every element. A case
/// whose `errors[KEY]` is set passes when the model refuses it too. Prints one line per failing
/// case, then `N passed, M failed` (and `, K skipped` when cases recorded nothing under KEY).
/// Exits 0 when nothing failed, 1 otherwise.
#[derive(clap::Args)]
pub struct Args {
    /// Golden case files (.jsonl, .jsonl.gz or .json).
    #[arg(required = true)]
    files: Vec<String>,
    /// Engine model to check. Default: every engine model, each against its own key.
    #[arg(long, short, value_parser = parse_engine)]
    engine: Option<EngineKind>,
    /// The `expected` / `errors` key to compare with (default: the engine's key: float-path ->
    /// float_path, otherwise the engine's name).
    #[arg(long)]
    expect: Option<String>,
    /// Model this ISA instead of the one each case records.
    #[arg(long, value_parser = parse_isa)]
    isa: Option<Isa>,
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
                match check_case(case, engine, key, &options) {
                    CaseOutcome::Pass => passed += 1,
                    CaseOutcome::Skipped => skipped += 1,
                    CaseOutcome::Fail(m) => {
                        failed += 1;
                        let id = if engines.len() > 1 {
                            format!("{} [{engine}]", case.id)
                        } else {
                            case.id.clone()
                        };
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
