//! The `qconv` binary end to end: results, formats, and bad input (exit code 2, one line naming
//! the file and the field or line, nothing written, no panic).

mod common;

use std::path::Path;
use std::process::Command;

use common::{assert_user_error, qconv, repo, scratch};

fn forum() -> String {
    repo()
        .join("examples/forum-5x5.toml")
        .to_string_lossy()
        .into_owned()
}

fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> String {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p.to_string_lossy().into_owned()
}

const LAYER: &str = r#"name = "small"
[conv]
padding = [1, 1]
[input]
dtype = "uint8"
shape = [1, 2, 3, 3]
scale = 0.05
zero_point = 10
data = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 255]
[weight]
dtype = "int8"
shape = [2, 2, 2, 2]
scale = [0.01, 0.02]
zero_point = 0
data = [1, -2, 3, -4, 5, -6, 7, -8, 127, -128, 0, 1, 2, 3, 4, 5]
[bias]
data = [0.5, -0.25]
[output]
dtype = "uint8"
scale = 0.1
zero_point = 5
"#;

/// Writes `LAYER` with `from` replaced by `to`, runs `qconv run` with an output file, and checks
/// the error and that nothing was written.
fn bad_layer(test: &str, from: &str, to: &str, needles: &[&str]) {
    assert!(LAYER.contains(from), "{test}: `{from}` not in the layer");
    let dir = scratch(test);
    let path = write(&dir, "layer.toml", LAYER.replacen(from, to, 1));
    let out = dir.join("out.csv");
    let out_s = out.to_string_lossy().into_owned();
    let mut all = vec!["layer.toml"];
    all.extend_from_slice(needles);
    assert_user_error(&["run", &path, "--output", &out_s], &all);
    assert!(!out.exists(), "{test}: an output was written");
}

#[test]
fn forum_compare_shows_every_engine() {
    let (code, stdout, stderr) = qconv(&["compare", &forum()]);
    assert_eq!(code, 0, "{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("[0,0,0,0]"))
        .expect("a row for the one output element");
    let cols: Vec<&str> = row.split_whitespace().collect();
    // index, exact, float-path, fbgemm(avx2), x86(avx2), qnnpack, exact real value
    assert_eq!(&cols[..6], &["[0,0,0,0]", "0", "0", "7", "7", "0"], "{row}");
    assert!(cols[6].starts_with("-24.63"), "{row}");
    assert!(stdout.contains("fbgemm(avx2)"), "{stdout}");
    assert!(stdout.contains("1 of 1 output elements differ"), "{stdout}");
    assert!(
        stdout.contains("fbgemm: the model matches the recorded result on 1 of 1"),
        "{stdout}"
    );
}

#[test]
fn forum_on_vnni_is_exact() {
    let (code, stdout, _) = qconv(&[
        "run",
        &forum(),
        "--engine",
        "fbgemm",
        "--isa",
        "avx512-vnni",
    ]);
    assert_eq!(code, 0);
    assert!(stdout.contains("exact int32 (vpdpbusd)"), "{stdout}");
    assert_eq!(stdout.lines().last().unwrap().trim(), "0");
    let (_, stdout, _) = qconv(&["run", &forum(), "--engine", "fbgemm"]);
    assert_eq!(stdout.lines().last().unwrap().trim(), "7");
}

#[test]
fn run_writes_csv_npy_and_json() {
    let dir = scratch("formats");
    let layer = write(&dir, "layer.toml", LAYER);
    let (_, table, _) = qconv(&["run", &layer, "--engine", "qnnpack"]);
    let printed: Vec<String> = table
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(","))
        .collect();
    assert_eq!(printed.len(), 8, "{table}"); // 2 channels x 4 rows
    for ext in ["csv", "npy", "json"] {
        let out = dir
            .join(format!("out.{ext}"))
            .to_string_lossy()
            .into_owned();
        let (code, _, stderr) = qconv(&["run", &layer, "--engine", "qnnpack", "-o", &out]);
        assert_eq!(code, 0, "{stderr}");
        let bytes = std::fs::read(&out).unwrap();
        match ext {
            "csv" => {
                let csv = String::from_utf8(bytes).unwrap();
                assert_eq!(csv.lines().collect::<Vec<_>>(), printed);
            }
            "npy" => {
                let a = qconv::io::npy::parse(&out, &bytes).unwrap();
                assert_eq!(a.shape, vec![1, 2, 4, 4]);
                let qconv::io::npy::NpyData::Int(v) = a.data else {
                    panic!("integers")
                };
                let flat: Vec<String> = v.iter().map(|x| x.to_string()).collect();
                assert_eq!(flat.join(","), printed.join(","));
            }
            _ => {
                let j: serde_json_value::Value = serde_json_value::from_slice(&bytes);
                assert_eq!(j.shape, vec![1, 2, 4, 4]);
                assert_eq!(j.engine, "qnnpack");
                let flat: Vec<String> = j.data.iter().map(|x| x.to_string()).collect();
                assert_eq!(flat.join(","), printed.join(","));
            }
        }
    }
}

/// A minimal reader for the JSON output, so the test does not depend on serde directly.
mod serde_json_value {
    pub struct Value {
        pub engine: String,
        pub shape: Vec<usize>,
        pub data: Vec<i64>,
    }

    fn list(text: &str, key: &str) -> Vec<i64> {
        let start = text.find(&format!("\"{key}\"")).unwrap();
        let open = start + text[start..].find('[').unwrap();
        let close = open + text[open..].find(']').unwrap();
        text[open + 1..close]
            .split(',')
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect()
    }

    pub fn from_slice(bytes: &[u8]) -> Value {
        let text = std::str::from_utf8(bytes).unwrap();
        let e = text.find("\"engine\": \"").unwrap() + 11;
        let engine = text[e..e + text[e..].find('"').unwrap()].to_string();
        Value {
            engine,
            shape: list(text, "shape")
                .into_iter()
                .map(|v| v as usize)
                .collect(),
            data: list(text, "data"),
        }
    }
}

#[test]
fn conformance_reports_failures_and_exit_codes() {
    let golden = repo().join("tests/data/golden/pytorch-seed.jsonl.gz");
    let golden = golden.to_string_lossy();
    let (code, stdout, _) = qconv(&["conformance", "--engine", "fbgemm", &golden]);
    assert_eq!((code, stdout.as_str()), (0, "1 passed, 0 failed\n"));
    // The exact engine against fbgemm's results: one failing case.
    let (code, stdout, _) = qconv(&[
        "conformance",
        "--engine",
        "exact",
        "--expect",
        "fbgemm",
        &golden,
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        stdout,
        "FAIL pytorch-seed-0000: 1 of 1 elements differ; first at [0,0,0,0]: expected 7, got 0\n\
         0 passed, 1 failed\n"
    );
    // No key in the file: skipped.
    let (code, stdout, _) = qconv(&["conformance", "--engine", "exact", &golden]);
    assert_eq!(
        (code, stdout.as_str()),
        (0, "0 passed, 0 failed, 1 skipped\n")
    );
    // The AVX2 result does not hold on a modelled VNNI CPU.
    let (code, stdout, _) = qconv(&[
        "conformance",
        "--engine",
        "fbgemm",
        "--isa",
        "avx512-vnni",
        &golden,
    ]);
    assert_eq!(code, 1);
    assert!(stdout.ends_with("0 passed, 1 failed\n"), "{stdout}");
}

#[test]
fn a_case_of_a_collection_is_a_layer() {
    let golden = repo().join("tests/data/golden/pytorch-mixed.jsonl.gz");
    let spec = format!("{}#pytorch-mixed-0003", golden.to_string_lossy());
    let (code, stdout, stderr) = qconv(&["compare", &spec, "--engines", "exact,fbgemm"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("fbgemm: the model matches the recorded result on"),
        "{stdout}"
    );
    let whole = golden.to_string_lossy().into_owned();
    assert_user_error(
        &["run", &whole],
        &["pytorch-mixed.jsonl.gz", "holds 300 cases", "#ID"],
    );
    let missing = format!("{whole}#nope");
    assert_user_error(&["run", &missing], &["no case with id `nope`"]);
}

#[test]
fn missing_files() {
    assert_user_error(
        &["run", "no/such/layer.toml"],
        &["no/such/layer.toml", "No such file"],
    );
    bad_layer(
        "missing_tensor_file",
        "data = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 255]",
        "file = \"nope.npy\"",
        &["field `input.file`", "nope.npy", "No such file"],
    );
    assert_user_error(
        &["run", "layer.yaml"],
        &["layer.yaml", "unknown layer format"],
    );
}

#[test]
fn malformed_toml() {
    bad_layer("toml_syntax", "[conv]", "[conv", &["line 2"]);
    bad_layer(
        "toml_type",
        "scale = 0.05",
        "scale = \"big\"",
        &["line 7", "field `input.scale`"],
    );
    bad_layer(
        "toml_unknown_field",
        "padding = [1, 1]",
        "paddding = [1, 1]",
        &["unknown field `paddding`"],
    );
    bad_layer(
        "toml_missing",
        "dtype = \"int8\"\n",
        "",
        &["weight", "missing field `dtype`"],
    );
    bad_layer(
        "toml_bad_dtype",
        "dtype = \"int8\"",
        "dtype = \"float16\"",
        &["field `weight.dtype`", "float16"],
    );
    bad_layer(
        "toml_two_sources",
        "zero_point = 10",
        "zero_point = 10\nfill = 3",
        &["field `input`", "exactly one of"],
    );
}

#[test]
fn invalid_scales() {
    for (value, shown) in [
        ("0.0", "got 0"),
        ("-0.05", "got -0.05"),
        ("nan", "got NaN"),
        ("inf", "got inf"),
    ] {
        bad_layer(
            &format!("input_scale_{shown}"),
            "scale = 0.05",
            &format!("scale = {value}"),
            &["field `input.scale`", "finite and > 0", shown],
        );
    }
    bad_layer(
        "weight_scale",
        "scale = [0.01, 0.02]",
        "scale = [0.01, 0.0]",
        &["field `weight.scale[1]`"],
    );
    bad_layer(
        "output_scale",
        "scale = 0.1",
        "scale = -inf",
        &["field `output.scale`", "got -inf"],
    );
}

#[test]
fn zero_points_outside_the_dtype() {
    bad_layer(
        "input_zp",
        "zero_point = 10",
        "zero_point = 256",
        &["field `input.zero_point`", "outside uint8"],
    );
    bad_layer(
        "weight_zp",
        "zero_point = 0\n",
        "zero_point = -129\n",
        &["field `weight.zero_point[0]`", "outside int8"],
    );
    bad_layer(
        "output_zp",
        "zero_point = 5",
        "zero_point = -1",
        &["field `output.zero_point`", "outside uint8"],
    );
}

#[test]
fn data_outside_the_dtype() {
    bad_layer(
        "input_data",
        "160, 255]",
        "160, 256]",
        &["field `input.data`", "element 17 is 256", "uint8"],
    );
    bad_layer(
        "weight_data",
        "127, -128, 0",
        "127, -129, 0",
        &["field `weight.data`", "element 9 is -129"],
    );
    bad_layer(
        "not_integer",
        "160, 255]",
        "160, 25.5]",
        &["field `input.data[17]`", "invalid type"],
    );
}

#[test]
fn shape_mismatches() {
    bad_layer(
        "data_len",
        "160, 255]",
        "160]",
        &["field `input.data`", "has 17 elements", "needs 18"],
    );
    bad_layer(
        "weight_dims",
        "shape = [2, 2, 2, 2]",
        "shape = [2, 1, 2, 2]",
        &["field `weight.shape`", "expected input channels / groups"],
    );
    bad_layer(
        "groups",
        "padding = [1, 1]",
        "padding = [1, 1]\ngroups = 3",
        &["conv.groups"],
    );
    bad_layer(
        "kernel",
        "padding = [1, 1]",
        "padding = [1, 1]\nkernel = [3, 3]",
        &["field `conv.kernel`"],
    );
    bad_layer(
        "per_channel_scales",
        "scale = [0.01, 0.02]",
        "scale = [0.01, 0.02, 0.03]",
        &["field `weight.scale`", "3 values", "expected 2"],
    );
    bad_layer(
        "bias_len",
        "data = [0.5, -0.25]",
        "data = [0.5]",
        &["field `bias.data`", "expected one per output channel (2)"],
    );
    bad_layer(
        "padding_form",
        "padding = [1, 1]",
        "padding = [1, 1, 1]",
        &["field `conv.padding`", "3 values"],
    );
}

#[test]
fn empty_outputs_and_absurd_sizes() {
    bad_layer(
        "empty",
        "padding = [1, 1]",
        "padding = [0, 0]\ndilation = [4, 4]",
        &["empty output"],
    );
    bad_layer(
        "stride0",
        "padding = [1, 1]",
        "padding = [1, 1]\nstride = [0, 1]",
        &["conv.stride[0]", "> 0"],
    );
    let dir = scratch("absurd_shape");
    let layer = LAYER
        .replacen("shape = [1, 2, 3, 3]", "shape = [100000, 2, 100000, 100000]", 1)
        .replacen(
            "data = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 255]",
            "fill = 1",
            1,
        );
    let path = write(&dir, "layer.toml", layer);
    assert_user_error(&["run", &path], &["layer.toml", "input.shape", "more than"]);
}

#[test]
fn malformed_csv() {
    let dir = scratch("csv");
    let layer = LAYER.replacen(
        "data = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 255]",
        "file = \"input.csv\"",
        1,
    );
    let path = write(&dir, "layer.toml", &layer);
    write(
        &dir,
        "input.csv",
        "0,10,20\n30,40,50\n60,70,80\n90,100,110\n120,130,140\n150,160,255\n",
    );
    let (code, _, stderr) = qconv(&["run", &path]);
    assert_eq!(code, 0, "{stderr}");
    write(&dir, "input.csv", "0,10,20\n30,40\n");
    assert_user_error(
        &["run", &path],
        &["input.csv", "line 2", "expected 3 values"],
    );
    write(&dir, "input.csv", "0,10,20\n30,x,50\n");
    assert_user_error(
        &["run", &path],
        &["input.csv", "line 2, column 2", "`x` is not a number"],
    );
    write(&dir, "input.csv", "0,10,20\n30,40,50\n");
    assert_user_error(
        &["run", &path],
        &["input.csv", "found 2 rows", "needs 6 lines"],
    );
    write(
        &dir,
        "input.csv",
        "0,10,20\n30,40,50\n60,70,80\n90,100,110\n120,130,140\n150,160,256\n",
    );
    assert_user_error(&["run", &path], &["layer.toml", "input.data", "256"]);
}

#[test]
fn malformed_npy() {
    let dir = scratch("npy");
    let layer = LAYER.replacen(
        "data = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 255]",
        "file = \"input.npy\"",
        1,
    );
    let path = write(&dir, "layer.toml", &layer);
    let values: Vec<i32> = (0..18).map(|i| i * 10).collect();
    let good = qconv::io::npy::encode(qconv::DType::Uint8, &[1, 2, 3, 3], &values);
    write(&dir, "input.npy", &good);
    let (code, _, stderr) = qconv(&["run", &path]);
    assert_eq!(code, 0, "{stderr}");
    write(&dir, "input.npy", &good[..good.len() - 5]);
    assert_user_error(&["run", &path], &["input.npy", "truncated"]);
    write(&dir, "input.npy", b"PK\x03\x04 not numpy");
    assert_user_error(&["run", &path], &["input.npy", "not an .npy file"]);
    let other = qconv::io::npy::encode(qconv::DType::Uint8, &[1, 2, 9], &values);
    write(&dir, "input.npy", &other);
    assert_user_error(
        &["run", &path],
        &["field `input.shape`", "the file holds shape [1, 2, 9]"],
    );
}

#[test]
fn malformed_json() {
    let dir = scratch("json");
    let seed = repo().join("tests/data/golden/pytorch-seed.jsonl.gz");
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2_free_gunzip(&std::fs::read(seed).unwrap()).as_slice(),
        &mut text,
    )
    .unwrap();
    let line = text.trim_end();
    let two = format!("{line}\n{{\"id\": \"broken\", \n");
    let path = write(&dir, "cases.jsonl", two);
    assert_user_error(
        &["conformance", "--engine", "fbgemm", &path],
        &["cases.jsonl", "line 2"],
    );
    let wrong_type = line.replace("\"zero_point\": 33", "\"zero_point\": \"33\"");
    let path = write(&dir, "case.json", wrong_type);
    assert_user_error(
        &["run", &path],
        &["case.json", "field `input.zero_point`", "invalid type"],
    );
    let bad_scale = line.replace("\"scale\": 0.012728", "\"scale\": 0.0");
    let path = write(&dir, "scale.jsonl", bad_scale);
    assert_user_error(
        &["run", &path],
        &["scale.jsonl", "line 1", "input.scale", "finite and > 0"],
    );
    let bad_expected = line.replace("\"fbgemm\": [7]", "\"fbgemm\": [7, 8]");
    let path = write(&dir, "expected.jsonl", bad_expected);
    assert_user_error(
        &["conformance", "--engine", "fbgemm", &path],
        &["expected.fbgemm", "the output has 1"],
    );
    let path = write(&dir, "empty.jsonl", "\n");
    assert_user_error(&["conformance", &path], &["empty.jsonl", "no cases"]);
}

/// The seed file is gzip; this test reads it through the library's own reader instead of a
/// gzip dependency.
fn flate2_free_gunzip(_bytes: &[u8]) -> Vec<u8> {
    let case = &qconv::io::golden::read_cases(
        &repo()
            .join("tests/data/golden/pytorch-seed.jsonl.gz")
            .to_string_lossy(),
    )
    .unwrap()[0];
    // Rebuild the line from the case: the fields this test edits are written the same way.
    let l = &case.layer;
    format!(
        "{{\"id\": \"{}\", \"source\": {{\"framework\": \"pytorch\", \"isa\": \"avx2\"}}, \
         \"conv\": {{\"kernel\": [5, 5], \"stride\": [1, 1], \"padding\": [0, 0], \"dilation\": [1, 1], \"groups\": 1}}, \
         \"input\": {{\"dtype\": \"uint8\", \"shape\": [1, 1, 5, 5], \"scale\": 0.012728, \"zero_point\": 33, \"data\": {:?}}}, \
         \"weight\": {{\"dtype\": \"int8\", \"shape\": [1, 1, 5, 5], \"axis\": null, \"scale\": [0.00292], \"zero_point\": [-11], \"data\": {:?}}}, \
         \"bias\": {{\"dtype\": \"float32\", \"data\": [0.0]}}, \"relu\": false, \
         \"output\": {{\"dtype\": \"uint8\", \"scale\": 0.02091, \"zero_point\": 0, \"shape\": [1, 1, 1, 1]}}, \
         \"expected\": {{\"fbgemm\": [7], \"x86\": [7], \"qnnpack\": [0], \"float_path\": [0]}}}}\n",
        case.id, l.input.data, l.weight.data
    )
    .into_bytes()
}

#[test]
fn output_file_errors_write_nothing() {
    let dir = scratch("outputs");
    let layer = write(&dir, "layer.toml", LAYER);
    let out = dir.join("out.txt");
    assert_user_error(
        &["run", &layer, "-o", &out.to_string_lossy()],
        &["--output", "out.txt", ".csv, .npy or .json"],
    );
    assert!(!out.exists());
    let out = dir.join("no/such/dir/out.csv");
    assert_user_error(
        &["run", &layer, "-o", &out.to_string_lossy()],
        &["out.csv", "No such file"],
    );
    assert!(
        std::fs::read_dir(&dir).unwrap().count() == 1,
        "only the layer file remains"
    );
}

#[test]
fn engines_refuse_what_the_real_engine_refuses() {
    let dir = scratch("refusals");
    let int8_input = LAYER
        .replacen(
            "dtype = \"uint8\"\nshape = [1, 2, 3, 3]",
            "dtype = \"int8\"\nshape = [1, 2, 3, 3]",
            1,
        )
        .replacen(
            "120, 130, 140, 150, 160, 255]",
            "120, 127, 127, 127, 127, 25]",
            1,
        );
    let path = write(&dir, "int8.toml", int8_input);
    for engine in ["fbgemm", "x86", "qnnpack", "float-path"] {
        assert_user_error(&["run", &path, "--engine", engine], &["refuses", "quint8"]);
    }
    let (code, _, stderr) = qconv(&["run", &path, "--engine", "exact"]);
    assert_eq!(code, 0, "{stderr}");
    let asym = LAYER.replacen("padding = [1, 1]", "padding = [1, 0, 0, 1]", 1);
    let path = write(&dir, "asym.toml", asym);
    assert_user_error(
        &["run", &path, "--engine", "fbgemm"],
        &["refuses", "symmetrically"],
    );
    // compare needs two engines that accept the layer, and says who refused.
    assert_user_error(
        &["compare", &path],
        &["fewer than two engines", "engine fbgemm refuses"],
    );
    // qnnpack refuses a requantization scale that is not a normal float (here 1e-40); compare
    // leaves it out, says so, and compares the rest.
    let tiny = LAYER
        .replacen("scale = 0.05", "scale = 1e-20", 1)
        .replacen("scale = [0.01, 0.02]", "scale = [1e-20, 1e-20]", 1)
        .replacen("scale = 0.1", "scale = 1.0", 1);
    let path = write(&dir, "tiny.toml", tiny);
    assert_user_error(
        &["run", &path, "--engine", "qnnpack"],
        &["refuses", "not a positive normal"],
    );
    let (code, stdout, stderr) = qconv(&["compare", &path]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("note: engine qnnpack refuses"), "{stderr}");
    assert!(
        stdout.contains("fbgemm(") && !stdout.contains("qnnpack"),
        "{stdout}"
    );
}

#[test]
fn unknown_engine_and_isa_are_usage_errors() {
    let (code, _, stderr) = qconv(&["run", &forum(), "--engine", "tensorrt"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown engine `tensorrt`"), "{stderr}");
    let (code, _, stderr) = qconv(&["run", &forum(), "--isa", "neon"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown ISA `neon`"), "{stderr}");
}

#[test]
fn every_command_has_help() {
    for cmd in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["compare", "--help"],
        vec!["explain", "--help"],
        vec!["check", "--help"],
        vec!["conformance", "--help"],
        vec!["bench", "--help"],
    ] {
        let (code, stdout, _) = qconv(&cmd);
        assert_eq!(code, 0);
        assert!(stdout.contains("Usage:"), "{stdout}");
    }
}

#[test]
fn explain_tells_the_forum_story() {
    let (code, stdout, stderr) = qconv(&["explain", &forum()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(
            "fbgemm(avx2) 7: two saturated int16 pairs, weights (-67, -97) and (-128, -125) times \
             activation 200, add +17864 to the exact accumulator -13861, giving 4003"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("float-path 0: -25 is clamped to 0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("pair-saturation     fbgemm(avx2)         1           2       +17864"),
        "{stdout}"
    );
}

#[test]
fn explain_json_follows_the_schema() {
    let (code, stdout, _) = qconv(&[
        "explain",
        &forum(),
        "--engines",
        "exact,fbgemm",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0);
    let j: serde_json::Value = serde_json::from_str(&stdout).expect("valid JSON");
    assert_eq!(j["schema"], "qconv-explain/1");
    assert_eq!(j["differing_elements"], 1);
    let el = &j["elements"][0];
    assert_eq!(el["index"], serde_json::json!([0, 0, 0, 0]));
    assert_eq!(el["values"]["exact"], 0);
    assert_eq!(el["values"]["fbgemm(avx2)"], 7);
    assert_eq!(el["exact_acc"], -13861);
    assert_eq!(el["acc"]["fbgemm(avx2)"], 4003);
    let causes = el["causes"].as_array().unwrap();
    let kinds: Vec<&str> = causes.iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["output-clamp", "pair-saturation", "pair-saturation"]
    );
    for c in causes {
        assert!(c["engine"].is_string() && c["acc_delta"].is_i64() && c["detail"].is_object());
    }
    assert_eq!(causes[0]["detail"]["from"], -25);
    assert_eq!(causes[0]["detail"]["to"], 0);
}

#[test]
fn explain_writes_html_and_rejects_bad_arguments() {
    let dir = scratch("explain_html");
    let page = dir.join("report.html");
    let page_s = page.to_string_lossy().into_owned();
    let (code, _, stderr) = qconv(&["explain", &forum(), "--html", &page_s]);
    assert_eq!(code, 0, "{stderr}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<svg") && html.contains("pair-saturation"));
    let bad = dir.join("report.txt");
    assert_user_error(
        &["explain", &forum(), "--html", &bad.to_string_lossy()],
        &["--html", "report.txt", ".html"],
    );
    assert!(!bad.exists());
    assert_user_error(
        &["explain", &forum(), "--engines", "fbgemm"],
        &["--engines", "two different engines"],
    );
}

#[test]
fn check_flags_the_forum_layer_and_suggests_fixes() {
    let (code, stdout, _) = qconv(&["check", &forum()]);
    assert_eq!(code, 1, "can saturate: exit 1");
    assert!(
        stdout.contains("CAN SATURATE: 1 of 1 output channels"),
        "{stdout}"
    );
    assert!(
        stdout.contains("pair 5: k 10 w[0,0,2,0]=-128, k 11 w[0,0,2,1]=-125; sum in [-64515, 0]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("This layer's own input saturates 1 output elements."),
        "{stdout}"
    );
    assert!(
        stdout.contains("reduce_range=True") && stdout.contains("AVX-512-VNNI"),
        "{stdout}"
    );
    let (code, stdout, _) = qconv(&["check", &forum(), "--isa", "avx512-vnni"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("safe"), "{stdout}");
    let (code, stdout, _) = qconv(&["check", &forum(), "--input-range", "0,127"]);
    assert_eq!(code, 1, "the layer's own input (200) still saturates");
    assert!(
        stdout.contains("safe: no pair can leave int16 for activations in [0, 127]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("CAN SATURATE: this layer's own input, which lies outside that range"),
        "{stdout}"
    );
    let (code, stdout, _) = qconv(&[
        "check",
        &forum(),
        "--input-range",
        "0,127",
        "--ignore-input",
    ]);
    assert_eq!(code, 0, "{stdout}");
    assert_user_error(
        &["check", &forum(), "--input-range", "0,300"],
        &["--input-range", "[0, 300]"],
    );
    assert_user_error(
        &["check", &forum(), "--input-range", "x"],
        &["--input-range", "LO,HI"],
    );
    assert_user_error(
        &["check", &forum(), "--engine", "qnnpack"],
        &["fbgemm, x86", "qnnpack"],
    );
}

/// A layer big enough for the kernels' tiles and threads to matter: 8 -> 16 channels, 3x3, 12x12,
/// full-range data (so that FBGEMM's pairs saturate).
fn medium_layer() -> String {
    let mut state = 12345u64;
    let mut next = move |lo: i64, hi: i64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + ((state >> 33) % (hi - lo + 1) as u64) as i64
    };
    let list = |v: Vec<i64>| v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
    let input = list((0..8 * 12 * 12).map(|_| next(0, 255)).collect());
    let weight = list((0..16 * 8 * 3 * 3).map(|_| next(-128, 127)).collect());
    format!(
        "name = \"medium\"\n[conv]\npadding = [1, 1]\n\
         [input]\ndtype = \"uint8\"\nshape = [1, 8, 12, 12]\nscale = 0.02\nzero_point = 120\ndata = [{input}]\n\
         [weight]\ndtype = \"int8\"\nshape = [16, 8, 3, 3]\nscale = 0.003\nzero_point = 0\ndata = [{weight}]\n\
         [output]\ndtype = \"uint8\"\nscale = 0.5\nzero_point = 128\n"
    )
}

#[test]
fn threads_and_kernel_never_change_results() {
    let dir = scratch("threads-kernel");
    let layer = write(&dir, "medium.toml", medium_layer());
    // Modelled on AVX2, where FBGEMM's and ONNX Runtime's pairs saturate.
    let compare = ["compare", &layer, "--isa", "avx2"];
    let (code, expected, stderr) =
        qconv(&[&compare[..], &["--threads", "1", "--kernel", "scalar"]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(expected.contains("fbgemm(avx2)"), "{expected}");
    let kernels = qconv::kernels::KernelIsa::available();
    for kernel in &kernels {
        for threads in ["1", "2"] {
            // Per-command and global placement both work.
            for args in [
                [
                    &compare[..],
                    &["--threads", threads, "--kernel", kernel.name()],
                ]
                .concat(),
                [
                    &["--threads", threads, "--kernel", kernel.name()],
                    &compare[..],
                ]
                .concat(),
            ] {
                let (code, stdout, stderr) = qconv(&args);
                assert_eq!(code, 0, "{args:?}: {stderr}");
                assert_eq!(stdout, expected, "{args:?}");
            }
        }
    }
    // explain and run too.
    let explain = |extra: &[&str]| {
        let mut args = vec![
            "explain",
            &layer,
            "--engines",
            "exact,fbgemm",
            "--isa",
            "avx2",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = qconv(&args);
        assert_eq!(code, 0, "{stderr}");
        stdout
    };
    let expected = explain(&["--threads", "1", "--kernel", "scalar"]);
    assert!(expected.contains("pair-saturation"), "the layer saturates");
    let best = kernels.last().unwrap().name();
    assert_eq!(explain(&["--threads", "2", "--kernel", best]), expected);
    let run = |extra: &[&str]| {
        let mut args = vec!["run", &layer, "--engine", "qnnpack"];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = qconv(&args);
        assert_eq!(code, 0, "{stderr}");
        stdout
    };
    assert_eq!(
        run(&["--threads", "2", "--kernel", best]),
        run(&["--kernel", "scalar"])
    );
    // conformance against the golden corpus, with each setting.
    let golden = repo().join("tests/data/golden/pytorch-groupwise.jsonl.gz");
    let golden = golden.to_string_lossy();
    for args in [
        vec![
            "conformance",
            "--engine",
            "fbgemm",
            &golden,
            "--threads",
            "2",
        ],
        vec![
            "conformance",
            "--engine",
            "fbgemm",
            &golden,
            "--kernel",
            "scalar",
        ],
    ] {
        let (code, stdout, stderr) = qconv(&args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(stdout.ends_with(" passed, 0 failed\n"), "{stdout}");
    }
}

#[test]
fn bad_threads_and_kernels_are_usage_errors() {
    let forum = forum();
    for (args, needle) in [
        (vec!["run", &forum, "--threads", "0"], "at least 1"),
        (
            vec!["compare", &forum, "--threads", "two"],
            "`two` is not a thread count",
        ),
        (
            vec!["explain", &forum, "--threads", ""],
            "is not a thread count",
        ),
        (vec!["conformance", &forum, "--threads", "0"], "at least 1"),
        (vec!["bench", "--threads", "0"], "at least 1"),
        (vec!["--threads", "0", "run", &forum], "at least 1"),
        (vec!["run", &forum, "--threads"], "a value is required"),
        (
            vec!["run", &forum, "--kernel", "neon"],
            "unknown kernel set `neon`",
        ),
        (
            vec!["bench", "--kernel", "sse4"],
            "unknown kernel set `sse4`",
        ),
    ] {
        let (code, stdout, stderr) = qconv(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: `{needle}` missing: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
    // A kernel set this CPU lacks is refused; one it has is taken.
    let available: Vec<&str> = qconv::kernels::KernelIsa::available()
        .iter()
        .map(|k| k.name())
        .collect();
    for name in ["scalar", "avx2", "avx-vnni", "avx512-vnni"] {
        let (code, _, stderr) = qconv(&["run", &forum, "--kernel", name]);
        if available.contains(&name) {
            assert_eq!(code, 0, "{name}: {stderr}");
        } else {
            assert_eq!(code, 2, "{name}: {stderr}");
            assert!(stderr.contains("this CPU cannot run"), "{stderr}");
        }
    }
}

#[test]
fn a_bad_qconv_kernel_variable_is_a_user_error() {
    let run = |kernel_arg: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_qconv"));
        cmd.args(["run", &forum()]).env("QCONV_KERNEL", "bogus");
        if let Some(k) = kernel_arg {
            cmd.args(["--kernel", k]);
        }
        let out = cmd.current_dir(repo()).output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (code, stderr) = run(None);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("QCONV_KERNEL: unknown kernel set `bogus`"),
        "{stderr}"
    );
    // --kernel takes precedence over the variable.
    let (code, stderr) = run(Some("scalar"));
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn computation_options_are_documented() {
    for cmd in ["run", "compare", "explain", "conformance", "bench"] {
        let (code, stdout, _) = qconv(&[cmd, "--help"]);
        assert_eq!(code, 0);
        for needle in [
            "--threads <N>",
            "--kernel <NAME>",
            "avx512-vnni",
            "QCONV_KERNEL",
        ] {
            assert!(
                stdout.contains(needle),
                "{cmd} --help lacks {needle}: {stdout}"
            );
        }
    }
}
