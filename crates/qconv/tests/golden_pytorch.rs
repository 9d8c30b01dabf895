//! The PyTorch golden corpus: every case, every PyTorch engine model, bit for bit.

use qconv::conformance::{CaseOutcome, check_case, describe_failure};
use qconv::engines::{EngineKind, RunOptions};
use qconv::io::golden::read_cases;

const FILES: &[&str] = &[
    "pytorch-seed",
    "pytorch-mixed",
    "pytorch-saturating",
    "pytorch-depthwise",
    "pytorch-groupwise",
    "pytorch-large",
    "pytorch-realistic",
    "pytorch-mobilenetv2",
];

fn golden_path(name: &str) -> String {
    format!(
        "{}/../../tests/data/golden/{name}.jsonl.gz",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Runs `engine` over every PyTorch case; returns (passed, failure lines, skipped, elements
/// compared, elements differing).
fn run_corpus(engine: EngineKind) -> (usize, Vec<String>, usize) {
    let (mut passed, mut failures, mut skipped) = (0, Vec::new(), 0);
    for name in FILES {
        for case in read_cases(&golden_path(name)).unwrap() {
            match check_case(&case, engine, engine.expected_key(), &RunOptions::default()) {
                CaseOutcome::Pass => passed += 1,
                CaseOutcome::Skipped => skipped += 1,
                CaseOutcome::Fail(m) => failures.push(describe_failure(&case.id, &m)),
            }
        }
    }
    (passed, failures, skipped)
}

fn assert_all_pass(engine: EngineKind) {
    let (passed, failures, skipped) = run_corpus(engine);
    eprintln!(
        "{engine}: {passed} passed, {} failed, {skipped} skipped",
        failures.len()
    );
    assert!(failures.is_empty(), "{engine}:\n{}", failures.join("\n"));
    assert_eq!(skipped, 0);
    assert_eq!(passed, 835);
}

#[test]
fn fbgemm_matches_every_case() {
    assert_all_pass(EngineKind::Fbgemm);
}

#[test]
fn x86_matches_every_case() {
    assert_all_pass(EngineKind::X86);
}

#[test]
fn qnnpack_matches_every_case() {
    assert_all_pass(EngineKind::Qnnpack);
}

#[test]
fn float_path_report() {
    let (passed, failures, _) = run_corpus(EngineKind::FloatPath);
    eprintln!(
        "float-path: {passed} passed, {} failed\n{}",
        failures.len(),
        failures.join("\n")
    );
}
