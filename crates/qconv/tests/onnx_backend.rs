//! The ONNX project's own backend node tests for QLinearConv and ConvInteger
//! (`tests/data/onnx-backend`, copied from the onnx repository; see its README): every case, for
//! the ONNX reference model and the ONNX Runtime model on every ISA, bit for bit; and test
//! directories qconv cannot read give errors naming the file, never a panic or a silent skip.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use qconv::Isa;
use qconv::conformance::{CaseOutcome, Mismatch, check_case, describe_failure, read_cases};
use qconv::dtype::DType;
use qconv::engines::{self, EngineKind, RunOptions};
use qconv::error::Error;
use qconv::io::golden::GoldenCase;
use qconv::io::onnx::{backend, proto, tensor};

/// The tests copied into the repository (tests/data/onnx-backend/README.md lists them).
const TESTS: [&str; 3] = [
    "test_convinteger_with_padding",
    "test_convinteger_without_padding",
    "test_qlinearconv",
];

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/onnx-backend")
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn all_cases() -> Vec<GoldenCase> {
    read_cases(&s(&data())).unwrap()
}

fn case<'a>(cases: &'a [GoldenCase], test: &str) -> &'a GoldenCase {
    cases
        .iter()
        .find(|c| c.id == format!("{test}/test_data_set_0"))
        .unwrap()
}

/// A fresh copy of backend test `test` in a scratch directory named `name`.
fn scratch_copy(name: &str, test: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("onnx-backend-{name}"));
    let _ = std::fs::remove_dir_all(&root);
    let dir = root.join(test);
    copy_dir(&data().join(test), &dir);
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn every_copied_test_is_read() {
    let mut dirs: Vec<String> = std::fs::read_dir(data())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    assert_eq!(dirs, TESTS);
    let cases = all_cases();
    let ids: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        TESTS
            .iter()
            .map(|t| format!("{t}/test_data_set_0"))
            .collect::<Vec<_>>()
    );
    // One test directory, or its model.onnx, reads the same as the whole directory's share.
    for t in TESTS {
        let dir = data().join(t);
        let one = read_cases(&s(&dir)).unwrap();
        let via_model = read_cases(&s(&dir.join("model.onnx"))).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].expected, via_model[0].expected);
        assert_eq!(one[0].expected, case(&cases, t).expected);
    }
}

/// Checks every case for `engine` with `options`; returns (passed, passed by refusing).
fn check_all(engine: EngineKind, options: &RunOptions) -> (usize, usize) {
    let cases = all_cases();
    let key = engine.expected_key();
    let (mut passed, mut refused, mut failures) = (0, 0, Vec::new());
    for c in &cases {
        match check_case(c, engine, key, options) {
            CaseOutcome::Pass => {
                passed += 1;
                if c.errors.contains_key(key) {
                    refused += 1;
                    // The model really refuses it (a pass by refusal is not a skip).
                    assert!(matches!(
                        engines::run(engine, &c.layer, options),
                        Err(Error::Refused { .. })
                    ));
                }
            }
            CaseOutcome::Skipped => panic!("{}: nothing recorded for {engine}", c.id),
            CaseOutcome::Fail(m) => failures.push(describe_failure(&c.id, &m)),
        }
    }
    assert!(failures.is_empty(), "{engine}: {}", failures.join("\n"));
    (passed, refused)
}

#[test]
fn onnx_reference_passes_every_case() {
    for isa in [
        None,
        Some(Isa::Avx2),
        Some(Isa::Avx512),
        Some(Isa::Avx512Vnni),
    ] {
        let options = RunOptions {
            isa,
            ..RunOptions::default()
        };
        assert_eq!(check_all(EngineKind::Onnx, &options), (3, 0), "{isa:?}");
        // And with the plain reference loop.
        let options = RunOptions {
            reference: true,
            ..options
        };
        assert_eq!(check_all(EngineKind::Onnx, &options), (3, 0), "{isa:?}");
    }
}

#[test]
fn onnxruntime_passes_every_case_on_every_isa() {
    for isa in [
        None,
        Some(Isa::Avx2),
        Some(Isa::AvxVnni),
        Some(Isa::Avx512),
        Some(Isa::Avx512Vnni),
    ] {
        let options = RunOptions {
            isa,
            ..RunOptions::default()
        };
        // ONNX Runtime 1.32 computes two of the tests exactly and refuses the third (a
        // per-channel ConvInteger weight zero point); the model does the same.
        assert_eq!(
            check_all(EngineKind::OnnxRuntime, &options),
            (3, 1),
            "{isa:?}"
        );
    }
    let cases = all_cases();
    let refused = case(&cases, "test_convinteger_with_padding");
    assert!(refused.errors["onnxruntime"].contains("Non per-tensor quantization is not supported"));
    assert!(!refused.expected.contains_key("onnxruntime"));
    assert!(refused.expected.contains_key("onnx_reference"));
    for t in ["test_convinteger_without_padding", "test_qlinearconv"] {
        let c = case(&cases, t);
        assert!(c.errors.is_empty(), "{t}");
        assert_eq!(c.expected["onnxruntime"], c.expected["onnx_reference"]);
    }
}

#[test]
fn the_graph_inputs_are_bound_from_the_data_set() {
    let cases = all_cases();
    // QLinearConv: every scale, zero point and the weight are graph inputs (input_1..7.pb).
    let q = &case(&cases, "test_qlinearconv").layer;
    assert_eq!(q.input.dtype, DType::Uint8);
    assert_eq!(q.input.shape, [1, 1, 7, 7]);
    assert_eq!(q.input.zero_point, 132);
    // np.float32(0.00369204697) in the generator script.
    assert_eq!(q.input.scale, Some(f64::from(0.003_692_047_f32)));
    assert_eq!(&q.input.data[..3], &[255, 174, 162]);
    assert_eq!(q.weight.dtype, DType::Uint8);
    assert_eq!(q.weight.data, vec![0]);
    assert_eq!(q.weight.quant.zero_points, vec![255]);
    assert_eq!(q.output.dtype, DType::Uint8);
    assert_eq!(q.output.zero_point, 123);
    let e = &case(&cases, "test_qlinearconv").expected["onnx_reference"];
    assert_eq!(e.len(), 49);
    assert_eq!(&e[..7], &[0, 81, 93, 230, 52, 87, 197]);

    // ConvInteger with pads [1, 1, 1, 1] and one weight zero point per output channel.
    let c = case(&cases, "test_convinteger_with_padding");
    let l = &c.layer;
    assert_eq!(l.output.dtype, DType::Int32);
    assert_eq!(l.input.zero_point, 1);
    assert_eq!(l.weight.shape, [2, 1, 2, 2]);
    assert!(l.weight.quant.per_channel);
    assert_eq!(l.weight.quant.zero_points, vec![0, 1]);
    let p = l.geometry.padding;
    assert_eq!([p.top, p.left, p.bottom, p.right], [1, 1, 1, 1]);
    assert_eq!(l.geometry.output_shape(), [1, 2, 4, 4]);
    let e = &c.expected["onnx_reference"];
    assert_eq!(&e[..8], &[1, 3, 5, 3, 5, 12, 16, 9]);
    assert!(e[16..].iter().all(|&v| v == 0));

    let c = case(&cases, "test_convinteger_without_padding");
    assert_eq!(c.layer.weight.quant.zero_points, vec![0]);
    assert_eq!(c.expected["onnx_reference"], vec![12, 16, 24, 28]);
}

#[test]
fn a_wrong_expected_output_fails() {
    let dir = scratch_copy("wrong-output", "test_qlinearconv");
    let out = dir.join("test_data_set_0/output_0.pb");
    let mut bytes = std::fs::read(&out).unwrap();
    // The last byte is the last element of raw_data (8 in the test).
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&out, bytes).unwrap();
    let cases = read_cases(&s(&dir)).unwrap();
    for engine in backend::ENGINES {
        match check_case(
            &cases[0],
            engine,
            engine.expected_key(),
            &RunOptions::default(),
        ) {
            CaseOutcome::Fail(Mismatch::Elements {
                differing,
                total,
                first,
                expected,
                got,
            }) => {
                assert_eq!((differing, total, first), (1, 49, [0, 0, 6, 6]));
                assert_eq!((expected, got), (9, 8));
            }
            other => panic!("{engine}: {other:?}"),
        }
    }
}

#[test]
fn without_the_recorded_error_the_refusal_fails() {
    let dir = scratch_copy("no-errors-file", "test_convinteger_with_padding");
    std::fs::remove_file(dir.join(backend::ENGINE_ERRORS_FILE)).unwrap();
    let cases = read_cases(&s(&dir)).unwrap();
    let outcome = check_case(
        &cases[0],
        EngineKind::OnnxRuntime,
        "onnxruntime",
        &RunOptions::default(),
    );
    assert!(
        matches!(outcome, CaseOutcome::Fail(Mismatch::Refused { .. })),
        "{outcome:?}"
    );
    // A recorded error the model does not reproduce fails too.
    let dir = scratch_copy("errors-file-wrong", "test_convinteger_without_padding");
    std::fs::write(
        dir.join(backend::ENGINE_ERRORS_FILE),
        r#"{"source": "test", "errors": {"onnxruntime": "refused"}}"#,
    )
    .unwrap();
    let cases = read_cases(&s(&dir)).unwrap();
    let outcome = check_case(
        &cases[0],
        EngineKind::OnnxRuntime,
        "onnxruntime",
        &RunOptions::default(),
    );
    assert!(
        matches!(outcome, CaseOutcome::Fail(Mismatch::Accepted { .. })),
        "{outcome:?}"
    );
}

/// Reading `dir` fails with a parse or I/O error whose message contains every needle.
fn assert_read_error(dir: &Path, needles: &[&str]) {
    let e = read_cases(&s(dir)).expect_err("an error");
    assert!(matches!(e, Error::Parse { .. } | Error::Io { .. }), "{e:?}");
    let msg = e.to_string();
    for n in needles {
        assert!(msg.contains(n), "`{n}` missing from: {msg}");
    }
}

#[test]
fn unreadable_tests_are_errors_naming_the_file() {
    // A missing input: 7 files for 8 graph inputs.
    let dir = scratch_copy("missing-input", "test_qlinearconv");
    std::fs::remove_file(dir.join("test_data_set_0/input_7.pb")).unwrap();
    assert_read_error(
        &dir,
        &["test_data_set_0", "7 input_N.pb files", "8 graph inputs"],
    );

    // A gap in the numbering.
    let dir = scratch_copy("gap", "test_qlinearconv");
    std::fs::remove_file(dir.join("test_data_set_0/input_3.pb")).unwrap();
    assert_read_error(&dir, &["input_3.pb is missing"]);

    // Inputs in the wrong order: the tensor names do not match the graph inputs.
    let dir = scratch_copy("swapped", "test_qlinearconv");
    let set = dir.join("test_data_set_0");
    std::fs::rename(set.join("input_1.pb"), set.join("tmp.pb")).unwrap();
    std::fs::rename(set.join("input_2.pb"), set.join("input_1.pb")).unwrap();
    std::fs::rename(set.join("tmp.pb"), set.join("input_2.pb")).unwrap();
    assert_read_error(&dir, &["input_1.pb", "tensor.name", "x_scale"]);

    // An expected output of the wrong type (uint8 where ConvInteger gives int32).
    let dir = scratch_copy("wrong-type", "test_convinteger_without_padding");
    let set = dir.join("test_data_set_0");
    std::fs::copy(set.join("input_0.pb"), set.join("output_0.pb")).unwrap();
    assert_read_error(&dir, &["output_0.pb", "tensor.data_type", "uint8", "int32"]);

    // An expected output of the wrong shape.
    let dir = scratch_copy("wrong-shape", "test_qlinearconv");
    std::fs::copy(
        data().join("test_convinteger_without_padding/test_data_set_0/input_0.pb"),
        dir.join("test_data_set_0/output_0.pb"),
    )
    .unwrap();
    assert_read_error(
        &dir,
        &["output_0.pb", "tensor.dims", "[1, 1, 3, 3]", "[1, 1, 7, 7]"],
    );

    // A truncated tensor file.
    let dir = scratch_copy("truncated", "test_qlinearconv");
    let x = dir.join("test_data_set_0/input_0.pb");
    let bytes = std::fs::read(&x).unwrap();
    std::fs::write(&x, &bytes[..bytes.len() - 5]).unwrap();
    assert_read_error(&dir, &["input_0.pb", "tensor.raw_data", "remain"]);

    // No output file.
    let dir = scratch_copy("no-output", "test_qlinearconv");
    std::fs::remove_file(dir.join("test_data_set_0/output_0.pb")).unwrap();
    assert_read_error(&dir, &["0 output_N.pb files"]);

    // No data set.
    let dir = scratch_copy("no-data-set", "test_qlinearconv");
    std::fs::remove_dir_all(dir.join("test_data_set_0")).unwrap();
    assert_read_error(&dir, &["no test_data_set_N"]);

    // A bad engine-errors.json: unknown engine key, malformed JSON.
    let dir = scratch_copy("bad-errors-key", "test_qlinearconv");
    std::fs::write(
        dir.join(backend::ENGINE_ERRORS_FILE),
        r#"{"source": "x", "errors": {"fbgemm": "no"}}"#,
    )
    .unwrap();
    assert_read_error(
        &dir,
        &["engine-errors.json", "errors.fbgemm", "onnxruntime"],
    );
    std::fs::write(dir.join(backend::ENGINE_ERRORS_FILE), "{").unwrap();
    assert_read_error(&dir, &["engine-errors.json", "line 1"]);

    // A directory holding no test.
    let empty = Path::new(env!("CARGO_TARGET_TMPDIR")).join("onnx-backend-empty");
    let _ = std::fs::remove_dir_all(&empty);
    std::fs::create_dir_all(&empty).unwrap();
    assert_read_error(
        &empty,
        &["onnx-backend-empty", "neither an ONNX backend test"],
    );
}

/// A serialized `TensorProto`: dims, data type, name and zero-filled raw data.
fn tensor_bytes(name: &str, data_type: i32, dims: &[i64]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    let size = match data_type {
        1 | 6 => 4,
        2 | 3 => 1,
        _ => 8,
    };
    let count: i64 = dims.iter().product();
    let mut out = Vec::new();
    for &d in dims {
        varint(&mut out, 1 << 3);
        varint(&mut out, d as u64);
    }
    varint(&mut out, 2 << 3);
    varint(&mut out, data_type as u64);
    varint(&mut out, 8 << 3 | 2);
    varint(&mut out, name.len() as u64);
    out.extend_from_slice(name.as_bytes());
    varint(&mut out, 9 << 3 | 2);
    varint(&mut out, (count as usize * size) as u64);
    out.resize(out.len() + count as usize * size, 0);
    out
}

#[test]
fn a_model_that_is_not_a_single_convolution_is_an_error() {
    // A real-model fixture (12 convolutions) in a backend test layout, with a well-formed
    // data set for its one graph input.
    let model_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/models/qop-u8s8-pt.onnx");
    let model = qconv::io::onnx::OnnxModel::read(&s(&model_path)).unwrap();
    let fed = model.fed_inputs();
    assert_eq!(fed.len(), 1);
    let dims: Vec<i64> = fed[0]
        .shape
        .as_ref()
        .unwrap()
        .iter()
        .map(|d| match d {
            proto::Dim::Value(v) => *v,
            _ => 1,
        })
        .collect();
    let dir = scratch_copy("many-convs", "test_qlinearconv");
    std::fs::copy(&model_path, dir.join("model.onnx")).unwrap();
    let set = dir.join("test_data_set_0");
    std::fs::remove_dir_all(&set).unwrap();
    std::fs::create_dir_all(&set).unwrap();
    std::fs::write(
        set.join("input_0.pb"),
        tensor_bytes(&fed[0].name, fed[0].elem_type.unwrap(), &dims),
    )
    .unwrap();
    std::fs::write(set.join("output_0.pb"), tensor_bytes("y", 1, &[1])).unwrap();
    assert_read_error(
        &dir,
        &[
            "model.onnx",
            "12 convolution nodes",
            "one QLinearConv or ConvInteger node",
        ],
    );

    // A data-set tensor of the wrong type for its graph input.
    std::fs::write(set.join("input_0.pb"), tensor_bytes(&fed[0].name, 6, &dims)).unwrap();
    assert_read_error(&dir, &["input_0.pb", "tensor.data_type", "int32"]);
    // ... and of the wrong shape.
    std::fs::write(
        set.join("input_0.pb"),
        tensor_bytes(&fed[0].name, fed[0].elem_type.unwrap(), &[1, 2]),
    )
    .unwrap();
    assert_read_error(&dir, &["input_0.pb", "tensor.dims", "does not fit"]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Random and mutated tensor files never panic the reader.
    #[test]
    fn tensor_files_never_panic(
        which in 0usize..8,
        cut in 0usize..80,
        flips in proptest::collection::vec((0usize..80, any::<u8>()), 0..4),
        random in proptest::collection::vec(any::<u8>(), 0..64),
        use_random in any::<bool>(),
    ) {
        let path = data().join(format!("test_qlinearconv/test_data_set_0/input_{which}.pb"));
        let mut bytes = if use_random { random } else { std::fs::read(&path).unwrap() };
        for (at, v) in flips {
            if let Some(b) = bytes.get_mut(at) {
                *b = v;
            }
        }
        bytes.truncate(cut.max(1).min(bytes.len().max(1)));
        if let Ok(t) = proto::parse_tensor_proto("t.pb", &bytes) {
            let _ = tensor::decode(&t, &|m| Error::parse("t.pb", "", m));
        }
    }
}
