"""numpy ⇄ ``TensorProto`` for every dtype TF Serving carries.

Decoding reads ``tensor_content`` with ``np.frombuffer`` (zero-copy, read-only) or the typed
``*_val`` field of the dtype, converting once with numpy; a single typed value fills the whole shape,
as TensorFlow does. Encoding writes typed fields by default (TF Serving's default,
"AsProtoField") or ``tensor_content`` on request (cheaper: one memory copy).

Half and bfloat16 travel as their 16-bit patterns in ``half_val``; strings as ``bytes`` in
``string_val`` (numpy object arrays of ``bytes`` on this side).
"""

from __future__ import annotations

import math

import numpy as np

from deploykit.errors import InvalidInput
from deploykit.protocol.protos import tensor_pb2, types_pb2

DT = types_pb2.DataType

#: Default bound on one decoded tensor (``serve --max_decoded_tensor_bytes``). A client-declared
#: shape is checked against it before anything is allocated: a 43-byte request must not make the
#: server allocate gigabytes through a single broadcast value.
DEFAULT_MAX_TENSOR_BYTES = 2**30
#: Most dimensions numpy (and so any runtime here) can hold.
MAX_DIMS = 64


def _bfloat16() -> np.dtype | None:
    try:
        import ml_dtypes
    except ImportError:  # optional: bfloat16 tensors then fail with a clear message
        return None
    return np.dtype(ml_dtypes.bfloat16)


#: TF DataType -> (numpy dtype, typed field)
_BY_DT: dict[int, tuple[np.dtype, str]] = {
    DT.DT_HALF: (np.dtype(np.float16), "half_val"),
    DT.DT_FLOAT: (np.dtype(np.float32), "float_val"),
    DT.DT_DOUBLE: (np.dtype(np.float64), "double_val"),
    DT.DT_INT8: (np.dtype(np.int8), "int_val"),
    DT.DT_INT16: (np.dtype(np.int16), "int_val"),
    DT.DT_INT32: (np.dtype(np.int32), "int_val"),
    DT.DT_INT64: (np.dtype(np.int64), "int64_val"),
    DT.DT_UINT8: (np.dtype(np.uint8), "int_val"),
    DT.DT_UINT16: (np.dtype(np.uint16), "int_val"),
    DT.DT_UINT32: (np.dtype(np.uint32), "uint32_val"),
    DT.DT_UINT64: (np.dtype(np.uint64), "uint64_val"),
    DT.DT_BOOL: (np.dtype(np.bool_), "bool_val"),
    DT.DT_STRING: (np.dtype(object), "string_val"),
}
if (_bf16 := _bfloat16()) is not None:
    _BY_DT[DT.DT_BFLOAT16] = (_bf16, "half_val")

_DT_BY_NUMPY = {dtype: dt for dt, (dtype, _) in _BY_DT.items() if dt != DT.DT_STRING}

#: deploykit dtype name (see deploykit.tensors) -> TF DataType
DT_BY_NAME = {
    "float16": DT.DT_HALF,
    "bfloat16": DT.DT_BFLOAT16,
    "float32": DT.DT_FLOAT,
    "float64": DT.DT_DOUBLE,
    "int8": DT.DT_INT8,
    "int16": DT.DT_INT16,
    "int32": DT.DT_INT32,
    "int64": DT.DT_INT64,
    "uint8": DT.DT_UINT8,
    "uint16": DT.DT_UINT16,
    "uint32": DT.DT_UINT32,
    "uint64": DT.DT_UINT64,
    "bool": DT.DT_BOOL,
    "string": DT.DT_STRING,
}
NAME_BY_DT = {v: k for k, v in DT_BY_NAME.items()}


def dtype_label(dt: int) -> str:
    """``DT_FLOAT`` style name of a DataType value."""
    try:
        return DT.Name(dt)
    except ValueError:
        return f"DataType({dt})"


def data_type_of(array: np.ndarray) -> int:
    """TF DataType of a numpy array (object/bytes/str arrays are DT_STRING)."""
    if array.dtype.kind in "OSU":
        return DT.DT_STRING
    try:
        return _DT_BY_NUMPY[array.dtype]
    except KeyError:
        raise InvalidInput(f"numpy dtype {array.dtype} has no TensorFlow Serving equivalent") from None


def check_shape(name: str, shape: tuple[int, ...], itemsize: int, dtype: str, max_bytes: int) -> int:
    """The element count of a tensor of ``shape``; :class:`InvalidInput` when it has more than
    :data:`MAX_DIMS` dimensions or would decode to more than ``max_bytes`` (``itemsize`` bytes an
    element; a string counts as one pointer). Every decoder calls this before allocating."""
    if len(shape) > MAX_DIMS:
        raise InvalidInput(f"tensor {name!r} has {len(shape)} dimensions; at most {MAX_DIMS} are supported")
    # Python ints: no int64 overflow on absurd shapes. Zero dimensions do not excuse the others:
    # numpy refuses [0, 2**62, 2**62] as "too big", so the bound applies to the non-zero extent.
    extent = math.prod(max(d, 1) for d in shape) * max(itemsize, 1)
    if extent > max_bytes:
        raise InvalidInput(
            f"tensor {name!r}: shape {list(shape)} of {dtype} would decode to {extent:,} "
            f"bytes; the server's limit is {max_bytes:,} (--max_decoded_tensor_bytes)"
        )
    return math.prod(shape)


def _shape(proto: tensor_pb2.TensorProto, name: str) -> tuple[int, ...]:
    if proto.tensor_shape.unknown_rank:
        raise InvalidInput(f"input tensor {name!r} has unknown rank; a concrete shape is required")
    dims = tuple(d.size for d in proto.tensor_shape.dim)
    if any(d < 0 for d in dims):
        raise InvalidInput(f"input tensor {name!r} has a negative dimension in shape {list(dims)}")
    return dims


def decoded_bytes(proto: tensor_pb2.TensorProto, name: str, max_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> int:
    """The bytes :func:`to_ndarray` would allocate for ``proto``, checked (see :func:`check_shape`)
    without allocating: the front end decides from it whether decoding runs off the event loop."""
    dtype, _ = _dtype_and_field(proto, name)
    return check_shape(name, _shape(proto, name), dtype.itemsize, dtype_label(proto.dtype), max_bytes) * max(
        dtype.itemsize, 1
    )


def _dtype_and_field(proto: tensor_pb2.TensorProto, name: str) -> tuple[np.dtype, str]:
    try:
        return _BY_DT[proto.dtype]
    except KeyError:
        raise InvalidInput(
            f"tensor {name!r} has dtype {dtype_label(proto.dtype)}, which deploykit cannot carry"
        ) from None


def to_ndarray(
    proto: tensor_pb2.TensorProto, name: str = "tensor", max_bytes: int = DEFAULT_MAX_TENSOR_BYTES
) -> np.ndarray:
    """Decode a TensorProto; raise :class:`InvalidInput` naming ``name`` when it is malformed or
    would decode to more than ``max_bytes``."""
    dtype, field = _dtype_and_field(proto, name)
    shape = _shape(proto, name)
    count = check_shape(name, shape, dtype.itemsize, dtype_label(proto.dtype), max_bytes)

    if proto.tensor_content and proto.dtype != DT.DT_STRING:
        expected = count * dtype.itemsize
        if len(proto.tensor_content) != expected:
            raise InvalidInput(
                f"tensor {name!r}: tensor_content has {len(proto.tensor_content)} bytes; "
                f"shape {list(shape)} of {dtype_label(proto.dtype)} needs {expected}"
            )
        return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)

    values = getattr(proto, field)
    if proto.dtype == DT.DT_STRING:
        flat = np.empty(len(values), dtype=object)
        flat[:] = list(values)
    elif field == "half_val":  # 16-bit patterns carried in int32s
        flat = np.array(values, dtype=np.int32).astype(np.uint16).view(dtype)
    else:
        flat = np.array(values, dtype=dtype)
    if len(flat) == count:
        return flat.reshape(shape)
    if len(flat) == 1 and count > 1:  # TensorFlow fills the shape with a single value
        return np.full(shape, flat[0], dtype=dtype)
    raise InvalidInput(f"tensor {name!r}: {field} holds {len(flat)} value(s) but shape {list(shape)} needs {count}")


def from_ndarray(array: np.ndarray, *, tensor_content: bool = False) -> tensor_pb2.TensorProto:
    """Encode ``array``: typed ``*_val`` fields (default) or ``tensor_content`` bytes."""
    array = np.asarray(array)
    if array.dtype.kind == "U":  # text -> UTF-8 bytes, as TensorFlow's string tensors hold bytes
        array = np.vectorize(lambda s: s.encode("utf-8"), otypes=[object])(array)
    dt = data_type_of(array)
    proto = tensor_pb2.TensorProto(dtype=dt)
    proto.tensor_shape.dim.extend(tensor_pb2.TensorShapeProto.Dim(size=d) for d in array.shape)
    if dt == DT.DT_STRING:
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode("utf-8") for v in array.ravel())
        return proto
    if tensor_content:
        proto.tensor_content = np.ascontiguousarray(array).tobytes()
        return proto
    _, field = _BY_DT[dt]
    flat = array.ravel()
    if field == "half_val":
        flat = flat.view(np.uint16).astype(np.int32)
    getattr(proto, field).extend(flat.tolist())
    return proto
