//! Conformance: running an engine model on golden cases (or the ONNX project's backend node
//! tests) and comparing with what the real engine returned.

use crate::engines::{self, EngineKind, RunOptions};
use crate::error::Result;
use crate::io::golden::{self, GoldenCase};
use crate::io::onnx::backend;

/// Reads the cases `path` names: a golden case file (`.json`, `.jsonl`, `.jsonl.gz`), or ONNX
/// backend node tests (a test directory with `model.onnx` and `test_data_set_N/`, its
/// `model.onnx`, or a directory of test directories; see [`backend`]).
pub fn read_cases(path: &str) -> Result<Vec<GoldenCase>> {
    if backend::is_backend_path(path) {
        backend::read_cases(path)
    } else {
        golden::read_cases(path)
    }
}

/// The outcome of one case.
#[derive(Clone, Debug, PartialEq)]
pub enum CaseOutcome {
    /// Every element matches (or the engine refused a case the real engine refused).
    Pass,
    /// The model disagrees with the recorded result.
    Fail(Mismatch),
    /// The case records nothing under the key.
    Skipped,
}

/// How a case failed.
#[derive(Clone, Debug, PartialEq)]
pub enum Mismatch {
    /// Some elements differ.
    Elements {
        differing: usize,
        total: usize,
        /// `[n, c, h, w]` of the first differing element.
        first: [usize; 4],
        expected: i64,
        got: i64,
    },
    /// The model refused a case the real engine computed.
    Refused { reason: String },
    /// The real engine refused the case, the model computed it.
    Accepted { engine_error: String },
}

/// Runs `engine` on `case` (with the ISA the case records unless `options` sets one) and compares
/// with `expected[key]` / `errors[key]`.
pub fn check_case(
    case: &GoldenCase,
    engine: EngineKind,
    key: &str,
    options: &RunOptions,
) -> CaseOutcome {
    let expected = case.expected.get(key);
    let engine_error = case.errors.get(key);
    if expected.is_none() && engine_error.is_none() {
        return CaseOutcome::Skipped;
    }
    let result = engines::run(engine, &case.layer, options);
    match (expected, result) {
        (Some(expected), Ok(out)) => {
            let mut differing = 0;
            let mut first = None;
            for (i, (&e, &g)) in expected.iter().zip(&out.values).enumerate() {
                if e != g as i64 {
                    differing += 1;
                    first.get_or_insert((i, e, g as i64));
                }
            }
            match first {
                None if expected.len() == out.values.len() => CaseOutcome::Pass,
                None => CaseOutcome::Fail(Mismatch::Elements {
                    differing: expected.len().abs_diff(out.values.len()),
                    total: expected.len(),
                    first: [0; 4],
                    expected: 0,
                    got: 0,
                }),
                Some((i, e, g)) => CaseOutcome::Fail(Mismatch::Elements {
                    differing,
                    total: expected.len(),
                    first: case.layer.geometry.output_coords(i),
                    expected: e,
                    got: g,
                }),
            }
        }
        (Some(_), Err(e)) => CaseOutcome::Fail(Mismatch::Refused {
            reason: e.to_string(),
        }),
        (None, Err(_)) => CaseOutcome::Pass,
        (None, Ok(_)) => CaseOutcome::Fail(Mismatch::Accepted {
            engine_error: engine_error.cloned().unwrap_or_default(),
        }),
    }
}

/// The one-line report of a failed case, in the CLI's format.
pub fn describe_failure(id: &str, m: &Mismatch) -> String {
    match m {
        Mismatch::Elements {
            differing,
            total,
            first,
            expected,
            got,
        } => format!(
            "FAIL {id}: {differing} of {total} elements differ; first at [{},{},{},{}]: expected {expected}, got {got}",
            first[0], first[1], first[2], first[3]
        ),
        Mismatch::Refused { reason } => {
            format!("FAIL {id}: the model refused a case the engine computed: {reason}")
        }
        Mismatch::Accepted { engine_error } => format!(
            "FAIL {id}: the engine refused this case (\"{engine_error}\") but the model computed it"
        ),
    }
}
