//! The TFLite parts of the `qconv` binary end to end: the engines' conformance, `.tflite` models
//! as layers, `qconv layers`, `qconv vectors` and `--acc-bits`; bad input exits 2 with a message
//! naming the file and the field, never a panic.

mod common;

use std::path::Path;

use common::{qconv, repo, scratch};

const MODEL: &str = "tests/data/models/tiny_mobilenet_int8.tflite";

/// Exit code 2, an error containing every `needle`, no panic.
fn assert_user_error(args: &[&str], needles: &[&str]) {
    common::assert_exit_2(args, needles);
}

#[test]
fn conformance_of_both_engines_on_every_tflite_golden_file() {
    for engine in ["tflite-reference", "tflite"] {
        let (code, out, err) = qconv(&[
            "conformance",
            "--engine",
            engine,
            "tests/data/golden/tflite-mixed.jsonl.gz",
            "tests/data/golden/tflite-depthwise.jsonl.gz",
            "tests/data/golden/tflite-realistic.jsonl.gz",
        ]);
        assert_eq!(code, 0, "{engine}: {out}{err}");
        assert_eq!(
            out.lines().last().unwrap(),
            "250 passed, 0 failed",
            "{engine}"
        );
    }
}

#[test]
fn layers_lists_the_model() {
    let (code, out, err) = qconv(&["layers", MODEL]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("{MODEL}#0: input [1, 3, 64, 64] int8")),
        "{out}"
    );
    assert!(out.contains("#7   ADD"), "{out}");
    assert!(out.contains("padding same"), "{out}");
    assert!(out.contains("activation relu6"), "{out}");
    assert_eq!(
        out.lines().last().unwrap(),
        "14 operators, 11 convolutions qconv reads"
    );
}

#[test]
fn a_model_operator_is_a_layer_for_run_compare_explain_and_check() {
    let layer = format!("{MODEL}#1");
    let (code, out, err) = qconv(&["run", &layer, "--engine", "tflite"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("route   XNNPACK delegate"), "{out}");
    let (code, out, err) = qconv(&["compare", &layer, "--engines", "tflite-reference,tflite"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("tflite-reference"), "{out}");
    let (code, out, err) = qconv(&["explain", &layer]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("tflite-reference") && out.contains("tflite"),
        "{out}"
    );
    // check models the int16-saturating engines: ONNX Runtime takes an int8 layer without a
    // fused activation (operator 2, a linear 1x1 convolution), and refuses one with ReLU6.
    let linear = format!("{MODEL}#2");
    let (code, out, err) = qconv(&["check", &linear, "--engine", "onnxruntime"]);
    assert!(code == 0 || code == 1, "{out}{err}");
    assert!(out.contains("tiny_mobilenet_int8.tflite#2"), "{out}");
    assert_user_error(
        &["check", &layer, "--engine", "onnxruntime"],
        &["onnxruntime refuses", "fused activation"],
    );
}

#[test]
fn bad_models_and_operators_are_user_errors() {
    assert_user_error(&["run", &format!("{MODEL}#7")], &["operator 7 is ADD"]);
    assert_user_error(&["run", &format!("{MODEL}#99")], &["has 14 operators"]);
    assert_user_error(&["run", MODEL], &["holds 11 convolutions", "#OP_INDEX"]);
    let dir = scratch("tflite-bad-models");
    let bytes = std::fs::read(repo().join(MODEL)).unwrap();
    let truncated = dir.join("truncated.tflite");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let t = truncated.to_string_lossy().into_owned();
    assert_user_error(&["run", &format!("{t}#0")], &["truncated.tflite"]);
    assert_user_error(&["layers", &t], &["truncated.tflite"]);
    let text = dir.join("text.tflite");
    std::fs::write(&text, "not a model").unwrap();
    assert_user_error(
        &["layers", &text.to_string_lossy()],
        &["text.tflite", "not a TFLite model"],
    );
    assert_user_error(&["layers", "missing.tflite"], &["missing.tflite"]);
    assert_user_error(
        &["layers", "examples/forum-5x5.toml"],
        &["unknown model format"],
    );
}

#[test]
fn vectors_are_written_with_a_manifest() {
    let dir = scratch("tflite-vectors");
    let out_dir = dir.join("v").to_string_lossy().into_owned();
    let (code, out, err) = qconv(&[
        "vectors",
        &format!("{MODEL}#0"),
        "--engine",
        "tflite",
        "--out",
        &out_dir,
        "--format",
        "c-header",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("manifest.json"), "{out}");
    for f in [
        "input.h",
        "weights.h",
        "bias.h",
        "requant_multiplier.h",
        "requant_shift.h",
        "requant_scale.h",
        "accumulator.h",
        "expected_output.h",
        "manifest.json",
    ] {
        assert!(Path::new(&out_dir).join(f).exists(), "{f}");
    }
    let header = std::fs::read_to_string(Path::new(&out_dir).join("weights.h")).unwrap();
    assert!(
        header.contains("static const int8_t weights[432]"),
        "{header}"
    );
}

#[test]
fn bad_vector_and_accumulator_arguments_are_user_errors() {
    let layer = format!("{MODEL}#0");
    let dir = scratch("tflite-vectors-bad");
    let out = dir.join("v").to_string_lossy().into_owned();
    assert_user_error(
        &["vectors", &layer, "--out", &out, "--format", "bin"],
        &["unknown format"],
    );
    assert_user_error(
        &["vectors", &layer, "--out", &out, "--engine", "fbgemm"],
        &["TFLite engines"],
    );
    assert_user_error(
        &["vectors", &layer, "--out", &out, "--acc-bits", "40"],
        &["acc-bits", "2 to 32"],
    );
    assert_user_error(
        &[
            "vectors",
            &layer,
            "--out",
            &out,
            "--acc-bits",
            "20",
            "--acc-overflow",
            "clip",
        ],
        &["saturate or wrap"],
    );
    assert_user_error(
        &[
            "run",
            "examples/forum-5x5.toml",
            "--engine",
            "fbgemm",
            "--acc-bits",
            "20",
        ],
        &["acc-bits", "fbgemm"],
    );
    assert!(!Path::new(&out).join("manifest.json").exists());
    // A file where the directory should be.
    let file = dir.join("file");
    std::fs::write(&file, "x").unwrap();
    assert_user_error(
        &["vectors", &layer, "--out", &file.to_string_lossy()],
        &["file"],
    );
}

#[test]
fn explain_names_the_narrow_accumulator() {
    let (code, out, err) = qconv(&[
        "explain",
        &format!("{MODEL}#9"),
        "--acc-bits",
        "18",
        "--acc-overflow",
        "wrap",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("18-bit accumulator"), "{out}");
    assert!(out.contains("accumulator-overflow"), "{out}");
}

#[test]
fn tflite_refuses_what_the_interpreter_refuses() {
    let case = "tests/data/golden/tflite-mixed.jsonl.gz#tflite-mixed-0009";
    assert_user_error(&["run", case, "--engine", "tflite"], &["XNNPACK", "256"]);
    let (code, _, err) = qconv(&["run", case, "--engine", "tflite-reference"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn layer_files_take_tflite_padding_modes_and_activations() {
    let (code, out, err) = qconv(&[
        "run",
        "examples/tflite-same-relu6.toml",
        "--engine",
        "tflite",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("padding [1,1,1,1]"), "{out}");
    assert!(out.contains("output [1, 3, 3, 3]"), "{out}");
    let dir = scratch("tflite-layer-files");
    let text = std::fs::read_to_string(repo().join("examples/tflite-same-relu6.toml")).unwrap();
    let bad_mode = dir.join("bad-mode.toml");
    std::fs::write(
        &bad_mode,
        text.replace("padding_mode = \"same\"", "padding_mode = \"full\""),
    )
    .unwrap();
    assert_user_error(
        &["run", &bad_mode.to_string_lossy()],
        &["bad-mode.toml", "conv.padding_mode", "same or valid"],
    );
    let both = dir.join("both.toml");
    std::fs::write(
        &both,
        text.replace("stride = [2, 2]", "stride = [2, 2]\npadding = [1, 1]"),
    )
    .unwrap();
    assert_user_error(
        &["run", &both.to_string_lossy()],
        &["both.toml", "not both"],
    );
    let bad_act = dir.join("bad-activation.toml");
    std::fs::write(
        &bad_act,
        text.replace("activation = \"relu6\"", "activation = \"gelu\""),
    )
    .unwrap();
    assert_user_error(
        &["run", &bad_act.to_string_lossy()],
        &["bad-activation.toml", "output.activation", "gelu"],
    );
}
