"""numpy ⇄ Open Inference Protocol (KServe v2) tensors, shared by deploykit's server and client.

A v2 tensor travels as a datatype string (``FP32``, ``BYTES``, ...), a shape and its data in one of
three forms: raw little-endian bytes (gRPC ``raw_input_contents``/``raw_output_contents``, or a blob
of Triton's REST binary extension), typed ``InferTensorContents`` fields, or a JSON ``data`` list.
``BYTES`` elements are each prefixed with a 4-byte little-endian length in raw form, plain in typed
and JSON form. FP16 and BF16 have no typed field and go raw (reference/open-inference-protocol.md).

Decoding is split in two so a server can check a tensor's declared datatype and shape against the
model (Triton's order and messages) before it touches the data: :class:`WireTensor` holds what the
request declared and decodes on :meth:`WireTensor.decode`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import DTypeLike

from deploykit.errors import InvalidInput
from deploykit.tensors import dtype_name, numpy_dtype

if TYPE_CHECKING:
    from deploykit.protocol.protos.v2_service_pb2 import InferTensorContents

#: Largest tensor a request may declare, checked before anything is allocated (as for TF tensors).
MAX_TENSOR_BYTES = 2**31 - 1

#: v2 datatype -> deploykit dtype name (deploykit.tensors).
DTYPE_NAMES = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BF16": "bfloat16",
    "BYTES": "string",
}
DATATYPES = {name: datatype for datatype, name in DTYPE_NAMES.items()}

#: v2 datatype -> InferTensorContents field (FP16/BF16 have none: raw only).
CONTENTS_FIELDS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def datatype(dtype: DTypeLike) -> str:
    """v2 datatype of a numpy dtype or deploykit dtype name (``string``/object arrays are ``BYTES``)."""
    name = dtype if isinstance(dtype, str) and dtype in DATATYPES else dtype_name(dtype)
    return DATATYPES[name]


def numpy_of(datatype_: str) -> np.dtype:
    """numpy dtype of a v2 datatype (little-endian); :class:`InvalidInput` for an unknown one."""
    if datatype_ not in DTYPE_NAMES:
        raise InvalidInput(f"invalid datatype '{datatype_}'; expected one of {', '.join(DTYPE_NAMES)}")
    return numpy_dtype(DTYPE_NAMES[datatype_]).newbyteorder("<") if datatype_ != "BYTES" else np.dtype(object)


def element_count(shape: Iterable[int], what: str) -> int:
    """Number of elements of ``shape``; negative dimensions and absurd sizes are :class:`InvalidInput`."""
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims):
        raise InvalidInput(f"{what}: shape {_dims(dims)} has a negative dimension; all dimensions must be given")
    count = math.prod(dims)
    if count > MAX_TENSOR_BYTES:
        raise InvalidInput(f"{what}: shape {_dims(dims)} has {count} elements, more than a request can carry")
    return count


def _dims(shape: Iterable[int]) -> str:
    """Triton's DimsListToString: ``[2,3]``."""
    return "[" + ",".join(str(int(d)) for d in shape) + "]"


# ------------------------------------------------------------------------------------------ BYTES


def serialize_bytes(array: np.ndarray) -> bytes:
    """BYTES elements in raw form: each a ``<I`` length then its bytes, row-major (str as UTF-8)."""
    parts = []
    for item in np.asarray(array, dtype=object).reshape(-1):
        data = item.encode() if isinstance(item, str) else bytes(item)
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def deserialize_bytes(buffer: bytes | memoryview, count: int, what: str) -> np.ndarray:
    """``count`` length-prefixed elements of ``buffer`` as an object array of ``bytes``."""
    view = memoryview(buffer)
    items: list[bytes] = []
    offset = 0
    while offset < len(view):
        if len(view) - offset < 4:
            raise InvalidInput(
                f"incomplete string length indicator for {what}, expecting 4 bytes but only "
                f"{len(view) - offset} bytes available"
            )
        (length,) = struct.unpack_from("<I", view, offset)
        offset += 4
        if len(items) + 1 > count:
            raise InvalidInput(f"unexpected number of string elements {len(items) + 1} for {what}, expecting {count}")
        if offset + length > len(view):
            raise InvalidInput(
                f"incomplete string data for {what}, expecting string of length {length} but only "
                f"{len(view) - offset} bytes available"
            )
        items.append(bytes(view[offset : offset + length]))
        offset += length
    if len(items) != count:
        raise InvalidInput(f"expected {count} string elements for {what}, got {len(items)}")
    result = np.empty(count, dtype=object)
    result[:] = items
    return result


# ------------------------------------------------------------------------------------------ decode


@dataclass
class WireTensor:
    """One tensor as a request declared it; :meth:`decode` turns its data into numpy.

    ``what`` names it in messages (Triton's ``input 'x' for model 'm'``); ``source`` returns the
    numpy array for a known element count (raw bytes, typed contents or JSON data behind it).
    """

    name: str
    datatype: str
    shape: list[int]
    source: Callable[[WireTensor, str], np.ndarray]
    #: Bytes of raw data (raw and binary forms), for Triton's byte-size check; None for typed/JSON data.
    raw_size: int | None = None

    def decode(self, what: str) -> np.ndarray:
        return self.source(self, what)


def raw_tensor(name: str, datatype_: str, shape: Iterable[int], buffer: bytes | memoryview) -> WireTensor:
    """A tensor whose data is raw bytes (gRPC ``raw_input_contents`` or a REST binary blob)."""
    return WireTensor(name, datatype_, [int(d) for d in shape], lambda t, what: from_raw(t, buffer, what), len(buffer))


def from_raw(tensor: WireTensor, buffer: bytes | memoryview, what: str) -> np.ndarray:
    """Raw little-endian bytes as an array of the tensor's shape (zero-copy for fixed-size types)."""
    count = element_count(tensor.shape, what)
    if tensor.datatype == "BYTES":
        return deserialize_bytes(buffer, count, what).reshape(tensor.shape)
    dtype = numpy_of(tensor.datatype)
    expected = count * dtype.itemsize
    if len(buffer) != expected:
        raise InvalidInput(f"input byte size mismatch for {what}. Expected {expected}, got {len(buffer)}")
    array = np.frombuffer(buffer, dtype=dtype).reshape(tensor.shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def contents_tensor(name: str, datatype_: str, shape: Iterable[int], contents: InferTensorContents) -> WireTensor:
    """A tensor whose data is typed ``InferTensorContents`` (or none at all: an empty tensor)."""
    return WireTensor(name, datatype_, [int(d) for d in shape], lambda t, what: from_contents(t, contents, what))


def from_contents(tensor: WireTensor, contents: InferTensorContents, what: str) -> np.ndarray:
    """Typed contents as an array; the field must be the datatype's and hold one value per element."""
    count = element_count(tensor.shape, what)
    field = CONTENTS_FIELDS.get(tensor.datatype)
    if field is None:
        raise InvalidInput(
            f"{what}: datatype {tensor.datatype} has no typed contents field; send it in raw_input_contents"
        )
    used = [f.name for f, _ in contents.ListFields()]
    if any(other != field for other in used):
        raise InvalidInput(
            f"unexpected explicit tensor data for {what} of type '{tensor.datatype}': got {', '.join(used)}, "
            f"expected {field}"
        )
    values = getattr(contents, field)
    if len(values) != count:
        raise InvalidInput(
            f"unexpected number of elements for {what}: expected {count} for shape "
            f"{_dims(tensor.shape)}, got {len(values)} in {field}"
        )
    if tensor.datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(tensor.shape)
    return np.asarray(values, dtype=numpy_of(tensor.datatype).newbyteorder("=")).reshape(tensor.shape)


def json_tensor(name: str, datatype_: str, shape: Iterable[int], data: Any) -> WireTensor:
    """A tensor whose data is a JSON ``data`` list (nested or flat, row-major; BYTES as strings)."""
    return WireTensor(name, datatype_, [int(d) for d in shape], lambda t, what: from_json(t, data, what))


def from_json(tensor: WireTensor, data: Any, what: str) -> np.ndarray:
    count = element_count(tensor.shape, what)
    if tensor.datatype in ("FP16", "BF16"):
        raise InvalidInput(
            f"receiving {tensor.datatype} data via JSON is not supported. Please use the binary data format for {what}"
        )
    flat = np.asarray(data if isinstance(data, list) else [data], dtype=object).reshape(-1)
    if flat.size != count:
        raise InvalidInput(
            f"unexpected number of elements for {what}: expected {count} for shape {_dims(tensor.shape)}, "
            f"got {flat.size} in data"
        )
    if tensor.datatype == "BYTES":
        if not all(isinstance(item, str) for item in flat):
            raise InvalidInput(f"{what}: BYTES data must be JSON strings")
        array = np.empty(count, dtype=object)
        array[:] = [item.encode() for item in flat]
        return array.reshape(tensor.shape)
    dtype = numpy_of(tensor.datatype).newbyteorder("=")
    if tensor.datatype == "BOOL" and not all(isinstance(item, bool) for item in flat):
        raise InvalidInput(f"{what}: BOOL data must be JSON true/false")
    try:
        return np.asarray(flat.tolist(), dtype=dtype).reshape(tensor.shape)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInput(f"{what}: data does not fit datatype {tensor.datatype}: {exc}") from None


# ------------------------------------------------------------------------------------------ encode


def to_raw(array: np.ndarray) -> bytes:
    """An array in raw form: little-endian row-major bytes, BYTES length-prefixed."""
    if datatype(array.dtype) == "BYTES":
        return serialize_bytes(array)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def fill_contents(contents: InferTensorContents, array: np.ndarray) -> None:
    """Write an array into typed ``InferTensorContents`` (FP16/BF16 cannot: callers send them raw)."""
    kind = datatype(array.dtype)
    field = CONTENTS_FIELDS.get(kind)
    if field is None:
        raise InvalidInput(f"datatype {kind} has no typed contents field; it must travel raw")
    flat = array.reshape(-1)
    if kind == "BYTES":
        getattr(contents, field).extend(item.encode() if isinstance(item, str) else bytes(item) for item in flat)
    else:
        getattr(contents, field).extend(flat.tolist())


def to_json(array: np.ndarray) -> list[Any]:
    """An array as a flat JSON ``data`` list (BYTES as UTF-8 strings, undecodable bytes replaced)."""
    if datatype(array.dtype) == "BYTES":
        return [item if isinstance(item, str) else bytes(item).decode("utf-8", "replace") for item in array.reshape(-1)]
    if array.dtype.kind == "f" and array.dtype.itemsize == 2:  # FP16/BF16 in JSON: as float32 values
        array = array.astype(np.float32)
    return array.reshape(-1).tolist()
