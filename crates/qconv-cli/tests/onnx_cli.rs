//! The `qconv` binary on ONNX models: `layers`, `MODEL.onnx#NODE` layers with `--input`, the
//! whole-model `check`, and bad models and inputs (exit code 2, one line naming the file and the
//! field, no panic).

mod common;

use std::path::{Path, PathBuf};

use common::{assert_user_error, qconv, repo};

fn models() -> PathBuf {
    repo().join("tests/data/models")
}

fn model(name: &str) -> String {
    models().join(name).to_string_lossy().into_owned()
}

fn scratch(name: &str) -> PathBuf {
    common::scratch(&format!("onnx-{name}"))
}

/// The manifest record of node `index` of model `name` captured on `isa`.
fn capture(name: &str, isa: &str, index: usize) -> (String, String, String) {
    let text = std::fs::read_to_string(models().join("manifest.json")).unwrap();
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entry = m["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap();
    let cap = entry["captures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["isa"] == isa)
        .unwrap();
    let rec = &cap["nodes"][index];
    (
        rec["name"].as_str().unwrap().to_string(),
        models()
            .join(rec["input"].as_str().unwrap())
            .to_string_lossy()
            .into_owned(),
        models()
            .join(rec["output"].as_str().unwrap())
            .to_string_lossy()
            .into_owned(),
    )
}

#[test]
fn layers_lists_every_convolution() {
    let (code, stdout, stderr) = qconv(&["layers", &model("qdq-u8s8-pc.onnx")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("12 convolution nodes"), "{stdout}");
    assert!(stdout.contains("/stem/Conv"), "{stdout}");
    assert!(stdout.contains("[1,3,32,32]"), "{stdout}");
    assert!(stdout.contains("3x3 s2,2 p1,1 d1,1 g1"), "{stdout}");
    assert!(stdout.contains("u8 s8 -> u8  per-channel"), "{stdout}");
    assert!(stdout.contains("fused QLinearConv"), "{stdout}");
    let (code, stdout, _) = qconv(&["layers", &model("qdq-s8s8-pt.onnx")]);
    assert_eq!(code, 0);
    assert!(stdout.contains("not fused (float)") && stdout.contains("fused as uint8"));
    let (code, stdout, _) = qconv(&["layers", &model("qop-u8s8-pt.onnx"), "--format", "json"]);
    assert_eq!(code, 0);
    let j: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let nodes = j["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 12);
    assert_eq!(nodes[0]["op"], "QLinearConv");
    assert_eq!(
        nodes[0]["input"]["shape"],
        serde_json::json!([1, 3, 32, 32])
    );
    assert_eq!(
        nodes[0]["output"]["shape"],
        serde_json::json!([1, 16, 16, 16])
    );
    assert_eq!(nodes[0]["weight"]["per_channel"], false);
    assert_eq!(nodes[0]["onnxruntime"]["execution"], "as-is");
    assert_eq!(nodes[2]["conv"]["groups"], 32);
    let (code, stdout, _) = qconv(&["layers", "--help"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("Usage:") && stdout.contains("MODEL"),
        "{stdout}"
    );
}

#[test]
fn run_reproduces_onnx_runtime_on_avx2() {
    let (name, input, output) = capture("qop-u8s8-pc", "avx2", 0);
    let dir = scratch("run");
    let out = dir.join("y.npy");
    let out_s = out.to_string_lossy().into_owned();
    let spec = format!("{}#{name}", model("qop-u8s8-pc.onnx"));
    let (code, _, stderr) = qconv(&[
        "run",
        &spec,
        "--input",
        &input,
        "--engine",
        "onnxruntime",
        "--isa",
        "avx2",
        "--output",
        &out_s,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&output).unwrap(),
        "the .npy qconv writes is byte for byte the tensor ONNX Runtime produced"
    );
    // The index works as well as the name; on VNNI the result differs from AVX2's.
    let spec0 = format!("{}#0", model("qop-u8s8-pc.onnx"));
    let (code, stdout, stderr) = qconv(&[
        "compare",
        &spec0,
        "--input",
        &input,
        "--engines",
        "onnx,onnxruntime",
        "--isa",
        "avx2",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("onnxruntime(avx2)"), "{stdout}");
    assert!(stdout.contains("int16 pair saturation"), "{stdout}");
    let (code, stdout, stderr) = qconv(&["explain", &spec0, "--input", &input, "--isa", "avx2"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("pair-saturation"), "{stdout}");
}

#[test]
fn a_node_needs_its_input_except_for_check() {
    let spec = format!("{}#/stem/Conv_quant", model("qop-u8s8-pt.onnx"));
    for cmd in ["run", "compare", "explain"] {
        assert_user_error(
            &[cmd, &spec],
            &["--input", "input_quantized", "uint8", "[1,3,32,32]"],
        );
    }
    let (code, stdout, stderr) = qconv(&["check", &spec, "--isa", "avx2"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stdout.contains("the full input range is checked"),
        "{stdout}"
    );
    assert!(stdout.contains("CAN SATURATE"), "{stdout}");
    // PyTorch's fbgemm would saturate on it too (the int32 bias does not matter for that).
    let (code, stdout, stderr) = qconv(&["check", &spec, "--engine", "fbgemm", "--isa", "avx2"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.contains("FBGEMM"), "{stdout}");
    let (code, _, _) = qconv(&["check", &spec, "--isa", "avx512-vnni"]);
    assert_eq!(code, 0);
}

#[test]
fn check_audits_a_whole_model() {
    let (code, stdout, stderr) = qconv(&["check", &model("qdq-u8s8-pt.onnx")]);
    assert_eq!(code, 1, "{stderr}");
    for needle in [
        "12 convolution nodes",
        "avx2",
        "avx-vnni",
        "avx512-vnni",
        "/b1/dw/Conv",
        "depthwise kernel",
        "avx2: CAN SATURATE",
        "avx512: CAN SATURATE",
        "avx-vnni: no node can saturate",
        "avx512-vnni: no node can saturate",
    ] {
        assert!(stdout.contains(needle), "`{needle}` missing:\n{stdout}");
    }
    let (code, stdout, _) = qconv(&["check", &model("qdq-u8s8-pt.onnx"), "--isa", "avx512-vnni"]);
    assert_eq!(code, 0, "{stdout}");
    // With 7-bit activations nothing saturates.
    let (code, stdout, _) = qconv(&[
        "check",
        &model("qop-u8s8-pt.onnx"),
        "--isa",
        "avx2",
        "--input-range",
        "0,127",
    ]);
    assert_eq!(code, 0, "{stdout}");
    // Nodes ONNX Runtime runs as float convolutions are listed as not modelled.
    let (_, stdout, _) = qconv(&["check", &model("qdq-s8s8-pt.onnx")]);
    assert!(stdout.contains("not modelled"), "{stdout}");
}

#[test]
fn unfused_nodes_are_not_modelled() {
    let (name, input, _) = capture("qdq-s8s8-pt", "avx2", 0);
    let spec = format!("{}#{name}", model("qdq-s8s8-pt.onnx"));
    assert_user_error(
        &["run", &spec, "--input", &input, "--engine", "onnxruntime"],
        &["does not model what onnxruntime computes", "float32 Conv"],
    );
    let (code, _, stderr) = qconv(&["run", &spec, "--input", &input, "--engine", "exact"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn bad_models_and_inputs_are_user_errors() {
    let dir = scratch("bad");
    let good = std::fs::read(model("qop-u8s8-pt.onnx")).unwrap();
    let truncated = dir.join("truncated.onnx");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let t = truncated.to_string_lossy().into_owned();
    assert_user_error(&["layers", &t], &["truncated.onnx", "field `", "byte"]);
    assert_user_error(&["check", &t], &["truncated.onnx"]);
    let junk = dir.join("junk.onnx");
    std::fs::write(&junk, b"this is not a protobuf model at all").unwrap();
    assert_user_error(
        &["layers", &junk.to_string_lossy()],
        &["junk.onnx", "field `"],
    );
    assert_user_error(&["layers", "missing.onnx"], &["missing.onnx"]);

    let m = model("qop-u8s8-pt.onnx");
    assert_user_error(&["run", &m], &["choose one as MODEL.onnx#NODE"]);
    assert_user_error(
        &["run", &format!("{m}#NoSuchNode"), "--input", "x.npy"],
        &["node `NoSuchNode`", "no node of that name"],
    );
    assert_user_error(
        &[
            "run",
            &format!("{m}#input_QuantizeLinear"),
            "--input",
            "x.npy",
        ],
        &["QuantizeLinear node, not a convolution"],
    );
    assert_user_error(
        &["run", &format!("{m}#99"), "--input", "x.npy"],
        &["node #99", "12 convolution nodes"],
    );
    // Inputs of the wrong shape, type or kind.
    let (_, input, _) = capture("qop-u8s8-pt", "avx2", 1);
    assert_user_error(
        &["run", &format!("{m}#0"), "--input", &input],
        &["shape [1, 16, 16, 16]", "C = 3"],
    );
    let floats = dir.join("floats.npy");
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 32, 32), }";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(std::iter::repeat_n(0u8, 4 * 3 * 32 * 32));
    std::fs::write(&floats, &bytes).unwrap();
    assert_user_error(
        &[
            "run",
            &format!("{m}#0"),
            "--input",
            &floats.to_string_lossy(),
        ],
        &["floats.npy", "holds floats"],
    );
    let forum = repo().join("examples/forum-5x5.toml");
    assert_user_error(
        &["run", &forum.to_string_lossy(), "--input", &input],
        &["--input", "MODEL.onnx#NODE"],
    );
}

fn backend(test: &str) -> String {
    repo()
        .join("tests/data/onnx-backend")
        .join(test)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn conformance_passes_the_onnx_backend_tests() {
    let all = backend("");
    for engine in ["onnx", "onnxruntime"] {
        let (code, stdout, stderr) = qconv(&["conformance", "--engine", engine, &all]);
        assert_eq!(code, 0, "{engine}: {stdout}{stderr}");
        assert_eq!(stdout, "3 passed, 0 failed\n", "{engine}");
        for isa in ["avx2", "avx512", "avx512-vnni"] {
            let (code, stdout, _) = qconv(&["conformance", "--engine", engine, "--isa", isa, &all]);
            assert_eq!(code, 0, "{engine} {isa}");
            assert_eq!(stdout, "3 passed, 0 failed\n", "{engine} {isa}");
        }
    }
    // --verbose shows every case, and that ONNX Runtime passes one by refusing it.
    let (code, stdout, _) = qconv(&["conformance", "--engine", "onnxruntime", "-v", &all]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[0].starts_with("PASS test_convinteger_with_padding/test_data_set_0: refused")
            && lines[0].contains("Non per-tensor quantization is not supported now"),
        "{stdout}"
    );
    assert_eq!(
        lines[1],
        "PASS test_convinteger_without_padding/test_data_set_0"
    );
    assert_eq!(lines[2], "PASS test_qlinearconv/test_data_set_0");
    // One test, by directory or by its model.onnx, mixed with a golden file.
    let model = format!("{}/model.onnx", backend("test_qlinearconv"));
    let golden = repo()
        .join("tests/data/golden/onnx-convinteger-mixed.jsonl.gz")
        .to_string_lossy()
        .into_owned();
    let (code, stdout, _) = qconv(&[
        "conformance",
        "--engine",
        "onnx",
        &backend("test_convinteger_with_padding"),
        &model,
        &golden,
    ]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.ends_with(" passed, 0 failed\n"), "{stdout}");
    // Every engine: the other engines record nothing in a backend test (3 tests, 2 ONNX engines
    // of the 10 qconv models).
    let (code, stdout, _) = qconv(&["conformance", &all]);
    assert_eq!(code, 0);
    let others = qconv::EngineKind::ALL.len() - 2;
    assert_eq!(
        stdout,
        format!("6 passed, 0 failed, {} skipped\n", 3 * others)
    );
}

#[test]
fn conformance_reports_backend_failures_and_bad_tests() {
    // A wrong expected value: one FAIL line, exit 1.
    let dir = scratch("backend-fail").join("test_qlinearconv");
    std::fs::create_dir_all(dir.join("test_data_set_0")).unwrap();
    let src = Path::new(&backend("test_qlinearconv")).to_path_buf();
    std::fs::copy(src.join("model.onnx"), dir.join("model.onnx")).unwrap();
    for i in 0..8 {
        let f = format!("test_data_set_0/input_{i}.pb");
        std::fs::copy(src.join(&f), dir.join(&f)).unwrap();
    }
    let mut out = std::fs::read(src.join("test_data_set_0/output_0.pb")).unwrap();
    *out.last_mut().unwrap() = 7;
    std::fs::write(dir.join("test_data_set_0/output_0.pb"), out).unwrap();
    let d = dir.to_string_lossy().into_owned();
    let (code, stdout, _) = qconv(&["conformance", "--engine", "onnxruntime", &d]);
    assert_eq!(code, 1);
    assert_eq!(
        stdout,
        "FAIL test_qlinearconv/test_data_set_0: 1 of 49 elements differ; first at [0,0,6,6]: \
         expected 7, got 8\n0 passed, 1 failed\n"
    );
    // A test qconv cannot read: exit 2, one line naming the file.
    std::fs::remove_file(dir.join("test_data_set_0/input_5.pb")).unwrap();
    assert_user_error(
        &["conformance", "--engine", "onnx", &d],
        &["input_5.pb is missing"],
    );
    let empty = scratch("backend-empty");
    assert_user_error(
        &["conformance", "--engine", "onnx", &empty.to_string_lossy()],
        &["backend-empty", "neither an ONNX backend test"],
    );
}
