//! `qconv vectors` round trip: write the vectors of TFLite layers in every format, read the files
//! back with parsers written here, and recompute the accumulators and outputs independently from
//! the files alone (the manifest's shapes, the input, weights, bias and requantization
//! parameters), as a hardware testbench would.

use std::path::{Path, PathBuf};

use qconv::ConvLayer;
use qconv::engines::narrow::{AccumulatorWidth, Overflow};
use qconv::engines::{EngineKind, RunOptions};
use qconv::io::golden::read_cases;
use qconv::io::load_layer;
use qconv::vectors::{VectorFormat, vectors, write};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Reads tensor `name` of the set in `dir` as i64 values (float32 as its bits), with its shape.
fn read_tensor(dir: &Path, manifest: &Value, name: &str) -> (Vec<i64>, Vec<usize>) {
    let entry = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in the manifest"));
    let shape: Vec<usize> = entry["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let dtype = entry["dtype"].as_str().unwrap();
    let bytes = std::fs::read(dir.join(entry["file"].as_str().unwrap())).unwrap();
    let format = manifest["format"].as_str().unwrap();
    let from_bits = |bits: u32| -> i64 {
        match dtype {
            "int8" => bits as u8 as i8 as i64,
            "uint8" => bits as u8 as i64,
            "int32" => bits as i32 as i64,
            "float32" => bits as i64,
            d => panic!("dtype {d}"),
        }
    };
    let from_text = |t: &str| -> i64 {
        let t = t.trim().trim_end_matches('f');
        if dtype == "float32" {
            t.parse::<f32>().unwrap().to_bits() as i64
        } else if t == "INT32_MIN" {
            i32::MIN as i64
        } else {
            t.parse::<i64>().unwrap()
        }
    };
    let values: Vec<i64> = match format {
        "hex" => String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| from_bits(u32::from_str_radix(l.trim(), 16).unwrap()))
            .collect(),
        "csv" => String::from_utf8(bytes)
            .unwrap()
            .lines()
            .flat_map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>())
            .map(|c| from_text(&c))
            .collect(),
        "c-header" => {
            let text = String::from_utf8(bytes).unwrap();
            let body = &text[text.find('{').unwrap() + 1..text.rfind('}').unwrap()];
            body.split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(from_text)
                .collect()
        }
        "npy" => {
            assert_eq!(&bytes[..6], b"\x93NUMPY");
            let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
            let size = if header.contains("'|i1'") || header.contains("'|u1'") {
                1
            } else {
                4
            };
            bytes[10 + header_len..]
                .chunks_exact(size)
                .map(|c| {
                    let mut b = [0u8; 4];
                    b[..size].copy_from_slice(c);
                    from_bits(u32::from_le_bytes(b))
                })
                .collect()
        }
        f => panic!("format {f}"),
    };
    assert_eq!(values.len(), shape.iter().product::<usize>(), "{name}");
    (values, shape)
}

fn srdhm(a: i64, b: i64) -> i64 {
    if a == i32::MIN as i64 && b == i32::MIN as i64 {
        return i32::MAX as i64;
    }
    let ab = a * b;
    let nudge = if ab >= 0 {
        1i64 << 30
    } else {
        1 - (1i64 << 30)
    };
    (ab + nudge) / (1i64 << 31)
}

fn rdbpot(x: i64, e: i64) -> i64 {
    // Round half away from zero of x / 2^e.
    let d = 1i64 << e;
    let q = x.abs() / d;
    let r = x.abs() % d;
    let q = if 2 * r >= d && e > 0 { q + 1 } else { q };
    if x < 0 { -q } else { q }
}

/// Recomputes the expected output from the files alone.
fn recompute(dir: &Path, width: Option<AccumulatorWidth>) -> (Vec<i64>, Vec<i64>) {
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let (x, xs) = read_tensor(dir, &manifest, "input");
    let (w, ws) = read_tensor(dir, &manifest, "weights");
    let (bias, _) = read_tensor(dir, &manifest, "bias");
    let (mult, _) = read_tensor(dir, &manifest, "requant_multiplier");
    let (shift, _) = read_tensor(dir, &manifest, "requant_shift");
    let (scale, _) = read_tensor(dir, &manifest, "requant_scale");
    let (_, ys) = read_tensor(dir, &manifest, "expected_output");
    let conv = &manifest["conv"];
    let u = |v: &Value| v.as_u64().unwrap() as usize;
    let (sh, sw) = (u(&conv["stride"][0]), u(&conv["stride"][1]));
    let (dh, dw) = (u(&conv["dilation"][0]), u(&conv["dilation"][1]));
    let (top, left) = (
        u(&conv["padding"]["top"]) as i64,
        u(&conv["padding"]["left"]) as i64,
    );
    let groups = u(&conv["groups"]);
    let q = &manifest["quantization"];
    let xzp = q["input_zero_point"].as_i64().unwrap();
    let yzp = q["output_zero_point"].as_i64().unwrap();
    let (lo, hi) = (
        q["output_min"].as_i64().unwrap(),
        q["output_max"].as_i64().unwrap(),
    );
    let engine = manifest["engine"].as_str().unwrap();
    let [n, c, h, wd] = [xs[0], xs[1], xs[2], xs[3]];
    let [o, ci, kh, kw] = [ws[0], ws[1], ws[2], ws[3]];
    let [_, _, oh, ow] = [ys[0], ys[1], ys[2], ys[3]];
    assert_eq!(c, ci * groups);
    let narrow = |v: i64| match width {
        None => v as i32 as i64,
        Some(w) => {
            let (min, max) = (-(1i64 << (w.bits - 1)), (1i64 << (w.bits - 1)) - 1);
            match w.overflow {
                Overflow::Saturate => v.clamp(min, max),
                Overflow::Wrap => (v - min).rem_euclid(1i64 << w.bits) + min,
            }
        }
    };
    let (mut accs, mut outs) = (Vec::new(), Vec::new());
    for b in 0..n {
        for oc in 0..o {
            let g = oc / (o / groups);
            for y in 0..oh {
                for xo in 0..ow {
                    let mut acc = narrow(bias[oc]);
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (y * sh + ky * dh) as i64 - top;
                            let ix = (xo * sw + kx * dw) as i64 - left;
                            if iy < 0 || ix < 0 || iy >= h as i64 || ix >= wd as i64 {
                                continue;
                            }
                            for i in 0..ci {
                                let xv =
                                    x[((b * c + g * ci + i) * h + iy as usize) * wd + ix as usize];
                                let wv = w[((oc * ci + i) * kh + ky) * kw + kx];
                                acc = narrow(acc + wv * (xv - xzp));
                            }
                        }
                    }
                    let acc32 = acc as i32 as i64;
                    let v = match engine {
                        "tflite" => {
                            let s = f32::from_bits(scale[oc] as u32);
                            let f = (acc32 as f32 * s).clamp((lo - yzp) as f32, (hi - yzp) as f32);
                            f.round_ties_even() as i64 + yzp
                        }
                        "tflite-reference" => {
                            let (m, s) = (mult[oc], shift[oc]);
                            let shifted = (acc32 * (1i64 << s.max(0))) as i32 as i64;
                            (rdbpot(srdhm(shifted, m), (-s).max(0)) + yzp).clamp(lo, hi)
                        }
                        "tflite-reference-single-rounding" => {
                            let (m, s) = (mult[oc], shift[oc]);
                            let total = 31 - s;
                            (((acc32 * m + (1i64 << (total - 1))) >> total) + yzp).clamp(lo, hi)
                        }
                        e => panic!("engine {e}"),
                    };
                    accs.push(acc32);
                    outs.push(v);
                }
            }
        }
    }
    let (expected, _) = read_tensor(dir, &manifest, "expected_output");
    let (acc_file, _) = read_tensor(dir, &manifest, "accumulator");
    assert_eq!(acc_file, accs, "{}: accumulators", dir.display());
    assert_eq!(expected, outs, "{}: outputs", dir.display());
    (outs, accs)
}

fn layers() -> Vec<ConvLayer> {
    let mut out = Vec::new();
    let model = repo().join("tests/data/models/tiny_mobilenet_int8.tflite");
    for op in [0, 1, 8, 10, 11] {
        out.push(
            load_layer(&format!("{}#{op}", model.display()))
                .unwrap()
                .layer,
        );
    }
    let golden = repo().join("tests/data/golden/tflite-mixed.jsonl.gz");
    for case in read_cases(&golden.to_string_lossy())
        .unwrap()
        .into_iter()
        .step_by(15)
    {
        out.push(case.layer);
    }
    out
}

fn temp_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("qconv-vectors-{}-{tag}", std::process::id()))
}

#[test]
fn vectors_round_trip_in_every_format() {
    let formats = [
        VectorFormat::Hex,
        VectorFormat::Csv,
        VectorFormat::Npy,
        VectorFormat::CHeader,
    ];
    let engines = [
        EngineKind::TfliteReference,
        EngineKind::TfliteReferenceSingleRounding,
        EngineKind::Tflite,
    ];
    let mut checked = 0;
    for (li, layer) in layers().iter().enumerate() {
        for (fi, &format) in formats.iter().enumerate() {
            let engine = engines[(li + fi) % engines.len()];
            let set = match vectors(layer, engine, &RunOptions::default(), format) {
                Ok(s) => s,
                Err(e) => panic!("{} {engine}: {e}", layer.name),
            };
            if !set.manifest["warnings"].as_array().unwrap().is_empty() {
                // XNNPACK's wrapped-around SAME padding (TFLite 2.21): the vectors are what it
                // computes, which no formula over the files reproduces; the manifest says so.
                assert!(
                    set.manifest["route"]
                        .as_str()
                        .unwrap()
                        .contains("wraps around")
                );
                continue;
            }
            let dir = temp_dir(&format!("{li}-{fi}"));
            write(&dir.to_string_lossy(), &set).unwrap();
            let (outs, _) = recompute(&dir, None);
            let run = qconv::engines::run(engine, layer, &RunOptions::default()).unwrap();
            let values: Vec<i64> = run.values.iter().map(|&v| v as i64).collect();
            assert_eq!(outs, values, "{} {engine} {format:?}", layer.name);
            std::fs::remove_dir_all(&dir).unwrap();
            checked += 1;
        }
    }
    assert!(checked >= 20);
}

#[test]
fn narrow_accumulators_round_trip_and_differ_from_int32() {
    let model = repo().join("tests/data/models/tiny_mobilenet_int8.tflite");
    let layer = load_layer(&format!("{}#9", model.display())).unwrap().layer;
    for overflow in [Overflow::Saturate, Overflow::Wrap] {
        let width = AccumulatorWidth::new(18, overflow).unwrap();
        let options = RunOptions {
            accumulator: Some(width),
            ..RunOptions::default()
        };
        let set = vectors(
            &layer,
            EngineKind::TfliteReference,
            &options,
            VectorFormat::Hex,
        )
        .unwrap();
        assert_eq!(set.manifest["accumulator"]["bits"], 18);
        let dir = temp_dir(&format!("narrow-{}", overflow.name()));
        write(&dir.to_string_lossy(), &set).unwrap();
        let (narrow, _) = recompute(&dir, Some(width));
        std::fs::remove_dir_all(&dir).unwrap();
        let full = qconv::engines::run(EngineKind::TfliteReference, &layer, &RunOptions::default())
            .unwrap();
        let differing = narrow
            .iter()
            .zip(&full.values)
            .filter(|(a, b)| **a != **b as i64)
            .count();
        assert!(differing > 0, "an 18-bit accumulator changes this layer");
    }
}

#[test]
fn vectors_refuse_engines_without_integer_requantization() {
    let layer = layers().remove(0);
    let e = vectors(
        &layer,
        EngineKind::Fbgemm,
        &RunOptions::default(),
        VectorFormat::Hex,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("TFLite engines"), "{e}");
}
