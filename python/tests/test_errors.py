"""Bad input raises a qconv exception with the CLI's message, never a crash."""

from __future__ import annotations

import errno
import subprocess

import numpy as np
import pytest

import qconv

from conftest import FORUM, MODELS

from test_forum import BIAS, INPUT, PARAMS, WEIGHT


def cli_error(cli, *args) -> str:
    run = subprocess.run([str(cli), *args], capture_output=True, text=True)
    assert run.returncode == 2, run.stderr
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ")
    return line[len("error: "):]


def forum_with(tmp_path, old: str, new: str):
    text = FORUM.read_text()
    assert old in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    "old,new,field",
    [
        ("scale = 0.012728", "scale = 0.0", "input.scale"),
        ("scale = 0.012728", "scale = -1.0", "input.scale"),
        ("scale = 0.012728", "scale = nan", "input.scale"),
        ("scale = 0.012728", "scale = inf", "input.scale"),
        ("zero_point = 33", "zero_point = 300", "input.zero_point"),
        ("zero_point = -11", "zero_point = -200", "weight.zero_point"),
        ("shape = [1, 1, 5, 5]\nscale = 0.00292", "shape = [1, 2, 5, 5]\nscale = 0.00292", "weight.shape"),
        ("stride = [1, 1]", "stride = [0, 1]", "conv.stride"),
    ],
)
def test_layer_file_errors_match_the_cli(tmp_path, cli, old, new, field):
    path = forum_with(tmp_path, old, new)
    with pytest.raises(qconv.QconvError) as e:
        qconv.load_layer(path)
    assert str(e.value) == cli_error(cli, "run", str(path))
    assert isinstance(e.value, (qconv.InvalidLayerError, qconv.ParseError))
    assert field in str(e.value)


@pytest.mark.parametrize(
    "change,field",
    [
        (dict(input_scale=0.0), "input.scale"),
        (dict(input_scale=-0.5), "input.scale"),
        (dict(input_scale=float("nan")), "input.scale"),
        (dict(input_scale=float("inf")), "input.scale"),
        (dict(weight_scale=0.0), "weight.scale"),
        (dict(output_scale=0.0), "output.scale"),
        (dict(input_zero_point=256), "input.zero_point"),
        (dict(weight_zero_point=128), "weight.zero_point"),
        (dict(output_zero_point=-1), "output.zero_point"),
        (dict(weight_scale=[0.1, 0.2]), "weight.scale"),
        (dict(stride=0), "conv.stride"),
        (dict(dilation=(1, 0)), "conv.dilation"),
        (dict(groups=2), "conv.groups"),
        (dict(padding=(1, 2, 3)), "conv.padding"),
        (dict(padding="sideways"), "conv.padding_mode"),
        (dict(output_dtype="uint4"), "output"),
        (dict(activation="gelu"), "activation"),
    ],
)
def test_array_parameter_errors_name_the_field(change, field):
    params = {**PARAMS, **change}
    with pytest.raises(qconv.InvalidLayerError) as e:
        qconv.Layer(INPUT, WEIGHT, BIAS, **params)
    assert field in e.value.field, (e.value.field, str(e.value))
    assert str(e.value).startswith(e.value.field + ": ") or field in str(e.value)


def test_array_shape_and_type_errors():
    with pytest.raises(qconv.InvalidLayerError, match=r"input.shape: \[5, 5\]: expected 4 dimensions"):
        qconv.Layer(INPUT[0, 0], WEIGHT, BIAS, **PARAMS)
    with pytest.raises(qconv.InvalidLayerError, match="input: a float32 array"):
        qconv.Layer(INPUT.astype(np.float32), WEIGHT, BIAS, **PARAMS)
    with pytest.raises(qconv.InvalidLayerError, match="input: an int64 array"):
        qconv.Layer(INPUT.astype(np.int64), WEIGHT, BIAS, **PARAMS)
    with pytest.raises(qconv.InvalidLayerError, match="outside uint8"):
        qconv.Layer(INPUT.astype(np.int64) + 100, WEIGHT, BIAS, input_dtype="uint8", **PARAMS)
    with pytest.raises(qconv.InvalidLayerError, match="bias"):
        qconv.Layer(INPUT, WEIGHT, np.zeros(3, np.float32), **PARAMS)
    with pytest.raises(qconv.InvalidLayerError, match="empty|output"):
        qconv.Layer(INPUT[:, :, :2, :2], WEIGHT, BIAS, **PARAMS)


def test_run_option_errors():
    layer = qconv.Layer(INPUT, WEIGHT, BIAS, **PARAMS)
    with pytest.raises(qconv.InvalidLayerError) as e:
        layer.run("tensorrt")
    assert e.value.field == "engine"
    with pytest.raises(qconv.InvalidLayerError) as e:
        layer.run("fbgemm", isa="neon")
    assert e.value.field == "isa"
    with pytest.raises(qconv.InvalidLayerError, match="threads"):
        layer.run("exact", threads=0)
    with pytest.raises(qconv.InvalidLayerError, match="kernel"):
        layer.run("exact", kernel="avx1024")
    with pytest.raises(qconv.InvalidLayerError, match="acc_bits"):
        layer.run("tflite-reference", acc_overflow="wrap")
    with pytest.raises(qconv.InvalidLayerError, match="engines"):
        layer.explain(("exact", "exact"))


def test_refusals_carry_the_engine():
    int8_input = INPUT.astype(np.int16).clip(-128, 127).astype(np.int8)
    with pytest.raises(qconv.RefusedError) as e:
        qconv.conv2d(int8_input, WEIGHT, BIAS, engine="fbgemm", **PARAMS)
    assert e.value.engine == "fbgemm" and e.value.reason
    assert str(e.value).startswith("engine fbgemm refuses this layer: ")


def test_file_errors(tmp_path, cli):
    missing = tmp_path / "missing.toml"
    with pytest.raises(qconv.FileError) as e:
        qconv.load_layer(missing)
    assert isinstance(e.value, OSError) and e.value.path == str(missing)
    assert e.value.errno == errno.ENOENT and e.value.filename == str(missing)
    assert str(e.value) == cli_error(cli, "run", str(missing))

    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes((MODELS / "qop-u8s8-pt.onnx").read_bytes()[:1000])
    with pytest.raises(qconv.ParseError) as e:
        qconv.onnx_layers(truncated)
    assert e.value.path == str(truncated)
    assert str(e.value) == cli_error(cli, "layers", str(truncated))

    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\x00\x01" * 17)
    with pytest.raises(qconv.ParseError):
        qconv.tflite_layers(garbage)

    with pytest.raises(qconv.QconvError, match="unknown layer format"):
        qconv.load_layer(tmp_path / "layer.yaml")


def test_onnx_node_errors(cli):
    model = MODELS / "qop-u8s8-pt.onnx"
    with pytest.raises(qconv.QconvError) as e:
        qconv.load_layer(f"{model}#no-such-node", input=np.zeros((1, 3, 32, 32), np.uint8))
    assert str(e.value) == cli_error(cli, "run", f"{model}#no-such-node")
    with pytest.raises(qconv.ParseError, match="shape"):
        qconv.load_layer(f"{model}#0", input=np.zeros((1, 3, 7, 7, 1), np.uint8))
    with pytest.raises(qconv.ParseError, match="floats"):
        qconv.load_layer(f"{model}#0", input=np.zeros((1, 3, 32, 32), np.float32))


def test_relu_with_a_clamp_below_the_zero_point_is_an_error_not_a_panic():
    with pytest.raises(qconv.InvalidLayerError) as e:
        qconv.conv2d(np.zeros((1, 1, 1, 1), np.uint8), np.ones((1, 1, 1, 1), np.int8), None,
                     input_scale=0.1, weight_scale=0.1, output_scale=0.1, output_zero_point=100,
                     output_clamp=(0, 50), relu=True)
    assert e.value.field == "output.clamp"


def test_values_are_never_truncated_or_wrapped():
    huge = np.full((1, 1, 5, 5), 2**64 - 1, np.uint64)
    with pytest.raises(qconv.InvalidLayerError, match="input.data"):
        qconv.Layer(huge, WEIGHT, BIAS, input_dtype="int8", **PARAMS)
    cases = [
        (dict(output_zero_point=3.5), "output.zero_point"),
        (dict(output_zero_point="3"), "output.zero_point"),
        (dict(output_scale="0.1"), "output.scale"),
        (dict(output_scale=True), "output.scale"),
        (dict(groups=1.5), "conv.groups"),
        (dict(padding=(1.5, 2)), "conv.padding"),
        (dict(padding=None), "conv.padding"),
        (dict(output_clamp=(1.5, 3)), "output.clamp"),
        (dict(output_clamp=(1, 2, 3)), "output.clamp"),
        (dict(relu="no"), "relu"),
        (dict(stride=-1), "conv.stride"),
        (dict(stride=1.5), "conv.stride"),
        (dict(output_zero_point=2**70), "output.zero_point"),
        (dict(input_zero_point=1.5), "input.zero_point"),
        (dict(weight_axis=0.0), "weight.axis"),
    ]
    for change, field in cases:
        with pytest.raises(qconv.InvalidLayerError) as e:
            qconv.Layer(INPUT, WEIGHT, BIAS, **{**PARAMS, **change})
        assert e.value.field.startswith(field), (change, e.value.field, str(e.value))
    layer = qconv.Layer(INPUT, WEIGHT, BIAS, **PARAMS)
    for kwargs, field in [(dict(threads=-1), "threads"), (dict(acc_bits=-3), "acc_bits")]:
        with pytest.raises(qconv.InvalidLayerError) as e:
            layer.run("exact", **kwargs)
        assert e.value.field == field
    with pytest.raises(qconv.InvalidLayerError, match="input_range"):
        layer.check(input_range=(0.5, 2.5))
    with pytest.raises(qconv.InvalidLayerError, match="detail"):
        layer.explain(("exact", "fbgemm"), isa="avx2").text(detail=-1)


def test_engine_lists_are_lists():
    layer = qconv.Layer(INPUT, WEIGHT, BIAS, **PARAMS)
    with pytest.raises(qconv.InvalidLayerError, match="list of names"):
        layer.compare("exact")
    with pytest.raises(qconv.InvalidLayerError, match="at least two engines"):
        layer.compare(["exact"])
    with pytest.raises(qconv.InvalidLayerError, match="list of names"):
        qconv.check_model(MODELS / "qop-u8s8-pt.onnx", isas="avx2")


def test_check_model_refuses_what_it_cannot_check():
    model = MODELS / "qop-u8s8-pt.onnx"
    with pytest.raises(qconv.InvalidLayerError, match="saturating engines"):
        qconv.check_model(model, engine="exact")
    with pytest.raises(qconv.InvalidLayerError, match="not a range"):
        qconv.check_model(model, input_range=(5, 1))
    with pytest.raises(qconv.InvalidLayerError, match="at least one ISA"):
        qconv.check_model(model, isas=[])


def test_convinteger_takes_no_activation():
    with pytest.raises(qconv.InvalidLayerError, match="no activation"):
        qconv.Layer(INPUT, WEIGHT, None, input_scale=None, weight_scale=None, output_scale=None,
                    activation="relu")


def test_python_keywords_name_the_fields():
    model = MODELS / "qop-u8s8-pt.onnx"
    with pytest.raises(qconv.InvalidLayerError) as e:
        qconv.load_layer(f"{model}#0").run("onnxruntime")
    assert e.value.field == "input" and str(e.value).startswith("input: ")
    layer = qconv.Layer(INPUT, WEIGHT, BIAS, **PARAMS)
    with pytest.raises(qconv.InvalidLayerError) as e:
        layer.run("fbgemm", acc_bits=16)
    assert e.value.field == "acc_bits"


def test_parameters_are_layer_keywords():
    for layer in [
        qconv.Layer(INPUT, WEIGHT, BIAS, **PARAMS),
        qconv.load_layer("tests/data/golden/tflite-mixed.jsonl.gz#tflite-mixed-0003"),
        qconv.load_layer(f"{MODELS / 'qop-u8s8-pc.onnx'}#1", input=np.zeros((1, 16, 16, 16), np.uint8)),
        qconv.Layer(np.arange(49, dtype=np.int8).reshape(1, 1, 7, 7), np.ones((2, 1, 2, 2), np.int8),
                    np.array([3, -4], np.int32), input_scale=0.5, input_zero_point=-3,
                    weight_scale=[0.25, 0.5], output_scale=0.75, output_zero_point=1,
                    stride=4, padding="same", activation="relu6"),
    ]:
        again = qconv.Layer(**layer.parameters())
        assert again.describe() == layer.describe()
        for engine in ("exact", "qnnpack", "onnxruntime", "tflite"):
            try:
                expected = layer.run(engine).values
            except qconv.RefusedError:
                continue
            np.testing.assert_array_equal(again.run(engine).values, expected)
