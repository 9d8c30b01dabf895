//! TFLite conformance: every case of the shared TFLite golden files, and of the cases generated
//! here (`tests/data/generated/tflite`, recorded on an AVX-512-VNNI CPU), for the reference-kernel
//! model and the interpreter-default (XNNPACK) model, bit for bit, including the layers the
//! interpreter refuses.

use std::path::PathBuf;

use qconv::conformance::{CaseOutcome, check_case, describe_failure};
use qconv::engines::{EngineKind, RunOptions};
use qconv::io::golden::{GoldenCase, read_cases};

fn cases_in(dir: &str, prefix: &str) -> Vec<GoldenCase> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(dir);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.starts_with(prefix) && name.ends_with(".jsonl.gz")
        })
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no {prefix}* files in {}", dir.display());
    paths
        .iter()
        .flat_map(|p| read_cases(&p.to_string_lossy()).unwrap())
        .collect()
}

fn golden() -> Vec<GoldenCase> {
    cases_in("tests/data/golden", "tflite-")
}

fn generated() -> Vec<GoldenCase> {
    cases_in("tests/data/generated/tflite", "tflite-")
}

/// Runs `engine` against its own key on `cases`; every case must record it.
fn conformance(engine: EngineKind, cases: &[GoldenCase]) -> (usize, Vec<String>) {
    let (mut passed, mut failures) = (0, Vec::new());
    for case in cases {
        match check_case(case, engine, engine.expected_key(), &RunOptions::default()) {
            CaseOutcome::Pass => passed += 1,
            CaseOutcome::Skipped => panic!("{}: nothing recorded for {engine}", case.id),
            CaseOutcome::Fail(m) => failures.push(describe_failure(&case.id, &m)),
        }
    }
    eprintln!("{engine}: {passed} passed, {} failed", failures.len());
    (passed, failures)
}

#[test]
fn tflite_reference_matches_every_golden_case() {
    let (passed, failures) = conformance(EngineKind::TfliteReference, &golden());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(passed, 250);
}

#[test]
fn tflite_matches_every_golden_case_and_refusal() {
    let cases = golden();
    let (passed, failures) = conformance(EngineKind::Tflite, &cases);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(passed, 250);
    // Three layers the interpreter refuses (XNNPACK requantization scale >= 256): refused too.
    let refused = cases
        .iter()
        .filter(|c| c.errors.contains_key("tflite"))
        .count();
    assert_eq!(refused, 3);
}

#[test]
fn tflite_engines_match_every_generated_case() {
    let cases = generated();
    for engine in [EngineKind::TfliteReference, EngineKind::Tflite] {
        let (passed, failures) = conformance(engine, &cases);
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert_eq!(passed, cases.len());
    }
}

#[test]
fn the_same_padding_underflow_cases_are_bias_only() {
    // Two golden cases, recorded on AVX2, show XNNPACK's wrapped-around SAME padding: every output
    // is the requantized bias. The model reproduces them (above) by that route, and says so.
    let cases = golden();
    let mut seen = 0;
    for case in &cases {
        let out = qconv::engines::run(EngineKind::Tflite, &case.layer, &RunOptions::default());
        let Ok(out) = out else { continue };
        if out.path.contains("wraps around") {
            seen += 1;
            assert_eq!(out.warnings.len(), 1, "{}", case.id);
            let reference = &case.expected["tflite_reference"];
            assert_ne!(&case.expected["tflite"], reference, "{}", case.id);
        }
    }
    assert_eq!(seen, 2);
}

#[test]
fn single_rounding_differs_from_double_rounding_only_on_ties() {
    // The TFLITE_SINGLE_ROUNDING build rounds (acc * M) once, half up; the default rounds twice,
    // half away from zero. On the golden cases they agree on most elements and never by more
    // than one.
    let (mut elements, mut differing) = (0usize, 0usize);
    for case in golden() {
        let o = RunOptions::default();
        let (Ok(d), Ok(s)) = (
            qconv::engines::run(EngineKind::TfliteReference, &case.layer, &o),
            qconv::engines::run(EngineKind::TfliteReferenceSingleRounding, &case.layer, &o),
        ) else {
            panic!("{}: refused", case.id)
        };
        for (a, b) in d.values.iter().zip(&s.values) {
            assert!((a - b).abs() <= 1, "{}", case.id);
            elements += 1;
            differing += (a != b) as usize;
        }
    }
    assert!(
        differing > 0 && differing * 100 < elements,
        "{differing} of {elements}"
    );
}
