"""Type stubs of the Rust extension module (an implementation detail of the qconv package)."""

from typing import Any, Dict, List, Optional, Tuple

_TensorArgs = Tuple[str, List[int], bytes, Optional[List[float]], bool, List[int], bool, Optional[int]]

class Layer:
    @staticmethod
    def from_arrays(
        name: Optional[str],
        input: _TensorArgs,
        weight: _TensorArgs,
        bias: Optional[Tuple[str, bytes]],
        output_dtype: str,
        output_scale: Optional[float],
        output_zero_point: Optional[int],
        output_clamp: Optional[List[int]],
        activation: Optional[str],
        stride: Optional[List[int]],
        padding: Optional[List[int]],
        padding_mode: Optional[str],
        dilation: Optional[List[int]],
        groups: Optional[int],
        relu: bool,
        isa: Optional[str],
    ) -> "Layer": ...
    @property
    def name(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def input_shape(self) -> List[int]: ...
    @property
    def output_shape(self) -> List[int]: ...
    @property
    def expected(self) -> Dict[str, List[int]]: ...
    @property
    def errors(self) -> Dict[str, str]: ...
    @property
    def notes(self) -> List[str]: ...
    @property
    def placeholder_input(self) -> bool: ...
    @property
    def recorded_isa(self) -> Optional[str]: ...
    def describe(self) -> str: ...
    def parameters(self) -> Dict[str, Any]: ...
    def with_input(self, shape: List[int], data: bytes) -> "Layer": ...
    def run(
        self,
        engine_name: str,
        isa: Optional[str] = None,
        threads: Optional[int] = None,
        kernel: Optional[str] = None,
        acc_bits: Optional[int] = None,
        acc_overflow: Optional[str] = None,
    ) -> Dict[str, Any]: ...
    def compare(
        self,
        engines: Optional[List[str]] = None,
        isa: Optional[str] = None,
        threads: Optional[int] = None,
        kernel: Optional[str] = None,
    ) -> Tuple[List[Dict[str, Any]], List[str], bytes, str]: ...
    def explain(
        self,
        engines: Optional[Tuple[str, str]] = None,
        isa: Optional[str] = None,
        threads: Optional[int] = None,
        kernel: Optional[str] = None,
        acc_bits: Optional[int] = None,
        acc_overflow: Optional[str] = None,
    ) -> "Explanation": ...
    def check(
        self,
        engine_name: str,
        isa: Optional[str] = None,
        input_range: Optional[Tuple[int, int]] = None,
        use_input: bool = True,
    ) -> Tuple[str, str, str]: ...

class Explanation:
    def json(self) -> str: ...
    def text(self, detail: int = 5, limit: Optional[int] = None) -> str: ...
    def html(self, limit: Optional[int] = None) -> str: ...
    def __len__(self) -> int: ...

def load_layer(spec: str, npy: Optional[bytes] = None, npy_label: str = "input", placeholder: bool = False) -> Layer: ...
def onnx_layers(path: str) -> Tuple[str, str]: ...
def tflite_layers(path: str) -> List[Tuple[int, str, Optional[str], Optional[str]]]: ...
def check_model(
    path: str,
    engine_name: Optional[str] = None,
    isas: Optional[List[str]] = None,
    input_range: Optional[Tuple[int, int]] = None,
) -> Tuple[str, str]: ...
def engines() -> List[Tuple[str, str, bool]]: ...
def isas() -> List[str]: ...
def host_isa() -> str: ...
def kernels() -> List[str]: ...
def version() -> str: ...
