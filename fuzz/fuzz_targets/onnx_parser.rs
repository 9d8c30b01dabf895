//! Fuzzes the ONNX reader end to end: parse the bytes as a model, list its convolution nodes and
//! build every node's layer (with a placeholder input); and parse the same bytes as a lone
//! `TensorProto` (an ONNX backend test's `input_N.pb`) and decode it. Any input must give `Ok` or
//! an error, never a panic, an overflow or a huge allocation.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qconv::io::onnx::OnnxModel;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = qconv::io::onnx::proto::parse_tensor_proto("fuzz.pb", data) {
        let _ = qconv::io::onnx::tensor::decode(&t, &|m| qconv::Error::parse("fuzz.pb", "", m));
    }
    let Ok(model) = OnnxModel::parse("fuzz.onnx", data) else {
        return;
    };
    let Ok(nodes) = model.conv_nodes() else {
        return;
    };
    for node in &nodes {
        let _ = node.layer(&model, None);
        let _ = model.find_conv(&node.name);
    }
    let _ = qconv::io::onnx::listing::text(&model, &nodes);
});
