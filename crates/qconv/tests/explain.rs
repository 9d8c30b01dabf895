//! Explanations are complete: over the PyTorch golden corpus, for every pair of the PyTorch
//! engines plus `exact`, every differing element's causes account for the whole difference, as
//! the JSON form states it.

mod common;

use std::path::PathBuf;

use qconv::engines::{EngineKind, RunOptions, run};
use qconv::explain::{JsonValue, explain, explain_outputs};
use qconv::io::golden::{GoldenCase, read_cases};

const ENGINES: [EngineKind; 5] = [
    EngineKind::Exact,
    EngineKind::FloatPath,
    EngineKind::Fbgemm,
    EngineKind::X86,
    EngineKind::Qnnpack,
];

fn corpus() -> Vec<GoldenCase> {
    golden("pytorch-")
}

/// Every case of the shared golden files whose name starts with `prefix`.
fn golden(prefix: &str) -> Vec<GoldenCase> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/golden");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    paths.sort();
    paths
        .iter()
        .flat_map(|p| read_cases(&p.to_string_lossy()).unwrap())
        .collect()
}

#[test]
fn every_difference_is_accounted_for_on_the_corpus() {
    let cases = corpus();
    assert_eq!(cases.len(), 835);
    let (mut chains, mut explanations) = (0, 0);
    for case in &cases {
        let outputs: Vec<_> = ENGINES
            .iter()
            .map(|&e| run(e, &case.layer, &RunOptions::default()).unwrap())
            .collect();
        for a in 0..ENGINES.len() {
            for b in a + 1..ENGINES.len() {
                let pair = [outputs[a].clone(), outputs[b].clone()];
                let x = explain_outputs(&case.layer, &pair, &RunOptions::default(), &mut |_, _| {})
                    .unwrap();
                chains += common::check_json(
                    &case.id,
                    &case.layer,
                    &x.to_json(),
                    &[ENGINES[a], ENGINES[b]],
                );
                explanations += 1;
            }
        }
    }
    eprintln!("{explanations} explanations, {chains} (element, engine) chains checked");
    assert!(chains > 10_000, "the corpus has many differing elements");
}

#[test]
fn every_difference_is_accounted_for_on_the_onnx_corpus() {
    let engines = [EngineKind::Exact, EngineKind::Onnx, EngineKind::OnnxRuntime];
    let (mut chains, mut explanations) = (0, 0);
    for case in &golden("onnx-") {
        let Ok(outputs) = engines
            .iter()
            .map(|&e| run(e, &case.layer, &RunOptions::default()))
            .collect::<Result<Vec<_>, _>>()
        else {
            continue; // ONNX Runtime refuses the layer
        };
        for a in 0..engines.len() {
            for b in a + 1..engines.len() {
                let pair = [outputs[a].clone(), outputs[b].clone()];
                let x = explain_outputs(&case.layer, &pair, &RunOptions::default(), &mut |_, _| {})
                    .unwrap();
                chains += common::check_json(
                    &case.id,
                    &case.layer,
                    &x.to_json(),
                    &[engines[a], engines[b]],
                );
                explanations += 1;
            }
        }
    }
    eprintln!("{explanations} explanations, {chains} (element, engine) chains checked");
    assert!(chains > 10_000);
}

#[test]
fn the_forum_story() {
    let cases = corpus();
    let case = cases.iter().find(|c| c.id == "pytorch-seed-0000").unwrap();
    let x = explain(
        &case.layer,
        &[EngineKind::FloatPath, EngineKind::Fbgemm],
        &RunOptions::default(),
        &mut |_, _| {},
    )
    .unwrap();
    let text = qconv::explain::text(&x, 5, 100);
    assert!(
        text.contains(
            "two saturated int16 pairs, weights (-67, -97) and (-128, -125) times activation 200, \
             add +17864 to the exact accumulator -13861, giving 4003"
        ),
        "{text}"
    );
    let json = x.to_json();
    let el = &json["elements"][0];
    assert_eq!(el["exact_acc"], -13861);
    assert_eq!(el["acc"]["fbgemm(avx2)"], 4003);
    assert_eq!(el["values"]["fbgemm(avx2)"], 7);
    assert_eq!(el["values"]["float-path"], 0);
    let pairs: Vec<&JsonValue> = el["causes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "pair-saturation")
        .collect();
    assert_eq!(pairs.len(), 2);
    assert_eq!(pairs[0]["acc_delta"], 32);
    assert_eq!(pairs[1]["acc_delta"], 17832);
    assert_eq!(pairs[1]["detail"]["taps"][0]["weight_value"], -128);
}

#[test]
fn the_html_report_is_self_contained_and_complete() {
    let cases = corpus();
    let case = cases
        .iter()
        .find(|c| c.id == "pytorch-saturating-0031")
        .unwrap();
    let x = explain(
        &case.layer,
        &[EngineKind::Exact, EngineKind::Fbgemm],
        &RunOptions::default(),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(x.elements.len(), 447);
    let page = qconv::explain::html(&x, "description <&>", usize::MAX);
    assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
    // Nothing is fetched: no scripts, no links, no external images.
    for needle in ["<script", "src=", "href=", "url(", "@import"] {
        assert!(!page.contains(needle), "the page contains {needle}");
    }
    assert!(
        page.contains("description &lt;&amp;&gt;"),
        "text is escaped"
    );
    // One heatmap per output channel with one cell per output element, a histogram, the causes
    // and a row per differing element.
    assert_eq!(page.matches("class=\"map\"").count(), 10);
    assert_eq!(
        page.matches("<rect").count(),
        1400 + 23,
        "cells plus histogram bars"
    );
    assert!(page.contains("pair-saturation"));
    assert_eq!(page.matches("<tr><td class=\"l\">[").count(), 447);
    let tags = ["<svg", "</svg>", "<table", "</table>", "<ul", "</ul>"];
    assert_eq!(page.matches(tags[0]).count(), page.matches(tags[1]).count());
    assert_eq!(page.matches(tags[2]).count(), page.matches(tags[3]).count());
    assert_eq!(page.matches(tags[4]).count(), page.matches(tags[5]).count());
}
