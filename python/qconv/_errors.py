"""The exceptions qconv raises.

Every error of the Rust core arrives as one of these classes, with the message the ``qconv``
command-line tool prints for the same problem (the CLI adds ``error: `` in front of it).
"""

from __future__ import annotations


class QconvError(Exception):
    """Base class of every error qconv raises."""


class InvalidLayerError(QconvError, ValueError):
    """A parameter is invalid: a scale that is 0, negative, NaN or infinite, a zero point
    outside its type, mismatched shapes, an unknown engine or ISA...

    ``field`` names the parameter (``input.scale``, ``weight.zero_point[3]``, ``conv.stride``,
    ``isa``, ...).
    """

    field: str = ""


class RefusedError(QconvError):
    """The engine refuses this layer, as the real engine does (PyTorch's fbgemm refuses int8
    activations, ONNX Runtime refuses some type combinations, ...)."""

    engine: str = ""
    reason: str = ""


class NotModelledError(QconvError):
    """qconv does not model what the engine computes for this layer (an ONNX node ONNX Runtime
    does not fuse, and runs as a float convolution)."""

    engine: str = ""
    reason: str = ""


class ParseError(QconvError, ValueError):
    """A file (layer file, golden case, ONNX or TFLite model, .npy input) could not be parsed.

    ``path`` names the file and ``location`` the line, field or element (may be empty).
    """

    path: str = ""
    location: str = ""


class FileError(QconvError, OSError):
    """A file could not be read. ``path`` (and OSError's ``filename``) names it; ``errno`` is
    the operating system's error number when there is one."""

    path: str = ""

    def __str__(self) -> str:
        # OSError would format "[Errno N] strerror: filename"; keep qconv's message.
        return str(self.args[0]) if self.args else ""


__all__ = [
    "QconvError",
    "InvalidLayerError",
    "RefusedError",
    "NotModelledError",
    "ParseError",
    "FileError",
]
