"""ONNX and TFLite models through the Python loaders: every conv node of the committed ONNX
models reproduces ONNX Runtime's captured output, and every conv of the TFLite model the
interpreter's."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

import qconv

from conftest import MODELS

MANIFEST = json.loads((MODELS / "manifest.json").read_text())
ONNX_MODELS = [m for m in MANIFEST["models"]]


@pytest.mark.parametrize("model", ONNX_MODELS, ids=[m["name"] for m in ONNX_MODELS])
def test_onnx_model_nodes_reproduce_onnxruntime(model):
    path = MODELS / model["file"]
    nodes = qconv.onnx_layers(path)
    assert len(nodes) == 12
    execution = {n["index"]: n["onnxruntime"]["execution"] for n in nodes}
    assert [n["spec"] for n in nodes] == [f"{path}#{i}" for i in range(12)]
    reproduced = refused = 0
    for capture in model["captures"]:
        for node in capture["nodes"]:
            x = np.load(MODELS / node["input"])
            expected = np.load(MODELS / node["output"])
            layer = qconv.load_layer(f"{path}#{node['index']}", input=x)
            if not node["fused"]:
                # ONNX Runtime runs this QDQ group as a float conv: qconv says it does not model it.
                assert execution[node["index"]] == "not-fused"
                with pytest.raises(qconv.NotModelledError):
                    layer.run("onnxruntime", isa=capture["isa"])
                # The exact result lies within one step of ORT's float convolution.
                exact = layer.run("exact").values.astype(np.int64)
                assert np.abs(exact - expected).max() <= 1
                refused += 1
                continue
            got = layer.run("onnxruntime", isa=capture["isa"]).values.astype(np.int64)
            if execution[node["index"]] == "fused-as-uint8":
                # ORT runs this int8 node as uint8 (values + 128) and shifts the result back.
                got -= 128
            np.testing.assert_array_equal(got, expected, err_msg=f"{model['name']} {capture['isa']} #{node['index']}")
            reproduced += 1
    assert reproduced + refused == 36
    print(f"{model['name']}: {reproduced} nodes bit-exact, {refused} not modelled (float conv)")


def test_onnx_explain_accounts_for_every_difference():
    model = next(m for m in ONNX_MODELS if m["name"] == "qop-u8s8-pt")
    capture = next(c for c in model["captures"] if c["isa"] == "avx2")
    total = 0
    for node in capture["nodes"]:
        x = np.load(MODELS / node["input"])
        layer = qconv.load_layer(f"{MODELS / model['file']}#{node['index']}", input=x)
        a = layer.run("onnx").values.astype(np.int64)
        b = layer.run("onnxruntime", isa="avx2").values.astype(np.int64)
        x = layer.explain(("onnx", "onnxruntime"), isa="avx2")
        assert x.differing_elements == int(np.count_nonzero(a != b))
        for element in x["elements"]:
            for engine in x["engines"]:
                label = engine["name"]
                steps = [c for c in element["causes"] if c["engine"] == label]
                acc = sum(c["acc_delta"] for c in steps)
                assert element["exact_acc"] + acc == element["acc"][label]
        total += x.differing_elements
    assert total > 0


def test_onnx_node_without_input_is_a_placeholder_for_check():
    path = MODELS / "qop-u8s8-pt.onnx"
    layer = qconv.load_layer(f"{path}#0")
    assert layer.placeholder_input
    report = layer.check(isa="avx2")
    assert report["engine"] == "onnxruntime" and report["input_range"] == [0, 255]
    with pytest.raises(qconv.InvalidLayerError, match="needs the node's input tensor"):
        layer.run("onnxruntime")


def test_check_model():
    report = qconv.check_model(MODELS / "qop-u8s8-pt.onnx")
    assert report["engine"] == "onnxruntime" and len(report["nodes"]) == 12
    assert report["isas"] == ["avx2", "avx-vnni", "avx512", "avx512-vnni"]
    verdicts = {v["isa"]: v["verdict"] for v in report["nodes"][1]["verdicts"]}
    assert verdicts["avx512-vnni"] == "exact"
    assert report.can_saturate == any(
        v["verdict"] == "can-saturate" for n in report["nodes"] for v in n["verdicts"]
    )
    assert "convolution nodes" in repr(report)


@pytest.mark.parametrize("capture", ["tiny_mobilenet_int8.capture.jsonl.gz", "tiny_mobilenet_int8.capture-avx2.jsonl.gz"])
def test_tflite_model_reproduces_the_interpreter(capture):
    path = MODELS / "tiny_mobilenet_int8.tflite"
    ops = qconv.tflite_layers(path)
    convs = [o for o in ops if "spec" in o]
    assert len(convs) == 11
    with gzip.open(MODELS / capture, "rt") as f:
        cases = [json.loads(line) for line in f]
    checked = 0
    names = {"tflite": "tflite", "tflite_reference": "tflite-reference"}
    for case in cases:
        layer = qconv.load_layer(f"{path}#{case['source']['op_index']}")
        x = np.asarray(case["input"]["data"], dtype=np.int8).reshape(case["input"]["shape"])
        layer = layer.with_input(x)
        for key, expected in case["expected"].items():
            got = layer.run(names[key]).values
            np.testing.assert_array_equal(got.ravel(), np.asarray(expected), err_msg=f"{case['id']} {key}")
            checked += 1
    assert checked == 22
