"""The numpy <-> TensorProto codec: every dtype, both encodings, and byte-level compatibility with
the official TensorFlow / tensorflow-serving-api messages in both directions."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from deploykit.errors import InvalidInput
from deploykit.protocol import tensor_codec
from deploykit.protocol.protos import serving_pb2, tensor_pb2


def _sample(dtype, shape=(2, 3)) -> np.ndarray:
    rng = np.random.default_rng(0)
    if dtype == "string":
        return np.array([b"a", b"", "é".encode(), b"\x00\xff", b"long" * 10, b"z"], dtype=object).reshape(shape)
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = [int(info.min), int(info.max), 0, 1, int(info.max) // 3, int(info.min) // 2 if info.min else 7]
        return np.array(values, dtype=dtype).reshape(shape)
    return (rng.standard_normal(shape) * 100).astype(dtype)


DTYPES = [
    "float16",
    ml_dtypes.bfloat16,
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
    "string",
]


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.shape == b.shape
        and a.dtype == b.dtype
        and (list(a.ravel()) == list(b.ravel()) if a.dtype == object else np.array_equal(a, b))
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("tensor_content", [False, True])
@pytest.mark.parametrize("shape", [(2, 3), (), (0, 4)], ids=["matrix", "scalar", "empty"])
def test_round_trip(dtype, tensor_content: bool, shape) -> None:
    full = _sample(dtype)
    array = full.ravel()[:1].reshape(()) if shape == () else full[:0, :1].repeat(4, axis=1) if shape == (0, 4) else full
    proto = tensor_codec.from_ndarray(array, tensor_content=tensor_content)
    decoded = tensor_codec.to_ndarray(tensor_pb2.TensorProto.FromString(proto.SerializeToString()))
    assert _equal(decoded, array)


def test_tensor_content_decode_is_zero_copy() -> None:
    proto = tensor_codec.from_ndarray(np.arange(12, dtype=np.float32), tensor_content=True)
    decoded = tensor_codec.to_ndarray(proto)
    assert not decoded.flags.writeable and not decoded.flags.owndata  # a view over the message bytes


def test_single_typed_value_fills_the_shape() -> None:
    proto = tensor_pb2.TensorProto(dtype=tensor_codec.DT.DT_FLOAT, float_val=[2.5])
    proto.tensor_shape.dim.add(size=2)
    proto.tensor_shape.dim.add(size=3)
    assert np.array_equal(tensor_codec.to_ndarray(proto), np.full((2, 3), 2.5, np.float32))


def test_malformed_tensors_are_invalid_input() -> None:
    proto = tensor_codec.from_ndarray(np.zeros((2, 3), np.float32), tensor_content=True)
    proto.tensor_content = proto.tensor_content[:-4]
    with pytest.raises(InvalidInput, match=r"'x': tensor_content has 20 bytes; shape \[2, 3\] of DT_FLOAT needs 24"):
        tensor_codec.to_ndarray(proto, "x")
    proto = tensor_codec.from_ndarray(np.zeros((2, 3), np.int64))
    del proto.int64_val[-1]
    with pytest.raises(InvalidInput, match="int64_val holds 5 value"):
        tensor_codec.to_ndarray(proto, "x")
    with pytest.raises(InvalidInput, match="DT_RESOURCE"):
        tensor_codec.to_ndarray(tensor_pb2.TensorProto(dtype=tensor_codec.DT.DT_RESOURCE), "x")


# ------------------------------------------------------------------ compatibility with the official messages


@pytest.fixture(scope="module")
def tf():
    import tensorflow

    return tensorflow


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("tensor_content", [False, True])
def test_official_parses_ours(tf, dtype, tensor_content: bool) -> None:
    from tensorflow.core.framework import tensor_pb2 as tf_tensor_pb2

    array = _sample(dtype)
    wire = tensor_codec.from_ndarray(array, tensor_content=tensor_content).SerializeToString()
    theirs = tf.make_ndarray(tf_tensor_pb2.TensorProto.FromString(wire))
    if dtype == "string":
        assert list(theirs.ravel()) == list(array.ravel())
    else:
        assert theirs.dtype == array.dtype and np.array_equal(theirs, array)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_ours_parses_official(tf, dtype) -> None:
    array = _sample(dtype)
    wire = tf.make_tensor_proto(array).SerializeToString()  # TF picks tensor_content or typed fields
    assert _equal(tensor_codec.to_ndarray(tensor_pb2.TensorProto.FromString(wire)), array)


def test_predict_messages_are_wire_compatible(tf) -> None:
    from tensorflow_serving.apis import predict_pb2

    official = predict_pb2.PredictRequest()
    official.model_spec.name = "mlp"
    official.model_spec.version.value = 7
    official.model_spec.signature_name = "serving_default"
    official.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones((2, 64), np.float32)))
    official.output_filter.append("logits")

    ours = serving_pb2.PredictRequest.FromString(official.SerializeToString())
    assert ours.model_spec.name == "mlp" and ours.model_spec.version.value == 7
    assert ours.model_spec.WhichOneof("version_choice") == "version"
    assert list(ours.output_filter) == ["logits"]
    assert np.array_equal(tensor_codec.to_ndarray(ours.inputs["x"]), np.ones((2, 64), np.float32))
    # And back: the official parser reads our serialisation of the same request identically.
    assert predict_pb2.PredictRequest.FromString(ours.SerializeToString()) == official

    response = serving_pb2.PredictResponse()
    response.model_spec.name = "mlp"
    response.model_spec.version.value = 7
    response.outputs["logits"].CopyFrom(tensor_codec.from_ndarray(np.eye(3, dtype=np.float32)))
    theirs = predict_pb2.PredictResponse.FromString(response.SerializeToString())
    assert np.array_equal(tf.make_ndarray(theirs.outputs["logits"]), np.eye(3, dtype=np.float32))
    official_label = predict_pb2.PredictRequest()
    official_label.model_spec.version_label = "stable"
    assert (
        serving_pb2.PredictRequest.FromString(official_label.SerializeToString()).model_spec.version_label == "stable"
    )


def test_protos_coexist_with_tensorflows_in_one_process(tf) -> None:
    """deploykit's descriptors live in their own package: importing both registers no conflict."""
    from tensorflow_serving.apis import predict_pb2

    assert predict_pb2.PredictRequest.DESCRIPTOR.full_name == "tensorflow.serving.PredictRequest"
    assert serving_pb2.PredictRequest.DESCRIPTOR.full_name == "deploykit.tfs.PredictRequest"


def test_declared_shapes_are_bounded_before_allocation() -> None:
    """A tiny request declaring a huge shape (filled by one value) must not allocate it."""
    proto = tensor_pb2.TensorProto(dtype=tensor_codec.DT.DT_FLOAT, float_val=[1.0])
    for size in (2**20, 2**20, 2**20):
        proto.tensor_shape.dim.add(size=size)
    with pytest.raises(InvalidInput, match="would decode to .* bytes; .*--max_decoded_tensor_bytes"):
        tensor_codec.to_ndarray(proto, "x")
    proto = tensor_pb2.TensorProto(dtype=tensor_codec.DT.DT_FLOAT)
    for size in (2**32, 2**32):  # overflows int64 products
        proto.tensor_shape.dim.add(size=size)
    with pytest.raises(InvalidInput, match="would decode to"):
        tensor_codec.to_ndarray(proto, "x")


@pytest.mark.parametrize(
    ("dtype", "field", "value", "size"),
    [
        ("DT_FLOAT", "float_val", 1.0, 2**29 - 1),  # 43 bytes on the wire, 2 GiB decoded
        ("DT_STRING", "string_val", b"x", 2**28 - 1),  # 39 bytes on the wire, 2 GiB of pointers
    ],
)
def test_a_tiny_request_declaring_gigabytes_is_refused_without_allocating(dtype, field, value, size) -> None:
    """Issue 13 item 5: the default bound (1 GiB) is checked before anything is allocated."""
    import tracemalloc

    proto = tensor_pb2.TensorProto(dtype=getattr(tensor_codec.DT, dtype))
    getattr(proto, field).append(value)
    proto.tensor_shape.dim.add(size=size)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput, match="--max_decoded_tensor_bytes"):
            tensor_codec.to_ndarray(proto, "x")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    small = tensor_pb2.TensorProto(dtype=tensor_codec.DT.DT_FLOAT, float_val=[0.0] * 300)
    small.tensor_shape.dim.add(size=300)
    with pytest.raises(InvalidInput, match="limit is 1,000"):
        tensor_codec.to_ndarray(small, "x", 1000)


def test_more_than_64_dimensions_is_invalid_input_not_a_numpy_error() -> None:
    proto = tensor_pb2.TensorProto(dtype=tensor_codec.DT.DT_FLOAT, float_val=[1.0])
    for _ in range(65):
        proto.tensor_shape.dim.add(size=1)
    with pytest.raises(InvalidInput, match="65 dimensions; at most 64"):
        tensor_codec.to_ndarray(proto, "x")
