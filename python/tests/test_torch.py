"""qconv.from_torch on real PyTorch modules (skipped, and said so, when PyTorch is not
importable: qconv does not depend on it)."""

from __future__ import annotations

import numpy as np
import pytest

import qconv

from test_forum import INPUT, PARAMS, WEIGHT

torch = pytest.importorskip("torch", reason="PyTorch is not importable here: from_torch tests skipped")
nnq = pytest.importorskip("torch.ao.nn.quantized", reason="this PyTorch has no torch.ao.nn.quantized")
nniq = pytest.importorskip("torch.ao.nn.intrinsic.quantized", reason="this PyTorch has no ConvReLU2d")


@pytest.fixture
def engine():
    saved = torch.backends.quantized.engine
    yield
    torch.backends.quantized.engine = saved


def forum_module():
    module = nnq.Conv2d(1, 1, 5)
    qw = torch._make_per_tensor_quantized_tensor(torch.from_numpy(WEIGHT.copy()), PARAMS["weight_scale"], PARAMS["weight_zero_point"])
    module.set_weight_bias(qw, torch.zeros(1))
    module.scale = PARAMS["output_scale"]
    module.zero_point = PARAMS["output_zero_point"]
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(INPUT.copy()), PARAMS["input_scale"], PARAMS["input_zero_point"])
    return module, qx


def test_forum_module_on_this_cpu(engine):
    torch.backends.quantized.engine = "fbgemm"
    module, qx = forum_module()
    answer = qconv.from_torch(module, qx)
    assert answer.torch_engine == "fbgemm" and answer.isa == qconv.host_isa()
    assert answer.reproduced is True
    np.testing.assert_array_equal(answer.torch_output, answer.engine_output)
    assert answer.float_path_output.item() == 0
    assert "reproduces the module's output" in repr(answer)


def test_forum_module_as_on_an_avx2_server(engine):
    torch.backends.quantized.engine = "fbgemm"
    module, qx = forum_module()
    answer = qconv.from_torch(module, qx, isa="avx2")
    assert answer.engine_output.item() == 7 and answer.float_path_output.item() == 0
    assert answer.reproduced is None  # the module ran on this CPU, not on AVX2
    assert answer.differing_elements == 1
    assert answer.causes().get("pair-saturation") == 1
    text = repr(answer)
    assert "differ on 1 of 1 elements" in text and "two saturated int16 pairs" in text
    print(text)


def test_plain_int8_tensors_with_scales():
    answer = qconv.from_torch(
        torch.from_numpy(WEIGHT.copy()),
        torch.from_numpy(INPUT.copy()),
        input_scale=PARAMS["input_scale"],
        input_zero_point=PARAMS["input_zero_point"],
        weight_scale=PARAMS["weight_scale"],
        weight_zero_point=PARAMS["weight_zero_point"],
        bias=torch.zeros(1),
        output_scale=PARAMS["output_scale"],
        engine="fbgemm",
        isa="avx2",
    )
    assert answer.engine_output.item() == 7 and answer.torch_output is None


@pytest.mark.parametrize("engine_name", ["fbgemm", "x86", "qnnpack"])
@pytest.mark.parametrize("relu", [False, True])
def test_random_modules_are_reproduced(engine, engine_name, relu):
    if engine_name not in torch.backends.quantized.supported_engines:
        pytest.skip(f"this PyTorch build lacks the {engine_name} engine")
    torch.backends.quantized.engine = engine_name
    torch.manual_seed(3 + relu)
    cls = nniq.ConvReLU2d if relu else nnq.Conv2d
    module = cls(8, 12, 3, stride=2, padding=1, groups=2, dilation=1)
    w = torch.randn(12, 4, 3, 3)
    if engine_name == "qnnpack":
        qw = torch.quantize_per_tensor(w, 0.02, 0, torch.qint8)
    else:
        qw = torch.quantize_per_channel(w, torch.rand(12) * 0.02 + 0.005, torch.zeros(12, dtype=torch.long), 0, torch.qint8)
    module.set_weight_bias(qw, torch.randn(12))
    module.scale, module.zero_point = 0.4, 60
    qx = torch.quantize_per_tensor(torch.rand(2, 8, 15, 13) * 6 - 1, 0.025, 40, torch.quint8)
    answer = qconv.from_torch(module, qx)
    assert answer.reproduced is True, f"{engine_name}: qconv's model differs from the module"
    # The float path's disagreements are all explained.
    assert answer.differing_elements == int(np.count_nonzero(answer.engine_output != answer.float_path_output))


def test_not_a_quantized_conv():
    with pytest.raises(qconv.InvalidLayerError, match="module"):
        qconv.from_torch(torch.nn.Conv2d(1, 1, 3), torch.zeros(1, 1, 5, 5, dtype=torch.uint8), input_scale=0.1, input_zero_point=0)
    module, qx = forum_module()
    with pytest.raises(qconv.InvalidLayerError, match="input_scale"):
        qconv.from_torch(module, qx.int_repr())


def test_module_keywords_are_not_silently_ignored():
    module, qx = forum_module()
    with pytest.raises(TypeError, match="stride"):
        qconv.from_torch(module, qx, stride=2)
