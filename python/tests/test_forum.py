"""The forum case through the NumPy API, and the API's structure against the CLI's."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import numpy as np
import pytest

import qconv

from conftest import FORUM

WEIGHT = np.array(
    [9, -32, 17, 3, -67, -97, -41, 47, 84, -56, -128, -125, 11, 63, 54,
     -15, -58, -31, 50, 48, 23, -3, 64, -87, -91],
    dtype=np.int8,
).reshape(1, 1, 5, 5)
INPUT = np.full((1, 1, 5, 5), 200, dtype=np.uint8)
BIAS = np.zeros(1, dtype=np.float32)
PARAMS = dict(
    input_scale=0.012728,
    input_zero_point=33,
    weight_scale=0.00292,
    weight_zero_point=-11,
    output_scale=0.02091,
    output_zero_point=0,
)


def test_forum_outputs_per_engine():
    run = lambda engine, **kw: int(qconv.conv2d(INPUT, WEIGHT, BIAS, engine=engine, **PARAMS, **kw)[0, 0, 0, 0])
    assert run("exact") == 0
    assert run("float-path") == 0
    assert run("qnnpack") == 0
    assert run("fbgemm", isa="avx2") == 7
    assert run("x86", isa="avx2") == 7
    assert run("fbgemm", isa="avx512-vnni") == 0
    out = qconv.conv2d(INPUT, WEIGHT, BIAS, **PARAMS)
    assert out.dtype == np.uint8 and out.shape == (1, 1, 1, 1)


def test_forum_layer_equals_the_layer_file():
    layer = qconv.Layer(INPUT, WEIGHT, BIAS, name="forum-5x5", **PARAMS)
    from_file = qconv.load_layer(FORUM)
    a, b = layer.parameters(), from_file.parameters()
    for key in a:
        if isinstance(a[key], np.ndarray):
            np.testing.assert_array_equal(a[key], b[key])
        else:
            assert a[key] == b[key], key
    assert from_file.recorded_isa == "avx2"
    assert from_file.expected["fbgemm"].ravel().tolist() == [7]


def test_forum_explanation_names_the_saturated_pairs():
    x = qconv.explain(INPUT, WEIGHT, BIAS, engines=("exact", "fbgemm"), isa="avx2", **PARAMS)
    assert isinstance(x, dict) and x["schema"] == "qconv-explain/1"
    assert x.differing_elements == 1
    (element,) = x["elements"]
    assert element["exact_acc"] == -13861
    assert element["acc"]["fbgemm(avx2)"] == 4003
    saturation = [c for c in element["causes"] if c["kind"] == "pair-saturation"]
    assert len(saturation) == 2
    assert sum(c["acc_delta"] for c in saturation) == 17864
    assert x.causes()["pair-saturation"] == 1
    text = repr(x)
    assert "two saturated int16 pairs" in text and "requantizes to 7" in text
    page = x._repr_html_()
    assert page.lstrip().lower().startswith("<!doctype html>") and "pair-saturation" in page


def test_explain_json_is_the_cli_json(cli):
    cli_json = subprocess.run(
        [str(cli), "explain", str(FORUM), "--engines", "exact,fbgemm", "--format", "json"],
        check=True, capture_output=True, text=True,
    ).stdout
    ours = qconv.load_layer(FORUM).explain(("exact", "fbgemm"))
    assert dict(ours) == json.loads(cli_json)


def test_default_explanation_is_float_path_vs_fbgemm():
    x = qconv.load_layer(FORUM).explain()
    assert [e["engine"] for e in x["engines"]] == ["float-path", "fbgemm"]
    assert x["engines"][1]["isa"] == "avx2"  # the ISA the layer file records


def test_compare():
    c = qconv.compare(INPUT, WEIGHT, BIAS, isa="avx2", **PARAMS)
    assert [o.engine for o in c.outputs] == ["exact", "float-path", "fbgemm", "x86", "qnnpack"]
    assert len(c.refusals) == 5  # the ONNX and TFLite engines refuse a float bias
    assert c["fbgemm"].item() == 7 and c["exact"].item() == 0
    assert c.differing.tolist() == [[0, 0, 0, 0]]
    assert c.pairwise()[("exact", "fbgemm(avx2)")] == 1
    assert c.pairwise()[("exact", "qnnpack")] == 0
    assert c.real.item() == pytest.approx(-24.636758, abs=1e-6)
    assert "1 of 1 output elements differ" in repr(c)
    assert "<table>" in c._repr_html_()


def test_compare_named_engine_that_refuses_raises():
    with pytest.raises(qconv.RefusedError) as e:
        qconv.compare(INPUT, WEIGHT, BIAS, engines=["exact", "onnx"], **PARAMS)
    assert e.value.engine == "onnx"


def test_run_returns_accumulators():
    layer = qconv.Layer(INPUT, WEIGHT, BIAS, **PARAMS)
    exact = layer.run("exact")
    assert exact.accumulators.dtype == np.int64 and exact.accumulators.item() == -13861
    fbgemm = layer.run("fbgemm", isa="avx2")
    assert fbgemm.accumulators.dtype == np.int32 and fbgemm.isa == "avx2" and fbgemm.label == "fbgemm(avx2)"
    assert "int16 pair saturation" in fbgemm.path
    assert layer.run("float-path").accumulators.dtype == np.float32


def test_check():
    report = qconv.check(INPUT, WEIGHT, BIAS, isa="avx2", **PARAMS)
    assert report.can_saturate and report["saturates_on_input"] is True
    (channel,) = report["channels"]
    assert len(channel["risky_pairs"]) == 2 and channel["on_input"]["largest_error_acc"] == 17864
    assert "CAN SATURATE" in repr(report)
    safe = qconv.check(INPUT, WEIGHT, BIAS, isa="avx2", input_range=(0, 127), use_input=False, **PARAMS)
    assert not safe.can_saturate
    exact_route = qconv.check(INPUT, WEIGHT, BIAS, isa="avx512-vnni", **PARAMS)
    assert exact_route["saturating"] is False


def test_with_input_and_threads_and_kernels_give_the_same_result():
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, size=(2, 16, 19, 23), dtype=np.uint8)
    w = rng.integers(-128, 128, size=(24, 8, 3, 3), dtype=np.int8)
    layer = qconv.Layer(
        x, w, rng.normal(size=24).astype(np.float32), input_scale=0.02, input_zero_point=120,
        weight_scale=rng.uniform(0.001, 0.01, size=24), weight_zero_point=0, output_scale=0.5,
        output_zero_point=3, padding=1, stride=(2, 1), groups=2,
    )
    reference = layer.run("exact", kernel="scalar", threads=1).values
    for kernel in qconv.kernels():
        for threads in (1, 2, 3):
            np.testing.assert_array_equal(layer.run("exact", kernel=kernel, threads=threads).values, reference)
    other = layer.with_input(rng.integers(0, 256, size=x.shape, dtype=np.uint8))
    assert not np.array_equal(other.run("exact").values, reference)
    assert np.array_equal(layer.input, x)


def test_the_gil_is_released_during_compute():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(1, 64, 56, 56), dtype=np.uint8)
    w = rng.integers(-128, 128, size=(64, 64, 3, 3), dtype=np.int8)
    layer = qconv.Layer(x, w, None, input_scale=0.02, input_zero_point=128, weight_scale=0.01,
                        output_scale=1.0, padding=1)
    calls = []
    done = threading.Event()

    def work():
        for _ in range(2):
            start = time.perf_counter()
            layer.run("exact", kernel="scalar", threads=1)
            calls.append((start, time.perf_counter()))
        done.set()

    samples = []
    worker = threading.Thread(target=work)
    worker.start()
    while not done.is_set():
        samples.append(time.perf_counter())
        time.sleep(0.001)
    worker.join()
    # While a call holds the GIL no other thread runs Python: the main thread takes no sample in
    # the middle of it. With the GIL released it keeps sampling every millisecond or so.
    inside = 0
    for start, end in calls:
        margin = 0.1 * (end - start)
        inside += sum(start + margin < t < end - margin for t in samples)
    longest = max(end - start for start, end in calls)
    assert longest > 0.02, "the call was too short to tell"
    assert inside >= 5, f"{inside} samples inside calls lasting up to {longest:.3f} s"
