"""A stand-in for the IS-Net teacher in tests: an ONNX model written here byte by byte (protocol
buffers), so that no ``onnx`` package and no real teacher are needed.

The model is one 1x1 convolution with the teacher's input and output names and shapes: it maps the
teacher's input (RGB / 255 - 0.5) back to the red channel / 255, so a pure red object on a black or
blue background comes back as a mask of 1 on the object and 0 elsewhere.
"""

from __future__ import annotations

import struct
from pathlib import Path

SIZE = 1024
_FLOAT = 1  # TensorProto.FLOAT


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: int | str | bytes) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _tensor(name: str, dims: list[int], values: list[float]) -> bytes:
    return (b"".join(_field(1, dim) for dim in dims) + _field(2, _FLOAT) + _field(8, name)
            + _field(9, struct.pack(f"<{len(values)}f", *values)))


def _value_info(name: str, dims: list[int]) -> bytes:
    shape = b"".join(_field(1, _field(1, dim)) for dim in dims)
    return _field(1, name) + _field(2, _field(1, _field(1, _FLOAT) + _field(2, shape)))


def tiny_teacher_bytes(input_name: str = "input", output_name: str = "output") -> bytes:
    """The serialized model (ONNX IR 8, opset 13)."""
    node = _field(1, input_name) + _field(1, "weight") + _field(1, "bias") + _field(2, output_name) + _field(4, "Conv")
    graph = (_field(1, node) + _field(2, "tiny-teacher")
             + _field(5, _tensor("weight", [1, 3, 1, 1], [1.0, 0.0, 0.0])) + _field(5, _tensor("bias", [1], [0.5]))
             + _field(11, _value_info(input_name, [1, 3, SIZE, SIZE]))
             + _field(12, _value_info(output_name, [1, 1, SIZE, SIZE])))
    opset = _field(1, "") + _field(2, 13)
    return _field(1, 8) + _field(2, "hmhi-tests") + _field(7, graph) + _field(8, opset)


def write_tiny_teacher(path: Path, **names: str) -> Path:
    path.write_bytes(tiny_teacher_bytes(**names))
    return path
