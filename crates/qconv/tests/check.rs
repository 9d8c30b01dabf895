//! `check` against brute force: on small layers, every input in the range is tried, and the
//! check must flag a layer exactly when some input saturates a pair, with the exact worst error.
//! On the corpus, it must flag every case where fbgemm's saturation changes the result.

use std::path::PathBuf;

use proptest::prelude::*;
use qconv::accumulate::{gather_row, pair_saturating_dot, weight_row, wrapping_dot};
use qconv::check::check;
use qconv::engines::{Accumulators, EngineKind, RunOptions, exact, run};
use qconv::geometry::ReductionOrder;
use qconv::io::golden::read_cases;
use qconv::{
    Activations, ConvLayer, ConvParams, DType, Isa, OutputQuant, Padding, WeightQuant, Weights,
};

#[derive(Debug, Clone)]
struct Small {
    c: usize,
    h: usize,
    w: usize,
    oc: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    weights: Vec<i32>,
    zp: i32,
    lo: i32,
    width: i32,
}

fn small() -> impl Strategy<Value = Small> {
    (
        1usize..=2,
        1usize..=3,
        1usize..=3,
        1usize..=2,
        1usize..=2,
        1usize..=2,
    )
        .prop_flat_map(|(c, h, w, oc, kh, kw)| {
            let n_weights = oc * c * kh * kw;
            let weight = prop_oneof![
                Just(-128i32),
                Just(127),
                -128i32..=-100,
                100i32..=127,
                -128i32..=127
            ];
            (
                Just((c, h, w, oc, [kh, kw])),
                prop::collection::vec(weight, n_weights),
                1usize..=2,
                1usize..=2,
                0usize..=1,
                0usize..=1,
                0i32..=255,
                prop_oneof![0i32..=255, 200i32..=255, 0i32..=10],
                0i32..=2,
            )
        })
        .prop_map(
            |((c, h, w, oc, kernel), weights, sh, sw, ph, pw, zp, lo, width)| Small {
                c,
                h,
                w,
                oc,
                kernel,
                stride: [sh, sw],
                pad: [ph, pw],
                weights,
                zp,
                lo: lo.min(255 - width),
                width,
            },
        )
        .prop_filter("non-empty output", |s| {
            s.h + 2 * s.pad[0] >= s.kernel[0] && s.w + 2 * s.pad[1] >= s.kernel[1]
        })
}

fn layer(s: &Small) -> ConvLayer {
    ConvLayer::new(
        "small",
        ConvParams {
            kernel: None,
            stride: s.stride,
            dilation: [1, 1],
            padding: Padding::symmetric(s.pad[0], s.pad[1]),
            groups: 1,
        },
        Activations {
            dtype: DType::Uint8,
            shape: [1, s.c, s.h, s.w],
            data: vec![s.lo; s.c * s.h * s.w],
            scale: Some(0.05),
            zero_point: s.zp,
        },
        Weights {
            dtype: DType::Int8,
            shape: [s.oc, s.c, s.kernel[0], s.kernel[1]],
            data: s.weights.clone(),
            quant: WeightQuant::per_tensor(0.01, 0),
        },
        None,
        OutputQuant {
            dtype: DType::Uint8,
            scale: Some(0.1),
            zero_point: 0,
            clamp: None,
        },
        false,
    )
    .unwrap()
}

/// Tries every input with values in `[lo, lo + width]`, one output element at a time (an
/// element's taps are distinct input elements, so its own taps can be enumerated alone), pairing
/// taps in `order`. Returns whether any pair saturates and the largest |saturated - exact|
/// accumulator.
fn brute_force(s: &Small, l: &ConvLayer, order: ReductionOrder) -> (bool, i64) {
    let g = &l.geometry;
    let k_len = g.reduction_len();
    let [_, oc_len, oh_len, ow_len] = g.output_shape();
    let (mut any, mut worst) = (false, 0i64);
    for oc in 0..oc_len {
        let w = weight_row(g, order, &l.weight.data, oc);
        for oh in 0..oh_len {
            for ow in 0..ow_len {
                // Mark which taps are inside the image: gather a row of markers.
                let marks: Vec<i32> = (0..(s.c * s.h * s.w) as i32).collect();
                let mut where_ = vec![-1i32; k_len];
                gather_row(g, order, &marks, -1, [0, 0, oh, ow], &mut where_);
                let free: Vec<usize> = (0..k_len).filter(|&k| where_[k] >= 0).collect();
                let choices = (s.width + 1) as usize;
                let combos = choices.pow(free.len() as u32);
                let mut row = vec![s.zp; k_len];
                for mut combo in 0..combos {
                    for &k in &free {
                        row[k] = s.lo + (combo % choices) as i32;
                        combo /= choices;
                    }
                    let saturated = row.chunks(2).zip(w.chunks(2)).any(|(a, b)| {
                        let sum: i32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                        !(-32768..=32767).contains(&sum)
                    });
                    any |= saturated;
                    let err = pair_saturating_dot(&row, &w) as i64 - wrapping_dot(&row, &w) as i64;
                    worst = worst.max(err.abs());
                }
            }
        }
    }
    (any, worst)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn check_agrees_with_brute_force(s in small()) {
        let l = layer(&s);
        let report = check(&l, EngineKind::Fbgemm, Isa::Avx2, Some((s.lo, s.lo + s.width)), false).unwrap();
        let (saturates, worst) = brute_force(&s, &l, ReductionOrder::TapMajor);
        // Never "safe" for a layer that can saturate, and never a false alarm.
        prop_assert_eq!(report.can_saturate(), saturates);
        let reported = report.channels.iter().map(|c| c.worst_error_acc).max().unwrap();
        prop_assert_eq!(reported, worst);
    }
}

/// The same small layer as an ONNX ConvInteger with int8 activations and uint8 weights, which
/// ONNX Runtime runs on its u8 x s8 kernel in channel-major pairs.
fn conv_integer(s: &Small) -> ConvLayer {
    let mut l = layer(s);
    let shift = |v: i32| v - 128;
    l.input.dtype = DType::Int8;
    l.input.data = l.input.data.iter().map(|&a| shift(a)).collect();
    l.input.zero_point = shift(l.input.zero_point);
    l.input.scale = None;
    l.weight.dtype = DType::Uint8;
    l.weight.data = l.weight.data.iter().map(|&w| w + 128).collect();
    l.weight.quant = WeightQuant {
        scales: None,
        zero_points: vec![128],
        per_channel: false,
    };
    l.output = OutputQuant {
        dtype: DType::Int32,
        scale: None,
        zero_point: 0,
        clamp: None,
    };
    l
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn onnxruntime_check_agrees_with_brute_force(s in small()) {
        let l = conv_integer(&s);
        let shifted = Small { lo: s.lo - 128, zp: s.zp - 128, ..s.clone() };
        let report = check(
            &l,
            EngineKind::OnnxRuntime,
            Isa::Avx2,
            Some((shifted.lo, shifted.lo + s.width)),
            false,
        )
        .unwrap();
        prop_assert_eq!(report.model.order, ReductionOrder::ChannelMajor);
        let (saturates, worst) = brute_force(&shifted, &l, ReductionOrder::ChannelMajor);
        prop_assert_eq!(report.can_saturate(), saturates);
        let reported = report.channels.iter().map(|c| c.worst_error_acc).max().unwrap();
        prop_assert_eq!(reported, worst);
    }
}

#[test]
fn check_flags_every_corpus_case_where_saturation_changes_fbgemm() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/golden");
    let (mut flagged, mut saturated_cases, mut safe) = (0, 0, 0);
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("pytorch-") {
            continue;
        }
        for case in read_cases(&path.to_string_lossy()).unwrap() {
            let layer = &case.layer;
            let out = run(EngineKind::Fbgemm, layer, &RunOptions::default()).unwrap();
            let Accumulators::Int32(fbgemm_acc) = &out.accumulators else {
                unreachable!()
            };
            let exact_acc = exact::accumulators(layer, &RunOptions::default()).unwrap();
            let saturated = fbgemm_acc
                .iter()
                .zip(&exact_acc)
                .any(|(&f, &e)| f as i64 != e);
            let report = check(layer, EngineKind::Fbgemm, Isa::Avx2, None, true).unwrap();
            if saturated {
                saturated_cases += 1;
                assert!(
                    report.can_saturate(),
                    "{}: saturates but not flagged",
                    case.id
                );
                assert_eq!(report.saturates_on_input(), Some(true), "{}", case.id);
            }
            if report.can_saturate() {
                flagged += 1;
            } else {
                safe += 1;
                assert!(!saturated);
            }
            // With 7-bit activations nothing can saturate.
            let seven_bit =
                check(layer, EngineKind::Fbgemm, Isa::Avx2, Some((0, 127)), false).unwrap();
            assert!(
                seven_bit
                    .channels
                    .iter()
                    .all(|c| c.max_sum <= 32767 && c.min_sum >= -32768)
                    || layer.input.zero_point > 127
            );
        }
    }
    eprintln!(
        "{saturated_cases} corpus cases saturate on their input; {flagged} flagged as able to, {safe} safe"
    );
    assert!(saturated_cases > 100);
}

#[test]
fn vnni_and_onednn_routes_are_safe_except_depthwise() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/golden");
    let seed = read_cases(&dir.join("pytorch-seed.jsonl.gz").to_string_lossy()).unwrap();
    let r = check(
        &seed[0].layer,
        EngineKind::Fbgemm,
        Isa::Avx512Vnni,
        None,
        true,
    )
    .unwrap();
    assert!(!r.can_saturate());
    let depthwise = read_cases(&dir.join("pytorch-depthwise.jsonl.gz").to_string_lossy()).unwrap();
    let dw = depthwise
        .iter()
        .find(|c| {
            qconv::engines::fbgemm::FbgemmPath::select(&c.layer.geometry, Isa::Avx512Vnni)
                == qconv::engines::fbgemm::FbgemmPath::Depthwise
        })
        .expect("a depthwise fast-path case");
    let r = check(&dw.layer, EngineKind::Fbgemm, Isa::Avx512Vnni, None, false).unwrap();
    assert!(
        r.model.saturating,
        "the depthwise kernel saturates on VNNI too"
    );
}

#[test]
fn check_flags_every_onnx_case_where_saturation_changes_onnxruntime() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/golden");
    let mut saturated_cases = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("onnx-")
        {
            continue;
        }
        for case in read_cases(&path.to_string_lossy()).unwrap() {
            let layer = &case.layer;
            let Ok(out) = run(EngineKind::OnnxRuntime, layer, &RunOptions::default()) else {
                continue; // ONNX Runtime refuses the layer
            };
            let Accumulators::Int32(ort_acc) = &out.accumulators else {
                unreachable!()
            };
            let saturated = ort_acc
                .iter()
                .zip(exact::accumulators(layer, &RunOptions::default()).unwrap())
                .any(|(&o, e)| o as i64 != e);
            let report = check(layer, EngineKind::OnnxRuntime, Isa::Avx2, None, true).unwrap();
            if saturated {
                saturated_cases += 1;
                assert!(
                    report.can_saturate(),
                    "{}: saturates but not flagged",
                    case.id
                );
                assert_eq!(report.saturates_on_input(), Some(true), "{}", case.id);
            }
            if !report.model.saturating {
                assert!(!report.can_saturate() && !saturated, "{}", case.id);
            }
        }
    }
    eprintln!("{saturated_cases} ONNX cases saturate in ONNX Runtime on their input");
    assert!(saturated_cases > 50);
}
