//! Malformed, truncated and hostile `.onnx` files: every one is a clear `Error::Parse` naming
//! the file and the field, never a panic or a huge allocation. Random and mutated bytes of the
//! real fixture models go through the whole reader (parse, list, build every layer) without a
//! panic.

mod common;

use common::onnx_build::*;
use proptest::prelude::*;
use qconv::Error;
use qconv::io::onnx::OnnxModel;

const PATH: &str = "hostile.onnx";

fn parse(bytes: &[u8]) -> Result<OnnxModel, Error> {
    OnnxModel::parse(PATH, bytes)
}

/// Parses, lists the conv nodes and builds each one's layer; the first error.
fn load_all(bytes: &[u8]) -> Result<usize, Error> {
    let m = parse(bytes)?;
    let nodes = m.conv_nodes()?;
    for n in &nodes {
        n.layer(&m, None)?;
    }
    Ok(nodes.len())
}

/// Asserts a parse error naming the file, containing every needle.
fn assert_error(result: Result<impl std::fmt::Debug, Error>, needles: &[&str]) {
    let e = result.expect_err("an error");
    let text = e.to_string();
    assert!(matches!(e, Error::Parse { .. }), "not a parse error: {e:?}");
    assert!(text.starts_with(PATH), "names the file: {text}");
    for n in needles {
        assert!(text.contains(n), "`{text}` lacks `{n}`");
    }
}

#[test]
fn the_baseline_model_is_valid() {
    let parts = qlinearconv_parts();
    assert_eq!(load_all(&parts.model()).unwrap(), 1);
    let m = parse(&parts.model()).unwrap();
    let n = m.find_conv("conv").unwrap();
    assert_eq!(n.static_input_shape(), Some([1, 2, 4, 4]));
    assert_eq!(m.find_conv("0").unwrap().name, "conv");
}

#[test]
fn wrong_types_are_named() {
    // The input scale stored as int8.
    let mut p = qlinearconv_parts();
    p.inits[0] = i8_tensor("xs", INT8, &[], &[1]);
    assert_error(
        load_all(&p.model()),
        &["node `conv`", "x_scale", "int8, expected float"],
    );
    // A float weight.
    let mut p = qlinearconv_parts();
    p.inits[2] = f32_tensor("w", &[3, 2, 3, 3], &[0.5; 54]);
    assert_error(
        load_all(&p.model()),
        &["weight", "float, expected uint8 or int8"],
    );
    // A weight zero point of another type than the weight.
    let mut p = qlinearconv_parts();
    p.inits[4] = i8_tensor("wz", UINT8, &[3], &[0, 0, 0]);
    assert_error(
        load_all(&p.model()),
        &["w_zero_point", "uint8, but the weight is int8"],
    );
    // A float bias on QLinearConv.
    let mut p = qlinearconv_parts();
    p.inits[7] = f32_tensor("b", &[3], &[1.0, 2.0, 3.0]);
    assert_error(load_all(&p.model()), &["input 8 (B)", "expected int32"]);
    // An attribute encoded with the wrong wire type: `ints` as a string.
    let mut p = qlinearconv_parts();
    p.nodes[0] = node(
        "QLinearConv",
        "conv",
        &["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"],
        &["y"],
        &[Pb::default().str(1, "pads").int(20, 7).float(8, 1.0)],
    );
    assert_error(parse(&p.model()), &["attribute[0].ints", "wrong type"]);
    // Strides that are not two positive integers.
    let mut p = qlinearconv_parts();
    p.nodes[0] = node(
        "QLinearConv",
        "conv",
        &["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"],
        &["y"],
        &[attr_ints("strides", &[0, -3])],
    );
    assert_error(load_all(&p.model()), &["attribute `strides`", "[0, -3]"]);
    // A kernel_shape that does not match the weight.
    let mut p = qlinearconv_parts();
    p.nodes[0] = node(
        "QLinearConv",
        "conv",
        &["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"],
        &["y"],
        &[attr_ints("kernel_shape", &[5, 5])],
    );
    assert_error(load_all(&p.model()), &["kernel_shape", "does not match"]);
    // A 1-D convolution (rank-3 weight).
    let mut p = qlinearconv_parts();
    p.inits[2] = i8_tensor("w", INT8, &[3, 2, 9], &[1; 54]);
    assert_error(load_all(&p.model()), &["weight", "2-D convolutions"]);
    // Names that are not UTF-8.
    let mut p = qlinearconv_parts();
    p.nodes
        .push(Pb::default().bytes(3, &[0xc3, 0x28]).str(4, "Relu"));
    assert_error(parse(&p.model()), &["node[2].name", "UTF-8"]);
}

#[test]
fn missing_initializers_and_inputs_are_named() {
    let mut p = qlinearconv_parts();
    p.inits.remove(4); // wz
    assert_error(
        load_all(&p.model()),
        &["input 5 (w_zero_point)", "`wz`", "missing initializer"],
    );
    let mut p = qlinearconv_parts();
    p.inits.remove(2); // w
    assert_error(
        load_all(&p.model()),
        &["weight", "`w`", "missing initializer"],
    );
    let mut p = qlinearconv_parts();
    p.nodes[0] = node("QLinearConv", "conv", &["x", "xs", "xz"], &["y"], &[]);
    assert_error(load_all(&p.model()), &["input 3 (w)", "missing"]);
    // A scale fed at run time.
    let mut p = qlinearconv_parts();
    p.inits.remove(5); // ys
    p.inputs.push(value_info("ys", FLOAT, &[]));
    assert_error(load_all(&p.model()), &["y_scale", "graph input"]);
    // No graph at all.
    assert_error(
        parse(&Pb::default().int(1, 8).0),
        &["model.graph", "no graph"],
    );
}

#[test]
fn absurd_dims_are_refused_before_allocating() {
    // A weight declaring 2^60 elements (with 54 bytes of data).
    let mut p = qlinearconv_parts();
    p.inits[2] = i8_tensor("w", INT8, &[1 << 20, 1 << 20, 1 << 10, 1 << 10], &[1; 54]);
    assert_error(load_all(&p.model()), &["tensor `w`", "absurdly large"]);
    // Negative dims.
    let mut p = qlinearconv_parts();
    p.inits[2] = i8_tensor("w", INT8, &[3, -2, 3, 3], &[1; 54]);
    assert_error(load_all(&p.model()), &["tensor `w`", "negative"]);
    // Dims that disagree with the data.
    let mut p = qlinearconv_parts();
    p.inits[2] = i8_tensor("w", INT8, &[3, 2, 3, 4], &[1; 54]);
    assert_error(
        load_all(&p.model()),
        &["tensor `w`", "raw_data has 54 bytes"],
    );
    // An input declared huge: its shape is not believed, so the layer needs --input.
    let mut p = qlinearconv_parts();
    p.inputs[0] = value_info("x", UINT8, &[1, 2, 1 << 40, 1 << 40]);
    assert_error(
        load_all(&p.model()),
        &["node `conv`", "not recorded", "--input"],
    );
    // An input just under the per-dimension limit but far too large in total.
    let mut p = qlinearconv_parts();
    p.inputs[0] = value_info("x", UINT8, &[1 << 20, 2, 1 << 20, 1 << 20]);
    assert_error(
        load_all(&p.model()),
        &["node `conv`", "input.shape", "more than"],
    );
}

#[test]
fn huge_declared_lengths_and_truncation_are_errors() {
    // raw_data claiming 2^62 bytes.
    let t = Pb::default()
        .int(1, 4)
        .int(2, INT8)
        .str(8, "w")
        .key(9, 2)
        .varint(1 << 62);
    let g = Pb::default().msg(5, &t);
    let bytes = Pb::default().msg(7, &g).0;
    assert_error(parse(&bytes), &["declares", "remain"]);
    // A graph field whose length runs past the end of the file.
    let mut bytes = qlinearconv_parts().model();
    let cut = bytes.len() - 7;
    bytes.truncate(cut);
    assert_error(parse(&bytes), &["truncated"]);
    // Every truncation of a valid model is an error or a smaller valid model, never a panic.
    let full = qlinearconv_parts().model();
    for cut in 0..full.len() {
        let _ = load_all(&full[..cut]);
    }
}

#[test]
fn external_data_and_sparse_initializers_are_refused() {
    let mut p = qlinearconv_parts();
    let ext = Pb::default().str(1, "location").str(2, "weights.bin");
    p.inits[2] = Pb::default()
        .int(1, 3)
        .int(1, 2)
        .int(1, 3)
        .int(1, 3)
        .int(2, INT8)
        .str(8, "w")
        .msg(13, &ext)
        .int(14, 1);
    assert_error(
        load_all(&p.model()),
        &["tensor `w`", "external file", "weights.bin"],
    );
    // The weight as a sparse initializer (graph field 15).
    let mut p = qlinearconv_parts();
    p.inits.remove(2);
    let values = i8_tensor("w", INT8, &[4], &[1, 2, 3, 4]);
    let sparse = Pb::default()
        .msg(1, &values)
        .int(3, 3)
        .int(3, 2)
        .int(3, 3)
        .int(3, 3);
    // The same graph with the sparse initializer (graph field 15) added.
    let mut g = Pb::default().str(2, "g");
    for n in &p.nodes {
        g = g.msg(1, n);
    }
    for t in &p.inits {
        g = g.msg(5, t);
    }
    for i in &p.inputs {
        g = g.msg(11, i);
    }
    let bytes = Pb::default().int(1, 8).msg(7, &g.msg(15, &sparse)).0;
    assert_error(load_all(&bytes), &["tensor `w`", "sparse initializer"]);
}

#[test]
fn unsupported_ops_asked_for_by_name_are_explained() {
    let m = parse(&qlinearconv_parts().model()).unwrap();
    assert_error(
        m.find_conv("relu"),
        &[
            "node `relu`",
            "Relu node, not a convolution",
            "qconv layers",
        ],
    );
    assert_error(
        m.find_conv("nope"),
        &["node `nope`", "no node of that name", "conv"],
    );
    assert_error(m.find_conv("7"), &["node #7", "1 convolution nodes"]);
    // A float Conv (no DequantizeLinear before it).
    let mut p = qlinearconv_parts();
    p.nodes
        .push(node("Conv", "float_conv", &["z", "fw"], &["out"], &[]));
    p.inits.push(f32_tensor("fw", &[1, 3, 1, 1], &[1.0; 3]));
    let m = parse(&p.model()).unwrap();
    assert_eq!(m.conv_nodes().unwrap().len(), 1);
    assert_error(m.find_conv("float_conv"), &["float Conv"]);
    // A channels-last QLinearConv from an ONNX Runtime optimized model.
    let mut p = qlinearconv_parts();
    p.nodes[0] = node(
        "QLinearConv",
        "conv",
        &["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"],
        &["y"],
        &[attr_int("channels_last", 1)],
    );
    assert_error(load_all(&p.model()), &["channels_last", "NHWC"]);
}

#[test]
fn deep_recursion_is_an_error() {
    let mut inner = Pb::default().str(2, "leaf");
    for _ in 0..100 {
        let attr = Pb::default()
            .str(1, "then_branch")
            .int(20, 5)
            .msg(6, &inner);
        let n = Pb::default().str(4, "If").msg(5, &attr);
        inner = Pb::default().msg(1, &n);
    }
    let bytes = Pb::default().msg(7, &inner).0;
    assert_error(parse(&bytes), &["nested more than 64 levels"]);
    // Deep but within the limit is fine.
    let mut inner = Pb::default().str(2, "leaf");
    for _ in 0..10 {
        let attr = Pb::default()
            .str(1, "then_branch")
            .int(20, 5)
            .msg(6, &inner);
        let n = Pb::default().str(4, "If").msg(5, &attr);
        inner = Pb::default().msg(1, &n);
    }
    assert!(parse(&Pb::default().msg(7, &inner).0).is_ok());
}

fn fixture_models() -> Vec<Vec<u8>> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/models");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    files.sort();
    assert!(files.len() >= 4);
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = load_all(&bytes);
    }

    #[test]
    fn mutated_fixture_models_never_panic(
        which in 0usize..16,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..12),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let models = fixture_models_cached();
        let mut bytes = models[which % models.len()].clone();
        for (at, value, kind) in edits {
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] = value,                       // overwrite a byte
                1 => bytes[i] ^= 1 << (value % 8),           // flip a bit
                2 => { bytes.insert(i, value); }             // insert a byte
                _ => { bytes.remove(i); }                    // delete a byte
            }
        }
        if truncate {
            let n = cut.index(bytes.len() + 1);
            bytes.truncate(n);
        }
        let _ = load_all(&bytes);
    }
}

fn fixture_models_cached() -> &'static Vec<Vec<u8>> {
    static MODELS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    MODELS.get_or_init(fixture_models)
}
