"""deploykit's server on real loopback ports, driven by deploykit's client (gRPC and REST), the
official tensorflow-serving-api stubs, and plain HTTP."""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest
from conftest import TFSERVING_TESTDATA, skip_rest_twice
from onnx import TensorProto, helper

from deploykit.client import AsyncClient, Client
from deploykit.errors import FailedPrecondition, InvalidInput, ModelNotFound
from deploykit.export.golden import load_golden
from deploykit.repository import GOLDEN
from deploykit.server import ServerConfig, ServerThread

ARTIFACTS = [
    f"{m}-{s}"
    for m in ("mlp", "cnn", "transformer")
    for s in ("torch-torchscript", "torch-pt2", "torch-onnx", "tf-savedmodel", "tf-onnx")
]


def _generic_onnx(path: Path) -> None:
    """An ONNX model deploykit did not export: two inputs with their own names and dtypes, fixed
    shapes, two outputs."""
    ids = helper.make_tensor_value_info("token_ids", TensorProto.INT64, [2, 3])
    scale = helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1])
    scaled = helper.make_tensor_value_info("scaled", TensorProto.FLOAT, [2, 3])
    doubled = helper.make_tensor_value_info("doubled_ids", TensorProto.INT64, [2, 3])
    nodes = [
        helper.make_node("Cast", ["token_ids"], ["ids_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["ids_f", "scale"], ["scaled"]),
        helper.make_node("Add", ["token_ids", "token_ids"], ["doubled_ids"]),
    ]
    graph = helper.make_graph(nodes, "generic", [ids, scale], [scaled, doubled])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10  # onnx 1.23 stamps 14, which ONNX Runtime refuses
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True)
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def repo(exported_zoo, tmp_path_factory) -> Path:
    """The exported zoo, a generic ONNX model, and a model that cannot load."""
    zoo_repo, _ = exported_zoo
    root = tmp_path_factory.mktemp("serve") / "models"
    shutil.copytree(zoo_repo, root)
    _generic_onnx(root / "generic" / "3" / "model.onnx")
    shutil.copytree(TFSERVING_TESTDATA / "bad_half_plus_two", root / "broken")
    return root


@pytest.fixture(scope="module")
def server(repo, dataplane):
    with ServerThread(ServerConfig(model_path=repo, grpc_port=0, rest_port=0, dataplane=dataplane)) as running:
        yield running


@pytest.fixture(scope="module", params=["grpc", "rest"])
def client(request, server, dataplane):
    skip_rest_twice(request.param, dataplane)
    target = server.grpc_target if request.param == "grpc" else server.rest_target
    with Client(target, timeout=30) as c:
        yield c


@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_every_runtime_serves_its_golden_outputs(repo, client: Client, artifact: str) -> None:
    for batch, (inputs, expected) in load_golden(repo / artifact / "1" / GOLDEN).items():
        got = client.predict(artifact, inputs)
        assert got["logits"].shape == (batch, 10) and got["logits"].dtype == np.float32
        np.testing.assert_allclose(got["logits"], expected["logits"], atol=1e-5, rtol=1e-5)


def test_any_onnx_model_with_its_own_names_and_dtypes(client: Client) -> None:
    signature = client.metadata("generic")["serving_default"]
    assert [(t.name, t.dtype, t.shape) for t in signature.inputs] == [
        ("scale", "float32", (1,)),
        ("token_ids", "int64", (2, 3)),
    ]
    ids = np.arange(6, dtype=np.int64).reshape(2, 3)
    out = client.predict("generic", {"token_ids": ids, "scale": np.array([0.5], np.float32)})
    np.testing.assert_array_equal(out["doubled_ids"], ids * 2)
    assert out["doubled_ids"].dtype == np.int64
    np.testing.assert_allclose(out["scaled"], ids * 0.5)
    only = client.predict("generic", {"token_ids": ids, "scale": np.array([1.0], np.float32)}, output_filter=["scaled"])
    assert list(only) == ["scaled"]
    with pytest.raises(InvalidInput, match=r"'token_ids' has shape \[3, 3\]; the signature expects \[2, 3\]"):
        client.predict("generic", {"token_ids": np.zeros((3, 3), np.int64), "scale": np.ones(1, np.float32)})


def test_failed_model_is_reported_while_others_serve(client: Client) -> None:
    (status,) = client.status("broken")
    assert status.state == "END" and status.version == 123
    assert "no servable artifact" in status.error_message
    with pytest.raises(ModelNotFound, match=r"Servable not found for request: Latest\(broken\)"):
        client.predict("broken", {"x": np.zeros((1, 1), np.float32)})
    assert client.status("mlp-torch-onnx")[0].state == "AVAILABLE"


# ------------------------------------------------------------------------------ bad input, exact status

X = np.zeros((2, 64), np.float32)


def _grpc_error(server, request) -> grpc.RpcError:
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(request, timeout=30)
    return info.value


def _official_request(model="mlp-torch-onnx", inputs=None, version=None, signature="", output_filter=()):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest(output_filter=list(output_filter))
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    for name, value in (inputs if inputs is not None else {"x": X}).items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


BAD_GRPC = {
    "unknown model": ({"model": "nope"}, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
    "unknown version": (
        {"version": 9},
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Specific(mlp-torch-onnx, 9)",
    ),
    "missing input": (
        {"inputs": {}},
        grpc.StatusCode.INVALID_ARGUMENT,
        "input size does not match signature: 0!=1 len({}) != len({x}). Sent extra: {}. Missing but required: {x}.",
    ),
    "extra input": ({"inputs": {"x": X, "y": X}}, grpc.StatusCode.INVALID_ARGUMENT, "Sent extra: {y}."),
    "wrong name": (
        {"inputs": {"images": X}},
        grpc.StatusCode.INVALID_ARGUMENT,
        "Sent extra: {images}. Missing but required: {x}.",
    ),
    "wrong dtype": (
        {"inputs": {"x": X.astype(np.float64)}},
        grpc.StatusCode.INVALID_ARGUMENT,
        "input tensor 'x' has dtype float64; the signature expects float32",
    ),
    "string dtype": (
        {"inputs": {"x": np.array([b"a"], dtype=object)}},
        grpc.StatusCode.INVALID_ARGUMENT,
        "input tensor 'x' has dtype string; the signature expects float32",
    ),
    "wrong rank": (
        {"inputs": {"x": np.zeros((2, 8, 8), np.float32)}},
        grpc.StatusCode.INVALID_ARGUMENT,
        "input tensor 'x' has shape [2, 8, 8]; the signature expects [-1, 64]",
    ),
    "wrong size": (
        {"inputs": {"x": np.zeros((2, 63), np.float32)}},
        grpc.StatusCode.INVALID_ARGUMENT,
        "input tensor 'x' has shape [2, 63]; the signature expects [-1, 64]",
    ),
    "unknown output": (
        {"output_filter": ["probs"]},
        grpc.StatusCode.INVALID_ARGUMENT,
        "output tensor alias not found in signature: probs Outputs expected to be in the set {logits}.",
    ),
    "duplicate output": (
        {"output_filter": ["logits", "logits"]},
        grpc.StatusCode.INVALID_ARGUMENT,
        "duplicate output tensor alias: logits",
    ),
    "unknown signature": (
        {"signature": "classify"},
        grpc.StatusCode.FAILED_PRECONDITION,
        'Serving signature key "classify" not found.',
    ),
}


@pytest.mark.parametrize("case", BAD_GRPC)
def test_bad_grpc_requests_get_tf_servings_status(server, case: str) -> None:
    kwargs, code, message = BAD_GRPC[case]
    error = _grpc_error(server, _official_request(**kwargs))
    assert error.code() == code
    assert message in error.details()


def test_malformed_protobuf_is_invalid_argument(server) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as channel:
        call = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")  # raw bytes both ways
        with pytest.raises(grpc.RpcError) as info:
            call(b"\x0a\xff\xff\xff", timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Could not parse PredictRequest" in info.value.details()


def test_deploykit_client_raises_the_matching_errors(server) -> None:
    with Client(server.grpc_target) as client:
        with pytest.raises(FailedPrecondition, match='Serving signature key "nope" not found'):
            client.predict("mlp-torch-onnx", {"x": X}, signature="nope")
        with pytest.raises(InvalidInput, match="Unrecognized servable version label: canary"):
            client.predict("mlp-torch-onnx", {"x": X}, label="canary")


def _http(server, method: str, path: str, body: bytes | None = None) -> tuple[int, str, object]:
    request = urllib.request.Request(server.rest_target + path, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers["Content-Type"], json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], json.loads(error.read())


BAD_REST = {
    "unknown model": (
        "POST",
        "/v1/models/nope:predict",
        b'{"instances": [[0]]}',
        404,
        "Servable not found for request: Latest(nope)",
    ),
    "unknown version": (
        "POST",
        "/v1/models/mlp-torch-onnx/versions/9:predict",
        b'{"instances": [[0]]}',
        404,
        "Servable not found for request: Specific(mlp-torch-onnx, 9)",
    ),
    "malformed json": ("POST", "/v1/models/mlp-torch-onnx:predict", b'{"instances": [', 400, "JSON Parse error"),
    "both keys": (
        "POST",
        "/v1/models/mlp-torch-onnx:predict",
        b'{"instances": [], "inputs": []}',
        400,
        "expecting only one of 'inputs' or 'instances'",
    ),
    "no key": ("POST", "/v1/models/mlp-torch-onnx:predict", b"{}", 400, "Missing 'inputs' or 'instances' key"),
    "empty instances": (
        "POST",
        "/v1/models/mlp-torch-onnx:predict",
        b'{"instances": []}',
        400,
        "No values in 'instances' array",
    ),
    "wrong size": (
        "POST",
        "/v1/models/mlp-torch-onnx:predict",
        b'{"instances": [[1, 2]]}',
        400,
        "input tensor 'x' has shape [1, 2]; the signature expects [-1, 64]",
    ),
    "wrong type": (
        "POST",
        "/v1/models/mlp-torch-onnx:predict",
        b'{"inputs": [["a", "b"]]}',
        400,
        "not of expected type: float",
    ),
    "unknown signature": (
        "POST",
        "/v1/models/mlp-torch-onnx:predict",
        b'{"signature_name": "nope", "instances": [[0]]}',
        400,
        'Serving signature name: "nope" not found in signature def',
    ),
    "missing name": ("GET", "/v1/models", None, 400, "Missing model name in request."),
    "malformed path": ("GET", "/v1/nothing/here", None, 400, "Malformed request: GET /v1/nothing/here"),
}


@pytest.mark.parametrize("case", BAD_REST)
def test_bad_rest_requests_get_tf_servings_status(server, case: str) -> None:
    method, path, body, expected_status, message = BAD_REST[case]
    status, content_type, document = _http(server, method, path, body)
    assert status == expected_status
    assert content_type.startswith("application/json")
    assert set(document) == {"error"} and message in document["error"]


def test_bad_requests_do_not_disturb_concurrent_good_ones(server) -> None:
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)

    async def run():
        async with AsyncClient(server.grpc_target) as client:
            expected = (await client.predict("mlp-torch-onnx", {"x": x}))["logits"]
            good = [client.predict("mlp-torch-onnx", {"x": x}) for _ in range(40)]
            bad = [client.predict("mlp-torch-onnx", {"x": x[:, :7]}) for _ in range(40)]
            results = await asyncio.gather(*good, *bad, return_exceptions=True)
            return expected, results[:40], results[40:]

    expected, good, bad = asyncio.run(run())
    assert all(np.array_equal(r["logits"], expected) for r in good)
    assert all(isinstance(r, InvalidInput) for r in bad)


# ------------------------------------------------------------------------------ clients deploykit did not write


def test_official_stubs_predict_metadata_status(server) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        prediction_service_pb2_grpc,
    )

    with grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(_official_request(), timeout=30)
        assert tf.make_ndarray(response.outputs["logits"]).shape == (2, 10)
        assert len(response.outputs["logits"].float_val) == 20  # TF Serving's default: typed fields
        assert response.model_spec.version.value == 1
        assert response.model_spec.signature_name == "serving_default"

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = "cnn-tf-savedmodel"
        metadata = stub.GetModelMetadata(request, timeout=30)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        assert metadata.metadata["signature_def"].Unpack(signature_map)
        sig = signature_map.signature_def["serving_default"]
        assert [d.size for d in sig.inputs["x"].tensor_shape.dim] == [-1, 8, 8, 1]
        assert sig.outputs["logits"].dtype == tf.float32.as_datatype_enum

        status_stub = model_service_pb2_grpc.ModelServiceStub(channel)
        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = "generic"
        (version,) = status_stub.GetModelStatus(status_request, timeout=30).model_version_status
        assert version.version == 3 and version.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE


def test_plain_http_row_and_columnar(server) -> None:
    rows = np.random.default_rng(1).standard_normal((3, 64)).round(3).tolist()
    status, _, row = _http(
        server, "POST", "/v1/models/mlp-torch-onnx:predict", json.dumps({"instances": rows}).encode()
    )
    assert status == 200 and len(row["predictions"]) == 3 and len(row["predictions"][0]) == 10
    status, _, col = _http(
        server, "POST", "/v1/models/mlp-torch-onnx/versions/1:predict", json.dumps({"inputs": {"x": rows}}).encode()
    )
    assert status == 200 and np.allclose(col["outputs"], row["predictions"])

    status, _, document = _http(server, "GET", "/v1/models/generic")
    assert document == {
        "model_version_status": [
            {"version": "3", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    status, _, metadata = _http(server, "GET", "/v1/models/generic/metadata")
    assert metadata["model_spec"] == {"name": "generic", "signature_name": "", "version": "3"}
    sig = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["token_ids"]["dtype"] == "DT_INT64"
    assert sig["inputs"]["token_ids"]["tensor_shape"] == {
        "dim": [{"size": "2", "name": ""}, {"size": "3", "name": ""}],
        "unknown_rank": False,
    }
    assert sig["method_name"] == "tensorflow/serving/predict"
    status, _, multi = _http(
        server,
        "POST",
        "/v1/models/generic:predict",
        json.dumps(
            {"instances": [{"token_ids": [1, 2, 3], "scale": 2.0}, {"token_ids": [4, 5, 6], "scale": 2.0}]}
        ).encode(),
    )
    # Row format splits dim 0 of each input: scale becomes [2] here, its declared shape is [1].
    assert status == 400 and "'scale' has shape [2]" in multi["error"]


def test_grpc_health_service(server) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"):
            answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_async_client_matches_the_sync_one(server, repo, transport: str) -> None:
    target = server.grpc_target if transport == "grpc" else server.rest_target
    inputs, expected = load_golden(repo / "transformer-tf-onnx" / "1" / GOLDEN)[2]

    async def run():
        async with AsyncClient(target) as client:
            ready = await client.wait_until_ready("transformer-tf-onnx", timeout=10)
            return ready, await client.predict("transformer-tf-onnx", inputs), await client.status("broken")

    ready, got, broken = asyncio.run(run())
    assert ready[0].state == "AVAILABLE"
    np.testing.assert_allclose(got["logits"], expected["logits"], atol=1e-5, rtol=1e-5)
    assert broken[0].state == "END"


def test_unreachable_target_raises_after_the_deadline() -> None:
    from conftest import free_port

    from deploykit.errors import Unreachable

    with Client(f"grpc://127.0.0.1:{free_port()}", timeout=0.5) as client, pytest.raises(Unreachable):
        client.predict("m", {"x": X})
    with Client(f"http://127.0.0.1:{free_port()}", timeout=0.5) as client, pytest.raises(Unreachable):
        client.wait_until_ready("m", timeout=0.5)


def test_rest_values_that_do_not_fit_are_rejected(server) -> None:
    status, _, document = _http(
        server,
        "POST",
        "/v1/models/generic:predict",
        json.dumps({"inputs": {"token_ids": [[1, 2, 3], [4, 5, 2**70]], "scale": [1.0]}}).encode(),
    )
    assert status == 400 and "not of expected type: int64" in document["error"]
    status, _, document = _http(
        server,
        "POST",
        "/v1/models/generic:predict",
        json.dumps({"inputs": {"token_ids": [[1, 2, 3], [4, 5]], "scale": [1.0]}}).encode(),
    )
    assert status == 400 and "do not form a tensor" in document["error"]


def test_savedmodel_with_unknown_rank_input(tmp_path: Path) -> None:
    """A SavedModel signature may declare an input of unknown rank: any shape is accepted, and
    metadata says unknown_rank (as TF Serving does)."""
    import tensorflow as tf

    module = tf.Module()
    module.scale = tf.Variable(3.0)

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32, name="values")])
    def serve(values):
        return {"tripled": values * module.scale}

    tf.saved_model.save(module, str(tmp_path / "tripler" / "1"), signatures={"serving_default": serve})
    with ServerThread(ServerConfig(model_path=tmp_path, grpc_port=0, rest_port=0)) as running:
        for target in (running.grpc_target, running.rest_target):
            with Client(target) as client:
                signature = client.metadata("tripler")["serving_default"]
                assert signature.inputs[0].shape is None
                for value in (np.float32(2.0), np.arange(3, dtype=np.float32), np.ones((2, 2, 2), np.float32)):
                    out = client.predict("tripler", {"values": np.asarray(value)})["tripled"]
                    np.testing.assert_allclose(out, np.asarray(value) * 3)
        status, _, metadata = _http(running, "GET", "/v1/models/tripler/metadata")
        info = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["values"]
        assert info["tensor_shape"] == {"dim": [], "unknown_rank": True}
