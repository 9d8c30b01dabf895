"""The NumPy API: layers from plain integer arrays with explicit scales and zero points."""

from __future__ import annotations

import html as _html
import io as _io
import json as _json
import os
from collections import abc as _abc
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native
from ._errors import InvalidLayerError

ArrayLike = Any
"""Anything :func:`numpy.asarray` accepts: a NumPy array, a list, a plain (not quantized) CPU
``torch.Tensor``."""

IntPair = Union[int, Sequence[int]]

_QUANTIZED_TYPES = {"uint8", "int8"}


def _invalid(field_name: str, message: str) -> InvalidLayerError:
    error = InvalidLayerError(f"{field_name}: {message}")
    error.field = field_name
    return error


def _article(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


# Integers the Rust side takes as 64-bit; larger values are refused here with a field name.
_INT_LIMIT = 1 << 62


def _int(field_name: str, value: Any, minimum: Optional[int] = None) -> int:
    """An integer argument: a Python or NumPy integer (not a bool, float or string)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise _invalid(field_name, f"{value!r}: expected an integer")
    v = int(value)
    if minimum is not None and v < minimum:
        raise _invalid(field_name, f"{v}: expected an integer >= {minimum}")
    if abs(v) >= _INT_LIMIT:
        raise _invalid(field_name, f"{v} is out of range")
    return v


def _optional_int(field_name: str, value: Any, minimum: Optional[int] = None) -> Optional[int]:
    return None if value is None else _int(field_name, value, minimum)


def _float(field_name: str, value: Any) -> float:
    """A number argument: a Python or NumPy int or float (not a bool or string)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise _invalid(field_name, f"{value!r}: expected a number")
    return float(value)


def _bool(field_name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise _invalid(field_name, f"{value!r}: expected True or False")
    return bool(value)


def _ints(field_name: str, value: Any, count: Optional[int] = None, minimum: Optional[int] = None) -> List[int]:
    """A sequence of integers (of `count` of them when given)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (_abc.Sequence, np.ndarray)):
        raise _invalid(field_name, f"{value!r}: expected a sequence of integers")
    values = [_int(field_name, v, minimum) for v in value]
    if count is not None and len(values) != count:
        raise _invalid(field_name, f"{value!r}: expected {count} integers")
    return values


def _names(field_name: str, value: Any) -> List[str]:
    """A list of names (engines, ISAs); a lone string is refused rather than split."""
    if isinstance(value, str) or not isinstance(value, _abc.Iterable):
        raise _invalid(field_name, f"{value!r}: expected a list of names, e.g. ['exact', 'fbgemm']")
    names = list(value)
    if not all(isinstance(n, str) for n in names):
        raise _invalid(field_name, f"{value!r}: expected a list of names")
    return names


def _asarray(field_name: str, value: ArrayLike) -> np.ndarray:
    """`value` as a NumPy array; quantized and autograd PyTorch tensors are handled by name."""
    if getattr(value, "is_quantized", False):
        raise _invalid(
            field_name,
            "a quantized torch tensor: pass its .int_repr() with its scale and zero point, or use "
            "qconv.from_torch",
        )
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as e:
        raise _invalid(field_name, f"not an array of numbers ({e})") from None


def _integer_array(field_name: str, value: ArrayLike, dtype: Optional[str]) -> Tuple[np.ndarray, str]:
    """The integers of a quantized tensor and the name of its quantized type."""
    array = _asarray(field_name, value)
    if array.dtype.kind not in "iub":
        raise _invalid(
            field_name,
            f"{_article(str(array.dtype))} array; qconv takes the quantized integers (a uint8 or "
            f"int8 array, or integers with the type named by {field_name}_dtype=)",
        )
    if dtype is None:
        if array.dtype.name not in _QUANTIZED_TYPES:
            raise _invalid(
                field_name,
                f"{_article(str(array.dtype))} array: name its quantized type with "
                f"{field_name}_dtype='uint8' or 'int8', or pass a uint8 / int8 array",
            )
        dtype = array.dtype.name
    if array.dtype.kind == "u" and array.dtype.itemsize == 8 and array.size and array.max() >= 1 << 63:
        i = int(np.argmax(array.ravel() >= 1 << 63))
        raise _invalid(f"{field_name}.data", f"element {i} is {int(array.ravel()[i])}, not a 64-bit signed integer")
    return array, dtype


def _values_bytes(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, dtype="<i8").tobytes()


def _one_or_many(field_name: str, value: Any, kind: type) -> Tuple[List[Any], bool]:
    """A scale or zero point given as one number or as one per channel."""
    if isinstance(value, (str, bytes, bool, np.bool_)):
        raise _invalid(field_name, f"{value!r}: expected {'integers' if kind is int else 'numbers'}")
    array = _asarray(field_name, value)
    if array.ndim > 1:
        raise _invalid(field_name, f"shape {array.shape}: give one value or a 1-D list")
    convert = (lambda v: _int(field_name, v)) if kind is int else (lambda v: _float(field_name, v))
    if array.ndim == 0:
        return [convert(array.item())], False
    return [convert(v) for v in array.tolist()], True


def _pair(field_name: str, value: IntPair) -> List[int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        v = _int(field_name, value, 0)
        return [v, v]
    return _ints(field_name, value, 2, 0)


def _padding(value: Any) -> Tuple[Optional[List[int]], Optional[str]]:
    """`(amounts, mode)` from an int, 2 or 4 ints, or a mode name."""
    if isinstance(value, str):
        return None, value
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        v = _int("conv.padding", value, 0)
        return [v, v], None
    values = _ints("conv.padding", value, None, 0)
    return values, None


def _tensor(
    field_name: str,
    value: ArrayLike,
    dtype: Optional[str],
    scale: Any,
    zero_point: Any,
    axis: Optional[int],
) -> tuple:
    array, dtype = _integer_array(field_name, value, dtype)
    axis = _optional_int(f"{field_name}.axis", axis)
    scales = None
    scales_many = False
    if scale is not None:
        scales, scales_many = _one_or_many(f"{field_name}.scale", scale, float)
    zero_points, zero_points_many = _one_or_many(f"{field_name}.zero_point", zero_point, int)
    return (
        dtype,
        list(array.shape),
        _values_bytes(array),
        scales,
        scales_many,
        zero_points,
        zero_points_many,
        axis,
    )


def _frombuffer(data: bytes, dtype: str, shape: Sequence[int]) -> np.ndarray:
    return np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype).reshape(shape)


_NUMPY_TYPE = {"uint8": "uint8", "int8": "int8", "int32": "int32"}


@dataclass(frozen=True, eq=False)
class Output:
    """One engine's result on a layer."""

    engine: str
    """The engine's name (``exact``, ``fbgemm``, ...)."""
    isa: Optional[str]
    """The ISA modelled, for engines whose integers depend on it."""
    path: str
    """The engine's internal route for this layer, in words."""
    values: np.ndarray
    """The output integers, NCHW, in the output type."""
    accumulators: np.ndarray
    """The accumulators before requantization, NCHW: exact sums (int64) for the exact engine,
    the engine's own int32 accumulator (zero points removed, no bias) for integer engines, the
    float32 conv output (bias included) for the float path."""
    warnings: List[str] = field(default_factory=list)
    """What the user should know about this result (e.g. the real engine is known to be wrong)."""

    @property
    def label(self) -> str:
        """The engine's name with the ISA for ISA-dependent engines: ``fbgemm(avx2)``."""
        return f"{self.engine}({self.isa})" if self.isa else self.engine

    @classmethod
    def _from_native(cls, d: Mapping[str, Any]) -> "Output":
        shape = d["shape"]
        depends = {name for name, _, isa_dependent in _native.engines() if isa_dependent}
        return cls(
            engine=d["engine"],
            isa=d["isa"] if d["engine"] in depends else None,
            path=d["path"],
            values=_frombuffer(d["values"], "int32", shape).astype(_NUMPY_TYPE[d["dtype"]]),
            accumulators=_frombuffer(d["accumulators"], d["accumulators_dtype"], shape),
            warnings=list(d["warnings"]),
        )


class Layer:
    """A quantized 2-D convolution layer: NCHW input, OIHW weight, and their quantization.

    Build one from arrays (the arguments below), or load one with :func:`load_layer` (TOML layer
    files, golden cases, ``MODEL.onnx#NODE``, ``MODEL.tflite#OP``). Every parameter is checked
    when the layer is built; errors name the field (``InvalidLayerError.field``).

    Args:
        input: quantized activations, ``[N, C, H, W]``: a uint8 or int8 array (or integers with
            ``input_dtype``).
        weight: quantized weight, ``[OC, C / groups, kh, kw]``: int8 (or uint8) array.
        bias: ``None``; float values (real units, as PyTorch takes them, used as float32); or
            integers of any integer dtype, taken as the int32 bias already quantized with scale
            ``input_scale * weight_scale[oc]`` (as ONNX and TFLite take it). Note ``[1]`` and
            ``[1.0]`` differ. ``bias_dtype`` (``"float32"`` / ``"int32"``) overrides the choice.
        input_scale, input_zero_point: per-tensor input quantization (``input_scale=None``
            for ONNX ConvInteger).
        weight_scale, weight_zero_point: one value (per-tensor) or one per output channel.
        weight_axis: ``0`` for per-output-channel quantization (inferred when ``None``).
        output_scale, output_zero_point, output_dtype: the output quantization; the output type
            defaults to the input's (``int32`` when ``output_scale`` is ``None``: ConvInteger).
        stride, dilation: one integer or ``(h, w)``.
        padding: one integer, ``(ph, pw)``, ``(top, left, bottom, right)``, or ``"same"`` /
            ``"valid"`` (TFLite's padding modes).
        groups: groups (``groups == C``: depthwise).
        relu: a fused ReLU (PyTorch ``ConvReLU2d``).
        activation: a TFLite fused activation (``linear``, ``relu``, ``relu_n1_to_1``,
            ``relu6``).
        output_clamp: an explicit quantized clamp range ``(lo, hi)``.
        name: a name for reports.
    """

    def __init__(
        self,
        input: ArrayLike,
        weight: ArrayLike,
        bias: Optional[ArrayLike] = None,
        *,
        input_scale: Optional[float],
        weight_scale: Any,
        output_scale: Optional[float],
        input_zero_point: int = 0,
        weight_zero_point: Any = 0,
        weight_axis: Optional[int] = None,
        output_zero_point: int = 0,
        output_dtype: Optional[str] = None,
        stride: IntPair = 1,
        padding: Union[int, Sequence[int], str] = 0,
        dilation: IntPair = 1,
        groups: int = 1,
        relu: bool = False,
        activation: Optional[str] = None,
        output_clamp: Optional[Tuple[int, int]] = None,
        input_dtype: Optional[str] = None,
        weight_dtype: Optional[str] = None,
        bias_dtype: Optional[str] = None,
        name: Optional[str] = None,
    ) -> None:
        input_args = _tensor("input", input, input_dtype, input_scale, input_zero_point, None)
        weight_args = _tensor("weight", weight, weight_dtype, weight_scale, weight_zero_point, weight_axis)
        bias_args = None
        if bias is not None:
            values = _asarray("bias", bias)
            if values.dtype.kind not in "iuf" or values.dtype.kind == "b":
                raise _invalid("bias", f"{_article(str(values.dtype))} array: expected numbers")
            if bias_dtype is None:
                bias_dtype = "int32" if values.dtype.kind in "iu" else "float32"
            if values.ndim != 1:
                raise _invalid("bias", f"shape {values.shape}: expected one value per output channel")
            bias_args = (bias_dtype, np.ascontiguousarray(values, dtype="<f8").tobytes())
        if output_dtype is None:
            output_dtype = input_args[0] if output_scale is not None else "int32"
        padding_list, padding_mode = _padding(padding)
        self._native = _native.Layer.from_arrays(
            name,
            input_args,
            weight_args,
            bias_args,
            output_dtype,
            None if output_scale is None else _float("output.scale", output_scale),
            _int("output.zero_point", output_zero_point),
            None if output_clamp is None else _ints("output.clamp", output_clamp, 2),
            activation,
            _pair("conv.stride", stride),
            padding_list,
            padding_mode,
            _pair("conv.dilation", dilation),
            _int("conv.groups", groups, 0),
            _bool("relu", relu),
            None,
        )

    @classmethod
    def _wrap(cls, native: Any) -> "Layer":
        layer = cls.__new__(cls)
        layer._native = native
        return layer

    # -- what the layer is ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The layer's name."""
        return self._native.name

    @property
    def input_shape(self) -> Tuple[int, ...]:
        """``(N, C, H, W)``."""
        return tuple(self._native.input_shape)

    @property
    def output_shape(self) -> Tuple[int, ...]:
        """``(N, OC, OH, OW)``."""
        return tuple(self._native.output_shape)

    @property
    def expected(self) -> Dict[str, np.ndarray]:
        """Results the source records (golden cases, layer files): engine key -> output."""
        shape = self.output_shape
        return {k: np.asarray(v, dtype=np.int64).reshape(shape) for k, v in self._native.expected.items()}

    @property
    def recorded_errors(self) -> Dict[str, str]:
        """Errors the source records (golden cases): engine key -> the engine's message."""
        return dict(self._native.errors)

    @property
    def recorded_isa(self) -> Optional[str]:
        """The ISA the source's results were observed on, when it says; engines model it by
        default (before this CPU's)."""
        return self._native.recorded_isa

    @property
    def notes(self) -> List[str]:
        """Things worth knowing about how the layer was read (ONNX nodes)."""
        return list(self._native.notes)

    @property
    def placeholder_input(self) -> bool:
        """Whether the input values are a placeholder (an ONNX node loaded without an input)."""
        return self._native.placeholder_input

    def parameters(self) -> Dict[str, Any]:
        """The layer's tensors (NumPy arrays) and parameters, as the keyword arguments of
        :class:`Layer`: ``qconv.Layer(**layer.parameters())`` builds the same layer."""
        p = self._native.parameters()
        out: Dict[str, Any] = {
            "input": _frombuffer(p["input"], "int32", p["input_shape"]).astype(_NUMPY_TYPE[p["input_dtype"]]),
            "weight": _frombuffer(p["weight"], "int32", p["weight_shape"]).astype(_NUMPY_TYPE[p["weight_dtype"]]),
            "bias": None if p["bias"] is None else _frombuffer(p["bias"], p["bias_dtype"], [-1]),
            "bias_dtype": p["bias_dtype"],
            "input_scale": p["input_scale"],
            "input_zero_point": p["input_zero_point"],
            "input_dtype": p["input_dtype"],
            "weight_scale": p["weight_scale"] if p["per_channel"] else (p["weight_scale"] or [None])[0],
            "weight_zero_point": p["weight_zero_point"] if p["per_channel"] else p["weight_zero_point"][0],
            "weight_axis": 0 if p["per_channel"] else None,
            "weight_dtype": p["weight_dtype"],
            "output_scale": p["output_scale"],
            "output_zero_point": p["output_zero_point"],
            "output_dtype": p["output_dtype"],
            "output_clamp": None if p["output_clamp"] is None else tuple(p["output_clamp"]),
            "activation": p["activation"],
            "stride": tuple(p["stride"]),
            "padding": p["padding_mode"] or tuple(p["padding"]),
            "dilation": tuple(p["dilation"]),
            "groups": p["groups"],
            "relu": p["relu"],
            "name": self.name,
        }
        return out

    @property
    def padding(self) -> Tuple[int, int, int, int]:
        """The padding amounts ``(top, left, bottom, right)`` (computed for ``same`` /
        ``valid``)."""
        return tuple(self._native.parameters()["padding"])

    @property
    def input(self) -> np.ndarray:
        """The quantized input, ``[N, C, H, W]``."""
        p = self._native.parameters()
        return _frombuffer(p["input"], "int32", p["input_shape"]).astype(_NUMPY_TYPE[p["input_dtype"]])

    def with_input(self, input: ArrayLike) -> "Layer":
        """The same layer on other input values (same shape and type)."""
        array = _asarray("input", input)
        if array.dtype.kind not in "iub":
            raise _invalid("input", f"{_article(str(array.dtype))} array; expected the quantized integers")
        return Layer._wrap(self._native.with_input(list(array.shape), _values_bytes(array)))

    def describe(self) -> str:
        """A one-line description: shapes, types, geometry, bias and output."""
        return self._native.describe()

    def __repr__(self) -> str:
        return f"<qconv.Layer {self.describe()}>"

    # -- computing -----------------------------------------------------------------------------

    def run(
        self,
        engine: str = "exact",
        *,
        isa: Optional[str] = None,
        threads: Optional[int] = None,
        kernel: Optional[str] = None,
        acc_bits: Optional[int] = None,
        acc_overflow: Optional[str] = None,
    ) -> Output:
        """Runs one engine model (see :func:`conv2d` for the arguments)."""
        threads, acc_bits = _optional_int("threads", threads, 0), _optional_int("acc_bits", acc_bits, 0)
        return Output._from_native(self._native.run(engine, isa, threads, kernel, acc_bits, acc_overflow))

    def compare(
        self,
        engines: Optional[Sequence[str]] = None,
        *,
        isa: Optional[str] = None,
        threads: Optional[int] = None,
        kernel: Optional[str] = None,
    ) -> "Comparison":
        """Runs several engines and finds where they differ (see :func:`compare`)."""
        names = None if engines is None else _names("engines", engines)
        if names is not None and len(set(names)) < 2:
            raise _invalid("engines", f"{names!r}: name at least two engines to compare")
        outputs, refusals, real, modelled, report = self._native.compare(
            names, isa, _optional_int("threads", threads, 0), kernel
        )
        return Comparison(
            layer=self,
            outputs=[Output._from_native(o) for o in outputs],
            refusals=list(refusals),
            real=_frombuffer(real, "float64", self.output_shape),
            isa=modelled,
            _report=report,
        )

    def explain(
        self,
        engines: Optional[Sequence[str]] = None,
        *,
        isa: Optional[str] = None,
        threads: Optional[int] = None,
        kernel: Optional[str] = None,
        acc_bits: Optional[int] = None,
        acc_overflow: Optional[str] = None,
    ) -> "Explanation":
        """Accounts for every element where two engines differ (see :func:`explain`)."""
        pair = None
        threads, acc_bits = _optional_int("threads", threads, 0), _optional_int("acc_bits", acc_bits, 0)
        if engines is not None:
            names = _names("engines", engines)
            if len(names) != 2:
                raise _invalid("engines", f"{names!r}: name two engines, e.g. ('exact', 'fbgemm')")
            pair = (names[0], names[1])
        native = self._native.explain(pair, isa, threads, kernel, acc_bits, acc_overflow)
        return Explanation(native)

    def check(
        self,
        engine: Optional[str] = None,
        *,
        isa: Optional[str] = None,
        input_range: Optional[Tuple[int, int]] = None,
        use_input: bool = True,
    ) -> "CheckReport":
        """Predicts int16 pair saturation from the weights (see :func:`check`)."""
        text_json, text, modelled = self._native.check(
            engine,
            isa,
            None if input_range is None else tuple(_ints("input_range", input_range, 2)),
            _bool("use_input", use_input),
        )
        report = CheckReport(_json.loads(text_json))
        report._text = f"layer   {self.describe()}\nisa     {modelled}\n{text}"
        return report


def _layer(layer_or_input: Union[Layer, ArrayLike], weight: Any, bias: Any, params: Dict[str, Any]) -> Layer:
    if isinstance(layer_or_input, Layer):
        if weight is not None or bias is not None or params:
            names = sorted(params) + [n for n, v in (("weight", weight), ("bias", bias)) if v is not None]
            raise TypeError(f"a Layer carries its own tensors and parameters; unexpected: {', '.join(names)}")
        return layer_or_input
    if weight is None:
        raise TypeError("give a qconv.Layer, or the input and weight arrays with their parameters")
    return Layer(layer_or_input, weight, bias, **params)


def conv2d(
    input: Union[Layer, ArrayLike],
    weight: Optional[ArrayLike] = None,
    bias: Optional[ArrayLike] = None,
    *,
    engine: str = "exact",
    isa: Optional[str] = None,
    threads: Optional[int] = None,
    kernel: Optional[str] = None,
    acc_bits: Optional[int] = None,
    acc_overflow: Optional[str] = None,
    **params: Any,
) -> np.ndarray:
    """The quantized convolution as ``engine`` computes it, bit for bit.

    Takes a :class:`Layer`, or the arrays and keyword parameters of :class:`Layer`.

    Args:
        engine: ``exact`` (exact integer arithmetic, ties to even: the ground truth),
            ``float-path``, ``fbgemm``, ``x86``, ``qnnpack``, ``onnx``, ``onnxruntime``,
            ``tflite-reference``, ``tflite-reference-single-rounding``, ``tflite``.
        isa: the ISA modelled by ISA-dependent engines (``avx2``, ``avx-vnni``, ``avx512``,
            ``avx512-vnni``); default: the layer's recorded ISA, else this CPU's.
        threads: threads for the fast kernels (default: every core; results never depend on it).
        kernel: force a kernel set (``scalar``, ``avx2``, ``avx-vnni``, ``avx512-vnni``).
        acc_bits, acc_overflow: model an accumulator of ``acc_bits`` bits that ``saturate``\\ s or
            ``wrap``\\ s (TFLite engines).

    Returns:
        The output integers, ``[N, OC, OH, OW]``, as uint8, int8 or int32.

    Raises:
        InvalidLayerError: a parameter is invalid. RefusedError: the engine refuses the layer,
        as the real engine does.
    """
    layer = _layer(input, weight, bias, params)
    return layer.run(engine, isa=isa, threads=threads, kernel=kernel, acc_bits=acc_bits, acc_overflow=acc_overflow).values


@dataclass
class Comparison:
    """Several engines' results on one layer, and where they differ."""

    layer: Layer
    outputs: List[Output]
    """The engines that accepted the layer, in report order."""
    refusals: List[str]
    """Why the other engines refused it (when engines were not named)."""
    real: np.ndarray
    """The exact real value of every output element before rounding, in output units."""
    isa: str
    """The ISA modelled by ISA-dependent engines."""
    _report: Any = field(default=None, repr=False)

    def __getitem__(self, engine: str) -> np.ndarray:
        for o in self.outputs:
            if engine in (o.engine, o.label):
                return o.values
        raise KeyError(engine)

    @property
    def differing(self) -> np.ndarray:
        """``[n, c, h, w]`` of every element where at least two engines differ, one per row."""
        if not self.outputs:
            return np.zeros((0, 4), dtype=np.int64)
        first = self.outputs[0].values
        mask = np.zeros(first.shape, dtype=bool)
        for o in self.outputs[1:]:
            mask |= o.values.astype(np.int64) != first.astype(np.int64)
        return np.argwhere(mask)

    def pairwise(self) -> Dict[Tuple[str, str], int]:
        """Number of differing elements for every pair of engines (by label)."""
        out = {}
        for i, a in enumerate(self.outputs):
            for b in self.outputs[i + 1 :]:
                out[(a.label, b.label)] = int(np.count_nonzero(a.values.astype(np.int64) != b.values.astype(np.int64)))
        return out

    def table(self, limit: Optional[int] = 50) -> str:
        """The report ``qconv compare`` prints: the layer, the ISA modelled, each engine's route,
        the differing elements (at most ``limit``) with the exact real value, and the pairwise
        counts."""
        lines = [f"layer   {self.layer.describe()}"]
        if any(o.isa for o in self.outputs):
            lines.append(f"isa     {self.isa}")
        lines.append("")
        return "\n".join(lines) + "\n" + self._report.table(_optional_int("limit", limit, 0))

    def __repr__(self) -> str:
        return self.table()

    def _repr_html_(self) -> str:
        labels = [o.label for o in self.outputs]
        head = "".join(f"<th>{_html.escape(l)}</th>" for l in labels)
        rows = []
        for idx in self.differing[:200]:
            at = tuple(int(v) for v in idx)
            cells = "".join(f"<td>{int(o.values[at])}</td>" for o in self.outputs)
            rows.append(f"<tr><td>{list(at)}</td>{cells}<td>{self.real[at]:.6f}</td></tr>")
        total = int(np.prod(self.layer.output_shape))
        summary = "".join(
            f"<li>{_html.escape(a)} vs {_html.escape(b)}: {n} of {total}</li>" for (a, b), n in self.pairwise().items()
        )
        return (
            f"<div><p><code>{_html.escape(self.layer.describe())}</code></p>"
            f"<p>{len(self.differing)} of {total} output elements differ.</p><ul>{summary}</ul>"
            f"<table><tr><th>index</th>{head}<th>exact real value</th></tr>{''.join(rows)}</table></div>"
        )


def compare(
    input: Union[Layer, ArrayLike],
    weight: Optional[ArrayLike] = None,
    bias: Optional[ArrayLike] = None,
    *,
    engines: Optional[Sequence[str]] = None,
    isa: Optional[str] = None,
    threads: Optional[int] = None,
    kernel: Optional[str] = None,
    **params: Any,
) -> Comparison:
    """Runs several engine models on a layer and finds every element where they differ.

    Takes a :class:`Layer`, or the arrays and keyword parameters of :class:`Layer`. ``engines``
    defaults to every engine that accepts the layer (the others are listed in
    ``Comparison.refusals``); named engines must all accept it.
    """
    return _layer(input, weight, bias, params).compare(engines, isa=isa, threads=threads, kernel=kernel)


class _Elements(_abc.Sequence):
    """The differing elements of an explanation: a read-only sequence of dicts, converted from
    the Rust explanation a chunk at a time on first access (a whole ResNet layer can have
    hundreds of thousands, with millions of causes)."""

    _CHUNK = 2048

    def __init__(self, native: Any, count: int) -> None:
        self._native = native
        self._count = count
        self._chunks: Dict[int, List[Dict[str, Any]]] = {}

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._count))]
        i = int(i)
        if i < 0:
            i += self._count
        if not 0 <= i < self._count:
            raise IndexError("element index out of range")
        chunk = i // self._CHUNK
        if chunk not in self._chunks:
            start = chunk * self._CHUNK
            self._chunks[chunk] = _json.loads(self._native.elements_json(start, start + self._CHUNK))
        return self._chunks[chunk][i - chunk * self._CHUNK]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _abc.Sequence) or isinstance(other, (str, bytes)) or len(other) != len(self):
            return False
        return all(a == b for a, b in zip(self, other))

    def __repr__(self) -> str:
        return f"<{self._count} differing elements>"


class Explanation(dict):
    """Where two engines differ, element by element, with the integer evidence.

    A ``dict`` with exactly the structure of ``qconv explain --format json`` (schema
    ``qconv-explain/1``, documented in the repository's ``docs/explain.md``): ``engines``,
    ``summary`` (per engine and cause kind), ``largest_difference`` and ``elements`` (each
    differing element: every engine's output and accumulator, the exact accumulator and value,
    and the causes, which add up exactly). ``elements`` is a list; above
    ``Explanation.LAZY_ELEMENTS`` differing elements (a whole ResNet layer can have 200,000, with
    millions of causes) it is a read-only sequence converted a chunk at a time on access, and
    :meth:`to_json` gives the CLI's JSON text. ``repr()`` is the text report and
    ``_repr_html_`` the HTML report, so a notebook shows the heatmaps.
    """

    # Explanations with more differing elements than this keep them in Rust until read.
    LAZY_ELEMENTS = 20_000

    def __init__(self, native: Any) -> None:
        super().__init__(_json.loads(native.header_json()))
        count = int(self["differing_elements"])
        elements = _Elements(native, count)
        self["elements"] = elements if count > self.LAZY_ELEMENTS else list(elements)
        self._native = native

    def to_json(self) -> str:
        """The JSON text ``qconv explain --format json`` prints."""
        return self._native.json()

    def text(self, detail: int = 5, limit: Optional[int] = None) -> str:
        """The text report: the cause summary, ``detail`` elements told in words, and a table of
        at most ``limit`` rows."""
        return self._native.text(_int("detail", detail, 0), _optional_int("limit", limit, 0))

    def html(self, limit: Optional[int] = None) -> str:
        """The self-contained HTML report (per-channel heatmaps, histogram, causes, table)."""
        return self._native.html(_optional_int("limit", limit, 0))

    def save_html(self, path: Union[str, os.PathLike]) -> None:
        """Writes the HTML report to ``path``."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.html())

    @property
    def differing_elements(self) -> int:
        """Number of output elements where the engines differ."""
        return int(self["differing_elements"])

    def causes(self) -> Dict[str, int]:
        """Cause kind -> number of differing elements it appears in, over both engines."""
        out: Dict[str, int] = {}
        for s in self["summary"]:
            out[s["kind"]] = out.get(s["kind"], 0) + int(s["elements"])
        return out

    def __repr__(self) -> str:
        return f"layer   {self._native.description()}\n" + self.text(detail=5, limit=50)

    def _repr_html_(self) -> str:
        return self.html(limit=2000)


def explain(
    input: Union[Layer, ArrayLike],
    weight: Optional[ArrayLike] = None,
    bias: Optional[ArrayLike] = None,
    *,
    engines: Optional[Sequence[str]] = None,
    isa: Optional[str] = None,
    threads: Optional[int] = None,
    kernel: Optional[str] = None,
    acc_bits: Optional[int] = None,
    acc_overflow: Optional[str] = None,
    **params: Any,
) -> Explanation:
    """Accounts for every output element where two engines differ.

    Takes a :class:`Layer`, or the arrays and keyword parameters of :class:`Layer`. ``engines``
    names the two engines, e.g. ``("exact", "fbgemm")``; by default the float path and fbgemm
    when PyTorch takes the layer, the TFLite reference and XNNPACK for TFLite layers, else exact
    and the first saturating engine that accepts the layer. Each differing element's causes
    (``pair-saturation``, ``int32-wrap``, ``requant-rounding``, ``bias-rounding``,
    ``float-accumulation``, ``weight-quantization``, ``input-quantization``, ``output-clamp``,
    ``accumulator-overflow``, ``same-padding-underflow``) add up exactly to each engine's integer.
    """
    layer = _layer(input, weight, bias, params)
    return layer.explain(
        engines, isa=isa, threads=threads, kernel=kernel, acc_bits=acc_bits, acc_overflow=acc_overflow
    )


class _Report(dict):
    """A JSON report as a ``dict``, whose ``repr()`` is the text the CLI prints."""

    _text = ""

    @property
    def can_saturate(self) -> bool:
        """Whether something can saturate (see the subclass)."""
        return bool(self["can_saturate"])

    def __repr__(self) -> str:
        return self._text

    def _repr_html_(self) -> str:
        return f"<pre>{_html.escape(self._text)}</pre>"


class CheckReport(_Report):
    """The saturation check of a layer: a ``dict`` (schema ``qconv-check/1``) with the engine's
    route, the input range analysed, ``can_saturate`` (some input in the range, or the layer's
    own input, saturates a pair), every channel's pair sums, risky pairs and worst error
    (accumulator and output steps), what the layer's own input does, and fixes. ``repr()`` is the
    report ``qconv check`` prints."""


def check(
    input: Union[Layer, ArrayLike],
    weight: Optional[ArrayLike] = None,
    bias: Optional[ArrayLike] = None,
    *,
    engine: Optional[str] = None,
    isa: Optional[str] = None,
    input_range: Optional[Tuple[int, int]] = None,
    use_input: bool = True,
    **params: Any,
) -> CheckReport:
    """Predicts int16 pair saturation (fbgemm, x86, onnxruntime) from the weights and the input
    range, without running the convolution.

    ``input_range`` is the activation range as raw integers ``(lo, hi)`` (default: the whole
    input type); ``use_input`` also analyses the layer's own input. ``engine`` defaults to
    ``onnxruntime`` for ONNX nodes, else ``fbgemm``.
    """
    layer = _layer(input, weight, bias, params)
    return layer.check(engine, isa=isa, input_range=input_range, use_input=use_input)


def load_layer(spec: Union[str, os.PathLike], input: Optional[ArrayLike] = None) -> Layer:
    """Loads a layer as the CLI's LAYER argument names it.

    ``spec``: a TOML layer file, a golden case (``.json``, ``FILE.jsonl[.gz]#ID``),
    ``MODEL.onnx#NODE`` (a node name or an index from :func:`onnx_layers`) or
    ``MODEL.tflite#OP_INDEX``. An ONNX node's input is ``input`` (NCHW integers in the model's
    input type, e.g. captured from ONNX Runtime); without one the layer's input is a placeholder
    (``Layer.placeholder_input``) and only :meth:`Layer.check` and :meth:`Layer.with_input`
    make sense. Other layers carry their own input (use :meth:`Layer.with_input` to change it).
    """
    spec = os.fspath(spec)
    npy = None
    if input is not None:
        buf = _io.BytesIO()
        np.save(buf, np.asarray(input), allow_pickle=False)
        npy = buf.getvalue()
    is_onnx = ".onnx#" in spec
    placeholder = is_onnx and input is None
    return Layer._wrap(_native.load_layer(spec, npy, "input", placeholder))


def onnx_layers(path: Union[str, os.PathLike]) -> List[Dict[str, Any]]:
    """Every convolution node of an ONNX model (QLinearConv, ConvInteger, and QDQ groups), as
    ``qconv layers MODEL.onnx --format json`` lists them (index, name, input, weight, bias,
    output, conv geometry, how ONNX Runtime runs it, notes), plus ``spec``, the
    ``MODEL.onnx#INDEX`` string :func:`load_layer` takes."""
    path = os.fspath(path)
    text_json, _ = _native.onnx_layers(path)
    nodes = _json.loads(text_json)["nodes"]
    for node in nodes:
        node["spec"] = f"{path}#{node['index']}"
    return nodes


def tflite_layers(path: Union[str, os.PathLike]) -> List[Dict[str, Any]]:
    """Every operator of a TFLite model's first subgraph: ``index``, ``op``, and for the int8
    convolutions qconv reads, ``spec`` (``MODEL.tflite#INDEX``) and ``summary``; ``error`` says
    why a convolution does not load."""
    path = os.fspath(path)
    out = []
    for index, op, summary, error in _native.tflite_layers(path):
        entry: Dict[str, Any] = {"index": index, "op": op}
        if summary is not None and error is None:
            entry["spec"] = f"{path}#{index}"
            entry["summary"] = summary
        if error is not None:
            entry["error"] = error
        out.append(entry)
    return out


class ModelCheck(_Report):
    """The saturation audit of a whole ONNX model (schema ``qconv-model-check/1``): one entry
    per convolution node with a verdict per ISA; ``can_saturate`` says whether some node can
    saturate on some checked ISA. ``repr()`` is the table ``qconv check MODEL.onnx`` prints."""


def check_model(
    path: Union[str, os.PathLike],
    *,
    engine: Optional[str] = None,
    isas: Optional[Sequence[str]] = None,
    input_range: Optional[Tuple[int, int]] = None,
) -> ModelCheck:
    """Audits every convolution node of an ONNX model for int16 pair saturation on each ISA
    (default engine ``onnxruntime``; default ISAs: every ISA its results differ across)."""
    text_json, text = _native.check_model(
        os.fspath(path),
        engine,
        None if isas is None else _names("isas", isas),
        None if input_range is None else tuple(_ints("input_range", input_range, 2)),
    )
    report = ModelCheck(_json.loads(text_json))
    report._text = text
    return report


def engines() -> List[str]:
    """The engine models, in report order."""
    return [name for name, _, _ in _native.engines()]


def host_isa() -> str:
    """This CPU's ISA as the engine models name it (what ISA-dependent engines model by
    default)."""
    return _native.host_isa()


def kernels() -> List[str]:
    """The fast kernel sets this CPU can run, slowest first."""
    return list(_native.kernels())
