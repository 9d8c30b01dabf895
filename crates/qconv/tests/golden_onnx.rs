//! ONNX conformance: every case of the shared ONNX golden files, for the ONNX reference model and
//! the ONNX Runtime model, bit for bit (including the layers ONNX Runtime refuses).

use std::path::PathBuf;

use qconv::conformance::{CaseOutcome, check_case, describe_failure};
use qconv::engines::{EngineKind, RunOptions};
use qconv::io::golden::{GoldenCase, read_cases};

fn onnx_cases() -> Vec<GoldenCase> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/golden");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("onnx-")
        })
        .collect();
    paths.sort();
    assert_eq!(paths.len(), 5);
    paths
        .iter()
        .flat_map(|p| read_cases(&p.to_string_lossy()).unwrap())
        .collect()
}

fn assert_conformant(engine: EngineKind) -> usize {
    let cases = onnx_cases();
    let (mut passed, mut failures) = (0, Vec::new());
    for case in &cases {
        match check_case(case, engine, engine.expected_key(), &RunOptions::default()) {
            CaseOutcome::Pass => passed += 1,
            CaseOutcome::Skipped => panic!("{}: nothing recorded for {engine}", case.id),
            CaseOutcome::Fail(m) => failures.push(describe_failure(&case.id, &m)),
        }
    }
    eprintln!("{engine}: {passed} passed, {} failed", failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    passed
}

#[test]
fn onnx_reference_matches_every_case() {
    assert_eq!(assert_conformant(EngineKind::Onnx), 450);
}

#[test]
fn onnxruntime_matches_every_case_and_refusal() {
    assert_eq!(assert_conformant(EngineKind::OnnxRuntime), 450);
    // 28 of those are layers ONNX Runtime refuses (int8 input with uint8 weight); the model
    // refuses them too.
    let refused = onnx_cases()
        .iter()
        .filter(|c| c.errors.contains_key("onnxruntime"))
        .count();
    assert_eq!(refused, 28);
}
