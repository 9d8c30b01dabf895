"""qconv: exact quantized convolution, bit-exact models of the engines that compute it (PyTorch
fbgemm / x86 / qnnpack, ONNX reference, ONNX Runtime, TFLite reference and XNNPACK), and the
integer evidence for every element where two of them differ.

The API works on plain NumPy integer arrays with explicit scales and zero points::

    import numpy as np, qconv
    y = qconv.conv2d(x_u8, w_s8, bias, input_scale=0.0127, input_zero_point=33,
                     weight_scale=0.0029, weight_zero_point=-11,
                     output_scale=0.0209, output_zero_point=0, engine="fbgemm", isa="avx2")
    print(qconv.explain(x_u8, w_s8, bias, ..., engines=("exact", "fbgemm")))

and on PyTorch modules without depending on PyTorch: ``qconv.from_torch(module, qx)``.
Computation runs in Rust with the GIL released.
"""

from . import _native
from ._api import (
    CheckReport,
    Comparison,
    Explanation,
    Layer,
    ModelCheck,
    Output,
    check,
    check_model,
    compare,
    conv2d,
    engines,
    explain,
    host_isa,
    kernels,
    load_layer,
    onnx_layers,
    tflite_layers,
)
from ._errors import (
    FileError,
    InvalidLayerError,
    NotModelledError,
    ParseError,
    QconvError,
    RefusedError,
)
from ._torch import TorchExplanation, from_torch

__version__: str = _native.version()

__all__ = [
    "CheckReport",
    "Comparison",
    "Explanation",
    "FileError",
    "InvalidLayerError",
    "Layer",
    "ModelCheck",
    "NotModelledError",
    "Output",
    "ParseError",
    "QconvError",
    "RefusedError",
    "TorchExplanation",
    "check",
    "check_model",
    "compare",
    "conv2d",
    "engines",
    "explain",
    "from_torch",
    "host_isa",
    "kernels",
    "load_layer",
    "onnx_layers",
    "tflite_layers",
]
