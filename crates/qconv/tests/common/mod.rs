//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod onnx_build;

use qconv::engines::{EngineKind, exact};
use qconv::explain::JsonValue;
use qconv::layer::{Bias, ConvLayer};
use qconv::requant::Requantizer;

/// Checks the completeness property of one explanation's JSON; returns the number of (element,
/// engine) chains checked.
pub fn check_json(id: &str, layer: &ConvLayer, json: &JsonValue, engines: &[EngineKind]) -> usize {
    let ideal = (!layer.is_integer_output()).then(|| exact::requantizer(layer).unwrap());
    let names: Vec<String> = json["engines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), engines.len());
    let mut checked = 0;
    for el in json["elements"].as_array().unwrap() {
        let index: Vec<usize> = el["index"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let oc = index[1];
        let exact_acc = el["exact_acc"].as_i64().unwrap();
        let int_bias = match &layer.bias {
            Some(Bias::Int32(b)) => b[oc] as i64,
            _ => 0,
        };
        let values: Vec<i64> = names
            .iter()
            .map(|n| el["values"][n].as_i64().unwrap())
            .collect();
        assert!(
            values.iter().any(|&v| v != values[0]),
            "{}: listed element does not differ",
            id
        );
        for (name, &value) in names.iter().zip(&values) {
            let acc = el["acc"][name].as_i64().unwrap();
            let causes: Vec<&JsonValue> = el["causes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["engine"] == name.as_str())
                .collect();
            // Accumulator causes add up exactly.
            let delta: i64 = causes
                .iter()
                .map(|c| c["acc_delta"].as_i64().unwrap())
                .sum();
            assert_eq!(
                delta,
                acc - exact_acc,
                "{} {index:?} {name}: acc causes",
                id
            );
            // Rounding causes chain from the exactly rounded accumulator (an int32 output: the
            // accumulator itself) to the output.
            let mut at = match &ideal {
                Some(r) => r.trace(acc - int_bias, oc).unclamped,
                None => acc,
            };
            let mut seen_rounding = false;
            for c in &causes {
                let kind = c["kind"].as_str().unwrap();
                let known = [
                    "pair-saturation",
                    "weight-quantization",
                    "input-quantization",
                    "float-accumulation",
                    "bias-rounding",
                    "requant-rounding",
                    "output-clamp",
                    "int32-wrap",
                ];
                assert!(known.contains(&kind), "unknown cause {kind}");
                if kind == "pair-saturation" || kind == "int32-wrap" {
                    assert!(!seen_rounding, "accumulator causes come first");
                    assert_ne!(c["acc_delta"].as_i64().unwrap(), 0);
                    continue;
                }
                seen_rounding = true;
                assert_eq!(
                    c["acc_delta"].as_i64().unwrap(),
                    0,
                    "rounding causes do not move acc"
                );
                let from = c["detail"]["from"].as_i64().unwrap();
                let to = c["detail"]["to"].as_i64().unwrap();
                assert_eq!(
                    from, at,
                    "{} {index:?} {name}: {kind} starts where the chain is",
                    id
                );
                assert_ne!(from, to);
                at = to;
            }
            assert_eq!(
                at, value,
                "{} {index:?} {name}: the chain ends at the output",
                id
            );
            checked += 1;
        }
    }
    checked
}
