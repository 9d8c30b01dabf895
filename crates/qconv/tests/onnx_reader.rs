//! The ONNX reader on hand-built models: ConvInteger, QDQ groups with a Relu, a float bias and
//! DequantizeLinear parameters from Constant nodes, auto_pad, and shapes propagated through
//! operators when the model records none.

mod common;

use common::onnx_build::*;
use qconv::engines::{EngineKind, RunOptions, run};
use qconv::io::onnx::{ConvFormat, NodeInput, OnnxModel, OrtExecution};
use qconv::{Bias, DType, Padding};

fn model(parts: &Parts) -> OnnxModel {
    OnnxModel::parse("t.onnx", &parts.model()).unwrap()
}

#[test]
fn conv_integer_is_an_int32_layer() {
    let w: Vec<i32> = (0..18).map(|i| i * 13 % 200 - 100).collect();
    let p = Parts {
        nodes: vec![node(
            "ConvInteger",
            "ci",
            &["x", "w", "xz", "wz"],
            &["y"],
            &[attr_ints("pads", &[0, 1, 0, 1])],
        )],
        inits: vec![
            i8_tensor("w", INT8, &[2, 1, 3, 3], &w),
            i8_tensor("xz", UINT8, &[], &[7]),
            i8_tensor("wz", INT8, &[], &[3]),
        ],
        inputs: vec![value_info("x", UINT8, &[1, 1, 4, 4])],
        outputs: vec![],
    };
    let m = model(&p);
    let n = m.find_conv("ci").unwrap();
    assert_eq!(n.format, ConvFormat::ConvInteger);
    assert_eq!(n.ort, OrtExecution::AsIs);
    let input = NodeInput {
        shape: [1, 1, 4, 4],
        data: (0..16).map(|i| i * 16).collect(),
    };
    let layer = n.layer(&m, Some(&input)).unwrap();
    assert!(layer.is_integer_output());
    assert_eq!(
        layer.geometry.padding,
        Padding {
            top: 0,
            left: 1,
            bottom: 0,
            right: 1
        }
    );
    let onnx = run(EngineKind::Onnx, &layer, &RunOptions::default()).unwrap();
    let exact = run(EngineKind::Exact, &layer, &RunOptions::default()).unwrap();
    assert_eq!(onnx.values, exact.values);
    assert_eq!(onnx.shape, [1, 2, 2, 4]);
}

/// x (uint8) -> DequantizeLinear -> Conv (weight and bias given by `bias`) -> `between` ->
/// QuantizeLinear (zero point `yz`) -> y.
fn qdq_parts(bias: Option<Pb>, between: Option<&str>, yz: i32) -> Parts {
    let w: Vec<i32> = (0..36).map(|i| i * 29 % 255 - 127).collect();
    let conv_out = if between.is_some() { "c" } else { "r" };
    let mut conv_inputs = vec!["xd", "wd"];
    let mut inits = vec![
        i8_tensor("w", INT8, &[4, 1, 3, 3], &w),
        f32_tensor("ws", &[4], &[0.01, 0.02, 0.015, 0.03]),
        i8_tensor("wz", INT8, &[4], &[0, 0, 0, 0]),
        i8_tensor("yz", UINT8, &[], &[yz]),
        f32_tensor("ys", &[], &[0.1]),
    ];
    if let Some(b) = bias {
        conv_inputs.push("b");
        inits.push(b);
    }
    let mut nodes = vec![
        // The input scale and zero point come from Constant nodes.
        node(
            "Constant",
            "k1",
            &[],
            &["xs"],
            &[Pb::default()
                .str(1, "value")
                .int(20, 4)
                .msg(5, &f32_tensor("", &[], &[0.05]))],
        ),
        node(
            "Constant",
            "k2",
            &[],
            &["xz"],
            &[Pb::default()
                .str(1, "value")
                .int(20, 4)
                .msg(5, &i8_tensor("", UINT8, &[], &[100]))],
        ),
        node(
            "MaxPool",
            "pool",
            &["x"],
            &["xp"],
            &[
                attr_ints("kernel_shape", &[2, 2]),
                attr_ints("strides", &[2, 2]),
            ],
        ),
        node("DequantizeLinear", "dqx", &["xp", "xs", "xz"], &["xd"], &[]),
        node(
            "DequantizeLinear",
            "dqw",
            &["w", "ws", "wz"],
            &["wd"],
            &[attr_int("axis", 0)],
        ),
        node(
            "Conv",
            "conv",
            &conv_inputs,
            &[conv_out],
            &[
                attr_int("group", 4),
                Pb::default()
                    .str(1, "auto_pad")
                    .int(20, 3)
                    .str(4, "SAME_UPPER"),
                attr_ints("strides", &[2, 2]),
            ],
        ),
        node("QuantizeLinear", "q", &["r", "ys", "yz"], &["y"], &[]),
    ];
    if let Some(op) = between {
        nodes.insert(6, node(op, "act", &["c"], &["r"], &[]));
    }
    Parts {
        nodes,
        inits,
        // The model records the graph input's shape only: the conv's input shape is propagated
        // through the MaxPool.
        inputs: vec![value_info("x", UINT8, &[1, 4, 12, 12])],
        outputs: vec![value_info("y", UINT8, &[])],
    }
}

#[test]
fn qdq_groups_with_constants_auto_pad_and_propagated_shapes() {
    let m = model(&qdq_parts(None, None, 3));
    let n = m.find_conv("conv").unwrap();
    assert_eq!(n.format, ConvFormat::Qdq);
    assert_eq!(n.ort, OrtExecution::Fused);
    assert_eq!(n.input_tensor, "xp");
    assert_eq!(n.output_tensor, "y");
    assert_eq!(n.static_input_shape(), Some([1, 4, 6, 6]));
    assert_eq!(
        (n.input_scale, n.input_zero_point),
        (Some(0.05f32 as f64), 100)
    );
    assert!(n.weight.quant.per_channel);
    // SAME_UPPER, stride 2 on 6: output 3, total padding (3 - 1) * 2 + 3 - 6 = 1, at the end.
    assert_eq!(
        n.padding(6, 6),
        Padding {
            top: 0,
            left: 0,
            bottom: 1,
            right: 1
        }
    );
    let layer = n.layer(&m, None).unwrap();
    assert_eq!(layer.geometry.output_shape(), [1, 4, 3, 3]);
    assert!(
        layer.input.data.iter().all(|&v| v == 100),
        "placeholder input"
    );
}

#[test]
fn a_float_bias_is_quantized_as_onnx_runtime_does() {
    let b = f32_tensor("b", &[4], &[0.013, -0.6, 1e-6, 3.0]);
    let m = model(&qdq_parts(Some(b), None, 0));
    let n = m.find_conv("conv").unwrap();
    let xs = 0.05f32;
    let want: Vec<i32> = [0.013f32, -0.6, 1e-6, 3.0]
        .iter()
        .zip([0.01f32, 0.02, 0.015, 0.03])
        .map(|(&b, ws)| (b / (xs * ws)).round_ties_even() as i32)
        .collect();
    assert_eq!(n.bias, Some(Bias::Int32(want.clone())));
    assert_eq!(want, [26, -600, 0, 2000]);
    assert!(n.notes.iter().any(|s| s.contains("float bias")));
    // An int32 bias through DequantizeLinear is used as it is.
    let mut p = qdq_parts(None, None, 0);
    p.inits.push(i32_tensor("bq", &[4], &[5, -6, 7, -8]));
    p.inits
        .push(f32_tensor("bs", &[4], &[0.0005, 0.001, 0.00075, 0.0015]));
    p.nodes.insert(
        3,
        node(
            "DequantizeLinear",
            "dqb",
            &["bq", "bs"],
            &["b"],
            &[attr_int("axis", 0)],
        ),
    );
    p.nodes[6] = node(
        "Conv",
        "conv",
        &["xd", "wd", "b"],
        &["r"],
        &[
            attr_int("group", 4),
            Pb::default()
                .str(1, "auto_pad")
                .int(20, 3)
                .str(4, "SAME_UPPER"),
            attr_ints("strides", &[2, 2]),
        ],
    );
    let m = model(&p);
    let n = m.find_conv("conv").unwrap();
    assert_eq!(n.bias, Some(Bias::Int32(vec![5, -6, 7, -8])));
    assert!(n.notes.is_empty(), "{:?}", n.notes);
}

#[test]
fn a_relu_before_quantize_linear_is_dropped_only_when_redundant() {
    let m = model(&qdq_parts(None, Some("Relu"), 0));
    let n = m.find_conv("conv").unwrap();
    assert_eq!(n.ort, OrtExecution::Fused);
    assert!(n.notes.iter().any(|s| s.contains("Relu")));
    let m = model(&qdq_parts(None, Some("Relu"), 5));
    let e = m.conv_nodes().unwrap_err().to_string();
    assert!(e.contains("Relu") && e.contains("redundant"), "{e}");
    // Another operator between Conv and QuantizeLinear: not a quantized conv.
    let m = model(&qdq_parts(None, Some("Sigmoid"), 0));
    assert!(m.conv_nodes().unwrap().is_empty());
    let e = m.find_conv("conv").unwrap_err().to_string();
    assert!(e.contains("output is not quantized"), "{e}");
}

#[test]
fn int8_qdq_groups_follow_onnx_runtimes_uint8_conversion() {
    // x (float) -> Q (int8) -> DQ -> Conv -> Q (int8) -> DQ -> Relu: both pairs have single
    // consumers, so ONNX Runtime converts them to uint8 and fuses.
    let w: Vec<i32> = (0..8).map(|i| i * 31 % 255 - 127).collect();
    let mut p = Parts {
        nodes: vec![
            node("QuantizeLinear", "qx", &["x", "s", "z"], &["xq"], &[]),
            node("DequantizeLinear", "dqx", &["xq", "s", "z"], &["xd"], &[]),
            node("DequantizeLinear", "dqw", &["w", "ws"], &["wd"], &[]),
            node("Conv", "conv", &["xd", "wd"], &["c"], &[]),
            node("QuantizeLinear", "qy", &["c", "s", "z"], &["yq"], &[]),
            node("DequantizeLinear", "dqy", &["yq", "s", "z"], &["yd"], &[]),
            node("Relu", "relu", &["yd"], &["out"], &[]),
        ],
        inits: vec![
            f32_tensor("s", &[], &[0.1]),
            i8_tensor("z", INT8, &[], &[-3]),
            i8_tensor("w", INT8, &[2, 4, 1, 1], &w),
            f32_tensor("ws", &[], &[0.01]),
        ],
        inputs: vec![value_info("x", FLOAT, &[1, 4, 3, 3])],
        outputs: vec![value_info("out", FLOAT, &[])],
    };
    let m = model(&p);
    let n = m.find_conv("conv").unwrap();
    assert_eq!(n.ort, OrtExecution::FusedAsUint8);
    assert_eq!((n.input_dtype, n.input_zero_point), (DType::Int8, -3));
    let input = NodeInput {
        shape: [1, 4, 3, 3],
        data: (0..36).map(|i| i * 7 % 256 - 128).collect(),
    };
    let layer = n.layer(&m, Some(&input)).unwrap();
    assert_eq!(
        (layer.input.dtype, layer.input.zero_point),
        (DType::Uint8, 125)
    );
    assert_eq!(
        (layer.output.dtype, layer.output.zero_point),
        (DType::Uint8, 125)
    );
    assert_eq!(layer.input.data[0], 0);
    // A second consumer of the output's DequantizeLinear stops the conversion: not fused.
    p.nodes
        .push(node("Sigmoid", "sig", &["yd"], &["out2"], &[]));
    let m = model(&p);
    match m.find_conv("conv").unwrap().ort {
        OrtExecution::NotFused(why) => assert!(why.contains("output pair"), "{why}"),
        other => panic!("{other:?}"),
    }
}
