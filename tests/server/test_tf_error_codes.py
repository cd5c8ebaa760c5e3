"""A TensorFlow run that fails is answered with TensorFlow's own status code, as TF Serving passes it
through: a SavedModel built here has one signature per failure (a missing file, an uninitialized
table, an allocation too large, an unsupported cast, a failed assertion, corrupt compressed data),
served by a real server and called with the official tensorflow-serving-api stub and plain HTTP.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest

from deploykit.server import ServerConfig, ServerThread
from deploykit.server.model_config import ModelConfig

MODEL = "failing"


def _save_failing_model(path) -> None:
    import tensorflow as tf

    strings = tf.TensorSpec([None], tf.string)

    class Failing(tf.Module):
        @tf.function(input_signature=[strings])
        def read(self, x):
            return {"y": tf.io.read_file(x[0])[None]}

        @tf.function(input_signature=[strings])
        def lookup(self, x):
            table = tf.raw_ops.HashTableV2(key_dtype=tf.string, value_dtype=tf.float32)  # never initialized
            return {"y": tf.raw_ops.LookupTableFindV2(table_handle=table, keys=x, default_value=tf.constant(0.0))}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
        def allocate(self, x):
            return {"y": tf.reduce_sum(tf.fill(x[:1], 1.0))[None]}

        @tf.function(input_signature=[strings])
        def cast(self, x):
            return {"y": tf.raw_ops.Cast(x=x, DstT=tf.float32)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def positive(self, x):
            with tf.control_dependencies([tf.debugging.assert_positive(x, message="x must be positive")]):
                return {"y": tf.identity(x)}

        @tf.function(input_signature=[strings])
        def inflate(self, x):
            return {"y": tf.io.decode_compressed(x, "ZLIB")}

    module = Failing()
    names = ("read", "lookup", "allocate", "cast", "positive", "inflate")
    tf.saved_model.save(module, str(path), signatures={name: getattr(module, name) for name in names})


@pytest.fixture(scope="module")
def server(tmp_path_factory, dataplane):
    base = tmp_path_factory.mktemp("models") / MODEL
    _save_failing_model(base / "1")
    config = ServerConfig(models=[ModelConfig(MODEL, base)], grpc_port=0, rest_port=0, dataplane=dataplane)
    with ServerThread(config) as running:
        yield running


@pytest.fixture(scope="module")
def stub(server):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


CASES = [
    # signature, input, gRPC code, HTTP status, text TensorFlow's status carries
    ("read", np.array([b"/no/such/file"], object), grpc.StatusCode.NOT_FOUND, 404, "/no/such/file"),
    ("lookup", np.array([b"key"], object), grpc.StatusCode.FAILED_PRECONDITION, 400, "Table not initialized."),
    ("allocate", np.array([2**42], np.int64), grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "OOM when allocating"),
    ("cast", np.array([b"1.5"], object), grpc.StatusCode.UNIMPLEMENTED, 501, "Cast string to float is not supported"),
    ("positive", np.array([-1.0], np.float32), grpc.StatusCode.INVALID_ARGUMENT, 400, "x must be positive"),
    # DATA_LOSS has no deploykit counterpart: an internal failure, named as such
    ("inflate", np.array([b"not zlib"], object), grpc.StatusCode.INTERNAL, 500, "DataLossError: "),
]


@pytest.mark.parametrize(("signature", "x", "code", "http", "text"), CASES, ids=[c[0] for c in CASES])
def test_grpc_code_is_tensorflows(stub, signature: str, x, code, http: int, text: str) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = signature
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=60)
    assert info.value.code() == code, info.value.details()
    assert text in info.value.details()
    if code != grpc.StatusCode.INTERNAL:  # TF Serving's text: the C++ status alone, no Python preamble
        assert not info.value.details().startswith("Graph execution error")


@pytest.mark.parametrize(("signature", "x", "code", "http", "text"), CASES, ids=[c[0] for c in CASES])
def test_rest_status_follows_the_code(server, signature: str, x, code, http: int, text: str) -> None:
    instances = [v.decode() if isinstance(v, bytes) else v.item() for v in x]
    body = json.dumps({"signature_name": signature, "instances": instances}).encode()
    request = urllib.request.Request(f"{server.rest_target}/v1/models/{MODEL}:predict", data=body, method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=60)
    assert info.value.code == http
    assert text in json.loads(info.value.read())["error"]


def test_the_server_keeps_serving_after_the_failures(stub) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "positive"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([2.0, 3.0], np.float32)))
    assert list(stub.Predict(request, timeout=60).outputs["y"].float_val) == [2.0, 3.0]


@pytest.mark.parametrize(
    ("tf_error", "code"),
    [
        ("UnavailableError", grpc.StatusCode.UNAVAILABLE),
        ("DeadlineExceededError", grpc.StatusCode.DEADLINE_EXCEEDED),
        ("NotFoundError", grpc.StatusCode.NOT_FOUND),
        ("OutOfRangeError", None),  # no counterpart: the server answers INTERNAL
    ],
)
def test_codes_no_model_here_raises_map_the_same_way(tf_error: str, code) -> None:
    """TensorFlow's codes that no op above can raise on demand, mapped by the same table."""
    import tensorflow as tf

    from deploykit.errors import ModelNotFound
    from deploykit.protocol import status_codes as status
    from deploykit.runtimes.tensorflow import serving_error

    error = serving_error(getattr(tf.errors, tf_error)(None, None, "what TensorFlow said\n"))
    if code is None:
        assert error is None
        return
    assert status.grpc_code(error) == code and str(error) == "what TensorFlow said"
    assert not isinstance(error, ModelNotFound)  # an op's NOT_FOUND is not "servable not found"
