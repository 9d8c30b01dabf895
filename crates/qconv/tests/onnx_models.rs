//! Real models end to end: a small CNN quantized by ONNX Runtime's `quantize_static` in QOperator
//! and QDQ formats (`tests/data/models`, made by `tools/models/gen_models.py`), with every
//! convolution node's input and output as ONNX Runtime 1.32 computed them on AVX-512-VNNI, and on
//! AVX2 and AVX-512 without VNNI (CPUID-masked). For every node: qconv predicts whether ONNX Runtime fuses it, its
//! `onnxruntime` model reproduces ONNX Runtime's output bit for bit on the recorded ISA, and
//! `explain` accounts for every element where `onnx` and `onnxruntime` differ.

mod common;

use std::path::{Path, PathBuf};

use qconv::engines::{EngineKind, RunOptions, run};
use qconv::explain::explain_outputs;
use qconv::io::npy::{self, NpyData};
use qconv::io::onnx::{OnnxModel, OrtExecution};
use qconv::io::{self, InputPolicy};
use qconv::{Error, Isa};
use serde_json::Value;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/models")
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(models_dir().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn path_of(rel: &str) -> String {
    models_dir().join(rel).to_string_lossy().into_owned()
}

fn read_ints(path: &str) -> Vec<i64> {
    let a = npy::parse(path, &std::fs::read(path).unwrap()).unwrap();
    match a.data {
        NpyData::Int(v) => v,
        NpyData::Float(_) => panic!("{path}: float data"),
    }
}

/// One captured node of one model on one ISA.
struct Case<'a> {
    model: &'a OnnxModel,
    model_path: String,
    isa: Isa,
    rec: &'a Value,
}

/// Calls `f` on every captured node of every fixture model and ISA.
fn for_each_case(mut f: impl FnMut(&Case)) -> usize {
    let manifest = manifest();
    let mut count = 0;
    for m in manifest["models"].as_array().unwrap() {
        let model_path = path_of(m["file"].as_str().unwrap());
        let model = OnnxModel::read(&model_path).unwrap();
        for capture in m["captures"].as_array().unwrap() {
            let isa: Isa = capture["isa"].as_str().unwrap().parse().unwrap();
            for rec in capture["nodes"].as_array().unwrap() {
                f(&Case {
                    model: &model,
                    model_path: model_path.clone(),
                    isa,
                    rec,
                });
                count += 1;
            }
        }
    }
    count
}

#[test]
fn the_fixtures_cover_both_formats_both_schemes_and_both_isas() {
    let manifest = manifest();
    let models = manifest["models"].as_array().unwrap();
    let has = |fmt: &str, pc: bool| {
        models
            .iter()
            .any(|m| m["format"] == fmt && m["per_channel"] == pc)
    };
    assert!(has("QOperator", false) && has("QOperator", true));
    assert!(has("QDQ", false) && has("QDQ", true));
    for m in models {
        let isas: Vec<&str> = m["captures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["isa"].as_str().unwrap())
            .collect();
        assert_eq!(isas, ["avx512-vnni", "avx2", "avx512"], "{}", m["name"]);
        let size = std::fs::metadata(path_of(m["file"].as_str().unwrap()))
            .unwrap()
            .len();
        assert!(size < 4 << 20, "{} is {size} bytes", m["name"]);
    }
}

fn summary(c: &(String, String, usize, usize, usize)) -> String {
    format!(
        "{} on {}: {} of {} nodes bit for bit{}",
        Path::new(&c.0).file_name().unwrap().to_string_lossy(),
        c.1,
        c.2,
        c.3,
        if c.4 > 0 {
            format!(
                ", {} not fused by ONNX Runtime (float Conv; exact within one step)",
                c.4
            )
        } else {
            String::new()
        }
    )
}

#[test]
fn onnxruntime_reproduces_every_conv_node_of_the_real_models() {
    let mut failures: Vec<String> = Vec::new();
    let (mut fused, mut unfused, mut elements, mut saturated) = (0, 0, 0usize, 0usize);
    let mut per_model: Vec<String> = Vec::new();
    // (model, isa, nodes bit for bit, nodes, unfused nodes)
    let mut current = (String::new(), String::new(), 0usize, 0usize, 0usize);
    let cases = for_each_case(|c| {
        let key = (c.model_path.clone(), c.isa.name().to_string());
        if (current.0.clone(), current.1.clone()) != key {
            if !current.0.is_empty() {
                per_model.push(summary(&current));
            }
            current = (key.0, key.1, 0, 0, 0);
        }
        current.3 += 1;
        let index = c.rec["index"].as_u64().unwrap() as usize;
        let name = c.rec["name"].as_str().unwrap();
        let id = format!(
            "{}#{name} on {}",
            Path::new(&c.model_path)
                .file_name()
                .unwrap()
                .to_string_lossy(),
            c.isa
        );
        let nodes = c.model.conv_nodes().unwrap();
        let node = &nodes[index];
        assert_eq!(node.name, name, "{id}: node order");
        let recorded_fused = c.rec["fused"].as_bool().unwrap();
        let predicted_fused = !matches!(node.ort, OrtExecution::NotFused(_));
        if predicted_fused != recorded_fused {
            failures.push(format!(
                "{id}: qconv predicts {:?}, ONNX Runtime {}",
                node.ort,
                if recorded_fused {
                    "fused it"
                } else {
                    "left it unfused"
                }
            ));
            return;
        }
        let input_path = path_of(c.rec["input"].as_str().unwrap());
        let expected = read_ints(&path_of(c.rec["output"].as_str().unwrap()));
        let input = io::read_node_input(&input_path, node).unwrap();
        let layer = node.layer(c.model, Some(&input)).unwrap();
        let options = RunOptions {
            isa: Some(c.isa),
            ..RunOptions::default()
        };
        if !recorded_fused {
            unfused += 1;
            current.4 += 1;
            // ONNX Runtime runs a float convolution here, which qconv does not model: the engine
            // is refused, and the exact result lies within one step of ONNX Runtime's.
            let loaded = io::load_layer_with(
                &format!("{}#{name}", c.model_path),
                Some(&input_path),
                InputPolicy::Required,
            )
            .unwrap();
            let e = loaded.run(EngineKind::OnnxRuntime, &options).unwrap_err();
            assert!(matches!(e, Error::NotModelled { .. }), "{id}: {e}");
            let exact = run(EngineKind::Exact, &layer, &options).unwrap();
            let off = exact
                .values
                .iter()
                .zip(&expected)
                .map(|(&v, &e)| (v as i64 - e).abs())
                .max()
                .unwrap();
            assert!(
                off <= 1,
                "{id}: exact is {off} steps from ONNX Runtime's float conv"
            );
            return;
        }
        fused += 1;
        let out = run(EngineKind::OnnxRuntime, &layer, &options).unwrap();
        // A node ONNX Runtime runs as uint8 gives uint8 values; the model's tensor is int8.
        let shift = if node.ort == OrtExecution::FusedAsUint8 {
            128
        } else {
            0
        };
        let got: Vec<i64> = out.values.iter().map(|&v| v as i64 - shift).collect();
        assert_eq!(got.len(), expected.len(), "{id}: output size");
        let wrong: Vec<usize> = (0..got.len()).filter(|&i| got[i] != expected[i]).collect();
        elements += got.len();
        if !c.isa.has_vnni() {
            // Elements only the saturating model gets right: with VNNI's exact accumulation the
            // same layer gives something else.
            let vnni = RunOptions {
                isa: Some(Isa::Avx512Vnni),
                ..RunOptions::default()
            };
            let exact_acc = run(EngineKind::OnnxRuntime, &layer, &vnni).unwrap();
            saturated += exact_acc
                .values
                .iter()
                .zip(&out.values)
                .filter(|(a, b)| a != b)
                .count();
        }
        if wrong.is_empty() {
            current.2 += 1;
        } else {
            let i = wrong[0];
            failures.push(format!(
                "{id}: {} of {} elements differ; first at {:?}: ONNX Runtime {}, qconv {} ({})",
                wrong.len(),
                got.len(),
                layer.geometry.output_coords(i),
                expected[i],
                got[i],
                out.path
            ));
        }
    });
    per_model.push(summary(&current));
    for line in &per_model {
        eprintln!("{line}");
    }
    eprintln!(
        "{cases} captured nodes: {fused} fused checked bit for bit ({elements} elements, \
         {saturated} of them changed by int16 pair saturation), {unfused} unfused (float)"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(cases, 7 * 3 * 12);
    assert_eq!((fused, unfused), (7 * 3 * 12 - 3 * 6, 3 * 6));
    assert!(
        saturated > 1000,
        "the AVX2 captures exercise pair saturation"
    );
}

#[test]
fn explain_accounts_for_every_onnx_onnxruntime_difference_on_the_real_models() {
    let (mut chains, mut explained) = (0, 0);
    for_each_case(|c| {
        if !c.rec["fused"].as_bool().unwrap() {
            return;
        }
        let nodes = c.model.conv_nodes().unwrap();
        let node = &nodes[c.rec["index"].as_u64().unwrap() as usize];
        let input = io::read_node_input(&path_of(c.rec["input"].as_str().unwrap()), node).unwrap();
        let layer = node.layer(c.model, Some(&input)).unwrap();
        let options = RunOptions {
            isa: Some(c.isa),
            ..RunOptions::default()
        };
        let outputs = [
            run(EngineKind::Onnx, &layer, &options).unwrap(),
            run(EngineKind::OnnxRuntime, &layer, &options).unwrap(),
        ];
        let x = explain_outputs(&layer, &outputs, &options, &mut |_, _| {}).unwrap();
        let id = format!("{}#{} on {}", c.model_path, node.label(), c.isa);
        chains += common::check_json(
            &id,
            &layer,
            &x.to_json(),
            &[EngineKind::Onnx, EngineKind::OnnxRuntime],
        );
        explained += 1;
    });
    eprintln!("{explained} node explanations, {chains} (element, engine) chains checked");
    assert!(chains > 10_000, "{chains}");
}

#[test]
fn every_fixture_model_lists_twelve_convolutions_and_checks_without_data() {
    for m in manifest()["models"].as_array().unwrap() {
        let model = OnnxModel::read(&path_of(m["file"].as_str().unwrap())).unwrap();
        let nodes = model.conv_nodes().unwrap();
        assert_eq!(nodes.len(), 12, "{}", m["name"]);
        for n in &nodes {
            assert!(
                n.static_input_shape().is_some(),
                "{}: {}",
                m["name"],
                n.label()
            );
        }
        let isas = qconv::model_check::default_isas(EngineKind::OnnxRuntime);
        let report =
            qconv::model_check::check_model(&model, EngineKind::OnnxRuntime, &isas, None).unwrap();
        let vnni = isas.iter().position(|&i| i == Isa::Avx512Vnni).unwrap();
        let avx2 = isas.iter().position(|&i| i == Isa::Avx2).unwrap();
        for n in &report.nodes {
            assert!(
                !n.verdicts[vnni].can_saturate(),
                "{}: VNNI is exact",
                n.node.label()
            );
        }
        let u8s8 = m["activations"] == "uint8";
        assert_eq!(
            report.nodes.iter().any(|n| n.verdicts[avx2].can_saturate()),
            u8s8 || m["name"] == "qdq-s8s8-pt",
            "{}: u8 x s8 GEMMs can saturate on AVX2; s8 x s8 QLinearConv cannot",
            m["name"]
        );
        let text = qconv::model_check::render_model_check(&report);
        assert!(text.contains(&nodes[0].name), "{text}");
    }
}
