"""PyTorch convenience, without depending on PyTorch: everything is read through the objects the
caller passes in."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np

from ._api import Explanation, Layer, _invalid, host_isa
from ._errors import NotModelledError

_MODELLED_ENGINES = ("fbgemm", "x86", "qnnpack")


def _is_quantized_tensor(t: Any) -> bool:
    return bool(getattr(t, "is_quantized", False))


def _per_tensor_params(name: str, t: Any) -> Tuple[np.ndarray, float, int]:
    """Integers, scale and zero point of a per-tensor quantized tensor."""
    scheme = str(t.qscheme())
    if "per_tensor" not in scheme:
        raise _invalid(name, f"quantized with {scheme}; expected per-tensor affine quantization")
    return t.int_repr().cpu().numpy(), float(t.q_scale()), int(t.q_zero_point())


def _weight_params(t: Any) -> Tuple[np.ndarray, Any, Any]:
    """Integers, scale(s) and zero point(s) of a quantized weight."""
    scheme = str(t.qscheme())
    if "per_channel" in scheme:
        axis = int(t.q_per_channel_axis())
        if axis != 0:
            raise _invalid("weight.axis", f"{axis}: only axis 0 (output channels) is supported")
        scales = t.q_per_channel_scales().double().cpu().numpy()
        zero_points = t.q_per_channel_zero_points().cpu().numpy().astype(np.int64)
        return t.int_repr().cpu().numpy(), scales, zero_points
    return _per_tensor_params("weight", t)


def _padding(module: Any, kernel: Sequence[int]) -> Any:
    padding = module.padding
    if isinstance(padding, str):
        if padding == "valid":
            return 0
        if padding == "same":
            dilation = module.dilation
            total = [d * (k - 1) for d, k in zip(dilation, kernel)]
            before = [t // 2 for t in total]
            return (before[0], before[1], total[0] - before[0], total[1] - before[1])
        raise _invalid("padding", f"{padding!r}: expected an amount, 'same' or 'valid'")
    return tuple(int(p) for p in padding)


class TorchExplanation(Explanation):
    """:func:`from_torch`'s answer: an :class:`Explanation` (float path vs the PyTorch engine)
    that also records what the module itself returned and whether qconv reproduces it."""

    layer: Layer
    """The layer read from the module and the input."""
    torch_engine: str
    """The PyTorch quantized engine modelled (``torch.backends.quantized.engine``)."""
    isa: str
    """The ISA modelled."""
    torch_output: Optional[np.ndarray]
    """What the module returned on the input (integers), when it was run."""
    reproduced: Optional[bool]
    """Whether qconv's model of the engine gives exactly ``torch_output`` (``None`` when the
    module was not run, or when another ISA than this CPU's is modelled)."""
    engine_output: np.ndarray
    """qconv's model of the PyTorch engine."""
    float_path_output: np.ndarray
    """qconv's model of the float path (dequantize, float32 conv, quantize)."""

    def headline(self) -> str:
        """One paragraph: what PyTorch returned, whether qconv reproduces it, and how many
        elements the float path differs on."""
        total = int(self["total_elements"])
        lines = []
        if self.torch_output is not None:
            if self.reproduced is None:
                lines.append(
                    f"The module ran on this CPU ({host_isa()}); qconv models {self.torch_engine} "
                    f"on {self.isa}, so the module's output is not compared."
                )
            elif self.reproduced:
                lines.append(
                    f"qconv's {self.torch_engine} model reproduces the module's output on all "
                    f"{total} elements ({self.isa})."
                )
            else:
                n = int(np.count_nonzero(self.torch_output.astype(np.int64) != self.engine_output.astype(np.int64)))
                lines.append(
                    f"qconv's {self.torch_engine} model differs from the module's output on {n} of "
                    f"{total} elements ({self.isa}): please report this layer."
                )
        n = self.differing_elements
        if n == 0:
            lines.append(f"The float path and {self.torch_engine} agree on every element.")
        else:
            lines.append(
                f"The float path and {self.torch_engine} differ on {n} of {total} elements; "
                "the causes, element by element:"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.headline() + "\n\n" + self.text(detail=5, limit=50)


def from_torch(
    module: Any,
    input: Any,
    *,
    input_scale: Optional[float] = None,
    input_zero_point: Optional[int] = None,
    weight_scale: Any = None,
    weight_zero_point: Any = 0,
    bias: Any = None,
    output_scale: Optional[float] = None,
    output_zero_point: int = 0,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    relu: bool = False,
    engine: Optional[str] = None,
    isa: Optional[str] = None,
    run_module: bool = True,
) -> TorchExplanation:
    """Why does my quantized PyTorch conv differ from my float path? In one call.

    ``module`` is a ``torch.ao.nn.quantized.Conv2d`` or ``ConvReLU2d`` and ``input`` a quantized
    tensor (``torch.quantize_per_tensor``), or a plain integer tensor with ``input_scale`` and
    ``input_zero_point``. Instead of a module, ``module`` may be the plain int8 weight tensor, with
    ``weight_scale``, ``weight_zero_point``, ``bias``, ``output_scale``, ``output_zero_point`` and
    the geometry given as keywords (PyTorch 2.15's plain int8 tensors with explicit scales).

    The PyTorch engine modelled is ``engine`` (default ``torch.backends.quantized.engine``) on
    ``isa`` (default this CPU's). When ``module`` is a module, the input quantized and
    ``run_module`` set, the module is run on the input and qconv checks that its model reproduces
    the module's integers exactly (``TorchExplanation.reproduced``).

    Returns the explanation of every element where the float path (dequantize, float32 conv,
    quantize) and the engine differ.
    """
    # A module (anything with a forward), else a weight tensor.
    weight_module = hasattr(module, "forward")
    if _is_quantized_tensor(input):
        x, in_scale, in_zp = _per_tensor_params("input", input)
    else:
        if input_scale is None or input_zero_point is None:
            raise _invalid(
                "input",
                "a plain tensor: give input_scale and input_zero_point, or pass a quantized tensor "
                "(torch.quantize_per_tensor)",
            )
        x = np.asarray(input.cpu().numpy() if hasattr(input, "cpu") else input)
        in_scale, in_zp = float(input_scale), int(input_zero_point)
    if x.ndim != 4:
        raise _invalid("input.shape", f"{list(x.shape)}: expected 4 dimensions (NCHW)")

    if weight_module:
        given = {
            name: value
            for name, value, default in (
                ("weight_scale", weight_scale, None),
                ("weight_zero_point", weight_zero_point, 0),
                ("bias", bias, None),
                ("output_scale", output_scale, None),
                ("output_zero_point", output_zero_point, 0),
                ("stride", stride, 1),
                ("padding", padding, 0),
                ("dilation", dilation, 1),
                ("groups", groups, 1),
                ("relu", relu, False),
            )
            if value is not default and not (isinstance(value, (int, float)) and value == default)
        }
        if given:
            raise TypeError(
                "the module carries its own weights, bias, output quantization and geometry; "
                f"unexpected: {', '.join(given)}"
            )
        kind = type(module).__name__
        origin = type(module).__module__
        if kind not in ("Conv2d", "ConvReLU2d") or ".quantized" not in origin:
            raise _invalid(
                "module",
                f"{origin}.{kind}: expected torch.ao.nn.quantized.Conv2d or "
                "torch.ao.nn.intrinsic.quantized.ConvReLU2d",
            )
        if getattr(module, "padding_mode", "zeros") != "zeros":
            raise NotModelledError(
                f"qconv does not model what PyTorch computes for this layer: padding_mode "
                f"{module.padding_mode!r} (qconv models zero padding)"
            )
        w, w_scale, w_zp = _weight_params(module.weight())
        b = module.bias()
        bias_values = None if b is None else b.detach().float().cpu().numpy()
        params = dict(
            weight_scale=w_scale,
            weight_zero_point=w_zp,
            output_scale=float(module.scale),
            output_zero_point=int(module.zero_point),
            stride=tuple(module.stride),
            padding=_padding(module, w.shape[2:]),
            dilation=tuple(module.dilation),
            groups=int(module.groups),
            relu=kind == "ConvReLU2d",
        )
        name = kind
    else:
        if _is_quantized_tensor(module):
            w, w_scale, w_zp = _weight_params(module)
        else:
            if weight_scale is None:
                raise _invalid("weight", "a plain weight tensor: give weight_scale (and weight_zero_point)")
            w = np.asarray(module.cpu().numpy() if hasattr(module, "cpu") else module)
            w_scale, w_zp = weight_scale, weight_zero_point
        if output_scale is None:
            raise _invalid("output.scale", "give output_scale (and output_zero_point)")
        if bias is not None and hasattr(bias, "detach"):
            bias = bias.detach().float().cpu().numpy()
        bias_values = None if bias is None else np.asarray(bias, dtype=np.float32)
        params = dict(
            weight_scale=w_scale,
            weight_zero_point=w_zp,
            output_scale=float(output_scale),
            output_zero_point=int(output_zero_point),
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=int(groups),
            relu=bool(relu),
        )
        name = "conv"

    layer = Layer(
        x,
        w,
        bias_values,
        input_scale=in_scale,
        input_zero_point=in_zp,
        name=name,
        **params,
    )

    if engine is None:
        try:
            import torch  # noqa: PLC0415 - only when the caller has PyTorch

            engine = str(torch.backends.quantized.engine)
        except ImportError:
            engine = "x86"
    if engine not in _MODELLED_ENGINES:
        raise NotModelledError(
            f"qconv does not model what {engine} computes: the PyTorch engines qconv models are "
            f"{', '.join(_MODELLED_ENGINES)} (pass engine=...)"
        )
    modelled_isa = isa or host_isa()

    # qconv first: a layer the engine refuses raises qconv's RefusedError, not PyTorch's error.
    explanation = layer.explain(("float-path", engine), isa=modelled_isa)
    torch_output = None
    if weight_module and run_module and _is_quantized_tensor(input):
        torch_output = module(input).int_repr().cpu().numpy()

    result = TorchExplanation.__new__(TorchExplanation)
    Explanation.__init__(result, explanation._native)
    result.layer = layer
    result.torch_engine = engine
    result.isa = modelled_isa
    result.engine_output = layer.run(engine, isa=modelled_isa).values
    result.float_path_output = layer.run("float-path").values
    result.torch_output = torch_output
    if torch_output is None or modelled_isa != host_isa():
        result.reproduced = None
    else:
        result.reproduced = bool(np.array_equal(torch_output.astype(np.int64), result.engine_output.astype(np.int64)))
    return result
