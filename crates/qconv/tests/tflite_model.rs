//! A real converted `.tflite` model: every convolution read from the flatbuffer matches the layer
//! the interpreter ran, and both TFLite engine models reproduce the interpreter's captured
//! per-operator outputs bit for bit (XNNPACK captured on AVX-512-VNNI and with CPUID masked to
//! AVX2). Malformed models are errors, never panics.

use std::path::PathBuf;

use qconv::engines::{self, EngineKind, RunOptions};
use qconv::io::golden::read_cases;
use qconv::io::{load_layer, tflite};

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/models")
}

fn model_path() -> String {
    models_dir()
        .join("tiny_mobilenet_int8.tflite")
        .to_string_lossy()
        .into_owned()
}

fn check_capture(file: &str) -> usize {
    let cases = read_cases(&models_dir().join(file).to_string_lossy()).unwrap();
    let model = model_path();
    let mut checked = 0;
    for case in &cases {
        let op = case.source["op_index"].as_u64().unwrap();
        let mut layer = load_layer(&format!("{model}#{op}")).unwrap().layer;
        // The flatbuffer gives the layer the interpreter ran, all but the activations.
        let c = &case.layer;
        assert_eq!(layer.geometry, c.geometry, "{}", case.id);
        assert_eq!(layer.weight, c.weight, "{}", case.id);
        assert_eq!(layer.bias, c.bias, "{}", case.id);
        assert_eq!(layer.output.scale, c.output.scale, "{}", case.id);
        assert_eq!(layer.output.zero_point, c.output.zero_point, "{}", case.id);
        assert_eq!(layer.input.scale, c.input.scale, "{}", case.id);
        assert_eq!(layer.input.zero_point, c.input.zero_point, "{}", case.id);
        assert_eq!(layer.activation, c.activation, "{}", case.id);
        assert_eq!(layer.padding_mode, c.padding_mode, "{}", case.id);
        layer.input.data = c.input.data.clone();
        for (key, expected) in &case.expected {
            let engine = match key.as_str() {
                "tflite" => EngineKind::Tflite,
                "tflite_reference" => EngineKind::TfliteReference,
                other => panic!("unexpected key {other}"),
            };
            let out = engines::run(engine, &layer, &RunOptions::default()).unwrap();
            let got: Vec<i64> = out.values.iter().map(|&v| v as i64).collect();
            let differing = got.iter().zip(expected).filter(|(a, b)| a != b).count();
            assert_eq!(
                differing, 0,
                "{} with {engine}: {differing} elements differ",
                case.id
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn every_convolution_of_the_model_is_reproduced() {
    // 11 convolutions, each captured from both interpreters.
    assert_eq!(check_capture("tiny_mobilenet_int8.capture.jsonl.gz"), 22);
}

#[test]
fn the_xnnpack_capture_with_avx2_cpuid_is_reproduced_too() {
    assert_eq!(
        check_capture("tiny_mobilenet_int8.capture-avx2.jsonl.gz"),
        22
    );
    let native = read_cases(
        &models_dir()
            .join("tiny_mobilenet_int8.capture.jsonl.gz")
            .to_string_lossy(),
    )
    .unwrap();
    let avx2 = read_cases(
        &models_dir()
            .join("tiny_mobilenet_int8.capture-avx2.jsonl.gz")
            .to_string_lossy(),
    )
    .unwrap();
    for (a, b) in native.iter().zip(&avx2) {
        assert_eq!(a.source["isa"], "avx512-vnni");
        assert_eq!(b.source["isa"], "avx2");
        assert_eq!(
            a.expected, b.expected,
            "{}: XNNPACK's integers depend on the ISA",
            a.id
        );
    }
}

#[test]
fn the_last_convolution_hits_xnnpack_same_padding_underflow() {
    // Operator 11: a 3x1 stride-2 SAME convolution over a 4x4 input. TFLite's padding total in
    // width is -1; TF 2.21's XNNPACK wraps it around and returns the bias alone.
    let layer = load_layer(&format!("{}#11", model_path())).unwrap().layer;
    assert_eq!(
        engines::tflite::same_padding_underflow(&layer),
        Some(("width", -1))
    );
}

#[test]
fn layers_lists_every_operator() {
    let ops = tflite::list_operators(&model_path()).unwrap();
    assert_eq!(ops.len(), 14);
    let convs: Vec<usize> = ops
        .iter()
        .filter(|o| o.loadable.is_ok())
        .map(|o| o.index)
        .collect();
    assert_eq!(convs, (0..12).filter(|&i| i != 7).collect::<Vec<_>>());
    assert_eq!(ops[7].op, "ADD");
    assert!(
        ops[7]
            .loadable
            .as_ref()
            .unwrap_err()
            .contains("not a convolution")
    );
    assert_eq!(ops[0].op, "CONV_2D");
    assert_eq!(ops[1].op, "DEPTHWISE_CONV_2D");
    assert!(ops[0].summary.as_ref().unwrap().contains("padding same"));
}

#[test]
fn bad_operator_indices_are_clear_errors() {
    let m = model_path();
    let e = load_layer(&format!("{m}#7")).unwrap_err().to_string();
    assert!(e.contains("operator 7 is ADD"), "{e}");
    let e = load_layer(&format!("{m}#99")).unwrap_err().to_string();
    assert!(e.contains("has 14 operators"), "{e}");
    let e = load_layer(&format!("{m}#x")).unwrap_err().to_string();
    assert!(e.contains("operator index"), "{e}");
    let e = load_layer(&m).unwrap_err().to_string();
    assert!(e.contains("holds 11 convolutions"), "{e}");
}

#[test]
fn malformed_models_are_errors_never_panics() {
    let bytes = std::fs::read(model_path()).unwrap();
    let dir = std::env::temp_dir().join(format!("qconv-tflite-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.tflite").to_string_lossy().into_owned();
    let try_load = |data: &[u8]| {
        std::fs::write(&path, data).unwrap();
        let _ = tflite::list_operators(&path);
        load_layer(&format!("{path}#0")).err()
    };
    // Truncations: always an error naming the file.
    for cut in [0, 7, 8, 100, 1000, bytes.len() / 2, bytes.len() - 100] {
        let e = try_load(&bytes[..cut])
            .expect("truncated model accepted")
            .to_string();
        assert!(e.contains("bad.tflite"), "{e}");
    }
    // Corrupted bytes all over the file: errors or (for bytes that do not matter) layers, never
    // a panic.
    let mut rng = 0x1234_5678_u64;
    for _ in 0..300 {
        let mut b = bytes.clone();
        for _ in 0..4 {
            rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let i = (rng >> 33) as usize % b.len();
            b[i] = (rng >> 13) as u8;
        }
        let _ = try_load(&b);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
