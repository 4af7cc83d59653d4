"""Open Inference Protocol tensors ↔ numpy: JSON `data` lists and the raw (binary) layout.

The raw layout is the one of the binary tensor data extension over HTTP and of
`raw_input_contents` / `raw_output_contents` over gRPC: the tensor's elements flattened in
row-major order, little-endian, without padding; BOOL is one byte per element; BYTES is each
element as a 4-byte little-endian length followed by that many bytes.

Decoded BYTES tensors are 1-D object arrays whose elements are `bytes` (raw, binary or gRPC) or
`str` (JSON); the model's input pipeline tells the two apart (an image in JSON is base64 text,
in binary the file itself).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from service.core import ServiceError

NUMERIC = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
BYTES = "BYTES"
DATATYPES = (*NUMERIC, BYTES)
_LENGTH = struct.Struct("<I")
# numpy kind of the parsed JSON values each target kind accepts
_JSON_KINDS = {"b": "b", "f": "fiu", "i": "iu", "u": "iu"}


def volume(name: str, shape: Sequence[int]) -> int:
    """Number of elements; every dimension must be a concrete size (≥ 0)."""
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise ServiceError(400, f"tensor `{name}` has shape {list(shape)}; sizes must be ≥ 0")
    return math.prod(shape)


def from_raw(name: str, datatype: str, shape: Sequence[int], raw: bytes) -> np.ndarray:
    """The raw layout → an array of `shape` (BYTES: flat object array of bytes)."""
    count = volume(name, shape)
    if datatype == BYTES:
        items = _split_bytes(name, raw)
        if len(items) != count:
            raise ServiceError(
                400,
                f"tensor `{name}` holds {len(items)} BYTES elements; shape {list(shape)} "
                f"needs {count}",
            )
        return _object_array(items)
    dtype = _numeric(name, datatype)
    if len(raw) != count * dtype.itemsize:
        raise ServiceError(
            400,
            f"tensor `{name}` has {len(raw)} bytes of data; {datatype} {list(shape)} needs "
            f"{count * dtype.itemsize}",
        )
    array = np.frombuffer(raw, dtype=dtype)
    if datatype == "BOOL" and array.size and np.frombuffer(raw, np.uint8).max() > 1:
        raise ServiceError(400, f"tensor `{name}`: BOOL bytes must be 0 or 1")
    return array.reshape(tuple(shape))


def from_json(name: str, datatype: str, shape: Sequence[int], data: Any) -> np.ndarray:
    """A JSON `data` value (flat or nested list, row-major) → an array of `shape`."""
    count = volume(name, shape)
    flat = _flatten(name, data)
    if len(flat) != count:
        raise ServiceError(
            400, f"tensor `{name}` has {len(flat)} data elements; shape {list(shape)} needs {count}"
        )
    if datatype == BYTES:
        if not all(isinstance(item, str) for item in flat):
            raise ServiceError(422, f"tensor `{name}`: BYTES data in JSON must be strings")
        return _object_array(flat)
    dtype = _numeric(name, datatype)
    try:
        parsed = np.asarray(flat)  # numbers → int64/float64, true/false → bool, else refused
    except (ValueError, OverflowError):
        parsed = np.asarray([], dtype=object)
    if parsed.size and parsed.dtype.kind not in _JSON_KINDS[dtype.kind]:
        raise ServiceError(400, f"tensor `{name}`: {datatype} data must be {_kind_words(dtype)}")
    if dtype.kind in "iu" and parsed.size:
        bounds = np.iinfo(dtype)
        if parsed.min() < bounds.min or parsed.max() > bounds.max:
            raise ServiceError(400, f"tensor `{name}`: a value does not fit {datatype}")
    return parsed.astype(dtype).reshape(tuple(shape))


def to_raw(array: np.ndarray, datatype: str) -> bytes:
    if datatype == BYTES:
        parts = []
        for item in array.reshape(-1):
            data = item.encode("utf-8") if isinstance(item, str) else bytes(item)
            parts += [_LENGTH.pack(len(data)), data]
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=NUMERIC[datatype]).tobytes()


def to_json(array: np.ndarray, datatype: str) -> list:
    """Flat row-major list (what Triton answers); floats as JSON numbers."""
    if datatype == BYTES:
        return [i.decode("utf-8", "replace") if isinstance(i, bytes) else i for i in array.flat]
    return np.asarray(array, dtype=NUMERIC[datatype]).reshape(-1).tolist()


def _numeric(name: str, datatype: str) -> np.dtype:
    if datatype not in NUMERIC:
        raise ServiceError(
            400, f"tensor `{name}` has unknown datatype {datatype[:16]!r}; known: {DATATYPES}"
        )
    return NUMERIC[datatype]


def _split_bytes(name: str, raw: bytes) -> list[bytes]:
    items, offset = [], 0
    view = memoryview(raw)
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise ServiceError(400, f"tensor `{name}`: BYTES data ends inside a length prefix")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > len(raw):
            raise ServiceError(
                400, f"tensor `{name}`: a BYTES element claims {length} bytes past the data's end"
            )
        items.append(bytes(view[offset : offset + length]))
        offset += length
    return items


def _flatten(name: str, data: Any, depth: int = 0) -> list:
    if not isinstance(data, list):
        return [data]
    if depth > 8:
        raise ServiceError(400, f"tensor `{name}`: data is nested deeper than 8 levels")
    if all(not isinstance(item, list) for item in data):
        return data
    return [x for item in data for x in _flatten(name, item, depth + 1)]


def _object_array(items: Sequence[object]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = list(items)
    return array


def _kind_words(dtype: np.dtype) -> str:
    return {"b": "true/false", "f": "numbers", "i": "integers", "u": "integers"}[dtype.kind]
