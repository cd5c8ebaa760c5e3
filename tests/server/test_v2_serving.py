"""deploykit serve speaks the Open Inference Protocol (KServe v2) beside TF Serving's API, driven by
Triton's own client (``tritonclient``, gRPC and HTTP, binary data on and off) and plain HTTP.

Small ONNX models built here (affine FP32 with versions and a label, a BYTES identity, an INT64
model with a fixed batch) keep these fast; tests/server/test_v2_zoo.py runs every zoo artifact.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest
from conftest import require_native
from onnx import TensorProto, helper
from onnx_builders import write_affine_onnx

from deploykit.protocol import v2_paths
from deploykit.protocol.protos import v2_service_pb2 as pb
from deploykit.server import ServerConfig, ServerThread
from deploykit.server.batching.options import BatchingOptions
from deploykit.server.model_config import VersionPolicy

tritonclient_grpc = pytest.importorskip("tritonclient.grpc")
import tritonclient.http as tritonhttp  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402


def _save(model, path: Path) -> None:
    model.ir_version = 10
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def _strings_onnx(path: Path) -> None:
    """``text: string[-1, 2] -> same: string[-1, 2]`` (Identity): BYTES both ways."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["same"])],
        "strings",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch", 2])],
        [helper.make_tensor_value_info("same", TensorProto.STRING, ["batch", 2])],
    )
    _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)


def _two_inputs_onnx(path: Path) -> None:
    """Fixed shapes, INT64 and FP32 inputs, two outputs (no batch dimension: max_batch_size 0)."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["ids"], ["ids_f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["ids_f", "scale"], ["scaled"]),
            helper.make_node("Add", ["ids", "ids"], ["doubled"]),
        ],
        "two",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 3]),
            helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("scaled", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("doubled", TensorProto.INT64, [2, 3]),
        ],
    )
    _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("v2") / "models"
    write_affine_onnx(root / "affine" / "1" / "model.onnx", 2.0, 1.0)
    write_affine_onnx(root / "affine" / "2" / "model.onnx", 2.0, 100.0)
    _strings_onnx(root / "strings" / "1" / "model.onnx")
    _two_inputs_onnx(root / "two" / "1" / "model.onnx")
    return root


@pytest.fixture(scope="module", params=["batching", "native-inline"])
def server(repo, request):
    """Twice: with dynamic batching (every ModelInfer through the event loop and the batcher), and
    without it on the native data plane, which computes a ModelInfer on the thread that received it
    (deploykit.server.native_inline) and leaves every error to the event loop's path."""
    batching = None
    if request.param == "batching":
        batching = BatchingOptions(max_batch_size=8, batch_timeout_micros=500, allowed_batch_sizes=(4, 8))
    else:
        require_native()
    config = ServerConfig(
        model_path=repo,
        grpc_port=0,
        rest_port=0,
        version_policy=VersionPolicy("all"),
        labels=[("affine", "stable", 1)],
        batching=batching,
        dataplane="auto" if batching else "native",
        file_system_poll_seconds=0,
    )
    with ServerThread(config) as running:
        yield running


@pytest.fixture(scope="module")
def grpc_url(server) -> str:
    return f"127.0.0.1:{server.server.grpc_port}"


@pytest.fixture(scope="module")
def http_url(server) -> str:
    return f"127.0.0.1:{server.server.rest_port}"


@pytest.fixture(scope="module")
def triton_grpc(grpc_url):
    client = tritonclient_grpc.InferenceServerClient(grpc_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def triton_http(http_url):
    client = tritonhttp.InferenceServerClient(http_url)
    yield client
    client.close()


def _infer(client, module, model: str, arrays: dict, *, binary: bool = True, outputs=None, version: str = ""):
    inputs = []
    for name, array in arrays.items():
        tensor = module.InferInput(name, list(array.shape), module.np_to_triton_dtype(array.dtype))
        if module is tritonhttp:
            tensor.set_data_from_numpy(array, binary_data=binary)
        else:
            tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    requested = None
    if outputs is not None:
        requested = [
            module.InferRequestedOutput(o, binary_data=binary)
            if module is tritonhttp
            else module.InferRequestedOutput(o)
            for o in outputs
        ]
    return client.infer(model, inputs, model_version=version, outputs=requested)


# ----------------------------------------------------------------------------------- health, metadata


def test_health_and_server_metadata(triton_grpc, triton_http) -> None:
    for client in (triton_grpc, triton_http):
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("affine") and client.is_model_ready("affine", "1")
        assert not client.is_model_ready("affine", "7")
    metadata = triton_grpc.get_server_metadata(as_json=True)
    assert metadata["name"] == "deploykit" and "binary_tensor_data" in metadata["extensions"]
    assert triton_http.get_server_metadata()["extensions"] == metadata["extensions"]


def test_model_metadata_has_versions_platform_and_full_shapes(triton_grpc, triton_http) -> None:
    expected = {
        "name": "affine",
        "versions": ["1", "2"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": ["-1", "4"]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": ["-1", "4"]}],
    }
    assert triton_grpc.get_model_metadata("affine", as_json=True) == expected
    via_http = triton_http.get_model_metadata("affine")
    assert via_http["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert via_http["versions"] == ["1", "2"]


def test_model_config_from_the_signature_and_the_batching(server, triton_grpc, triton_http) -> None:
    config = triton_grpc.get_model_config("affine").config
    if server.server.config.batching is None:
        assert (config.name, config.max_batch_size, config.HasField("dynamic_batching")) == ("affine", 0, False)
        return
    assert (config.name, config.platform, config.max_batch_size) == ("affine", "onnxruntime_onnx", 8)
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [("x", config.input[0].data_type, [4])]
    assert config.input[0].data_type == tritonclient_grpc.model_config_pb2.TYPE_FP32
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    via_http = triton_http.get_model_config("affine")
    assert via_http["max_batch_size"] == 8 and via_http["input"][0]["dims"] == [4]
    # Without a batch dimension: full shapes and max_batch_size 0.
    fixed = triton_grpc.get_model_config("two").config
    assert fixed.max_batch_size == 0 and list(fixed.input[0].dims) == [2, 3]


# ----------------------------------------------------------------------------------- inference


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_http_infer_binary_and_json(triton_http, binary: bool) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    result = _infer(triton_http, tritonhttp, "affine", {"x": x}, binary=binary, outputs=["y"])
    np.testing.assert_array_equal(result.as_numpy("y"), x * 2 + 100)
    assert result.get_response()["model_version"] == "2"
    both = _infer(
        triton_http,
        tritonhttp,
        "two",
        {"ids": np.ones((2, 3), np.int64), "scale": np.array([3], np.float32)},
        binary=binary,
    )
    np.testing.assert_array_equal(both.as_numpy("doubled"), np.full((2, 3), 2))
    np.testing.assert_array_equal(both.as_numpy("scaled"), np.full((2, 3), 3.0, np.float32))


def test_grpc_infer_raw_versions_and_labels(triton_grpc) -> None:
    x = np.ones((3, 4), np.float32)
    np.testing.assert_array_equal(_infer(triton_grpc, tritonclient_grpc, "affine", {"x": x}).as_numpy("y"), x * 2 + 100)
    v1 = _infer(triton_grpc, tritonclient_grpc, "affine", {"x": x}, version="1")
    np.testing.assert_array_equal(v1.as_numpy("y"), x * 2 + 1)
    assert v1.get_response().model_version == "1"
    stable = _infer(triton_grpc, tritonclient_grpc, "affine", {"x": x}, version="stable")
    assert stable.get_response().model_version == "1"


@pytest.mark.parametrize("module", ["grpc", "http-binary", "http-json"])
def test_bytes_tensors(triton_grpc, triton_http, module: str) -> None:
    text = np.array([[b"hello", b""], [b"\x00nul", "caf\u00e9".encode()]], dtype=np.object_)
    client, mod = (triton_grpc, tritonclient_grpc) if module == "grpc" else (triton_http, tritonhttp)
    result = _infer(client, mod, "strings", {"text": text}, binary=module != "http-json", outputs=["same"])
    got = result.as_numpy("same").tolist()
    if module == "http-json":  # tritonclient returns JSON strings as str
        got = [[item.encode() for item in row] for row in got]
    assert got == text.tolist()
    # ONNX Runtime's Python binding carries UTF-8 only: other bytes are refused with the reason.
    with pytest.raises(InferenceServerException, match="string input 'text' is not UTF-8"):
        _infer(client, mod, "strings", {"text": np.array([[b"\xff", b"x"]], np.object_)}, binary=True)


def test_typed_contents_request_gets_typed_contents(grpc_url) -> None:
    """A request in typed fields (what other clients send) is answered in typed fields."""
    request = pb.ModelInferRequest(model_name="two")
    ids = request.inputs.add(name="ids", datatype="INT64", shape=[2, 3])
    ids.contents.int64_contents.extend([1, 2, 3, 4, 5, 6])
    scale = request.inputs.add(name="scale", datatype="FP32", shape=[1])
    scale.contents.fp32_contents.append(0.5)
    request.outputs.add(name="doubled")
    with grpc.insecure_channel(grpc_url) as channel:
        call = channel.unary_unary(
            v2_paths.MODEL_INFER.path,
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        response, rpc = call.with_call(request)
    assert [o.name for o in response.outputs] == ["doubled"] and not response.raw_output_contents
    assert list(response.outputs[0].contents.int64_contents) == [2, 4, 6, 8, 10, 12]
    trailers = dict(rpc.trailing_metadata())
    assert trailers["x-deploykit-engine"].startswith("deploykit-serve/") and "compute;dur=" in trailers["server-timing"]


def test_http_answers_carry_server_timing_and_engine(http_url) -> None:
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]})
    request = urllib.request.Request(
        f"http://{http_url}/v2/models/affine/versions/1/infer", body.encode(), method="POST"
    )
    with urllib.request.urlopen(request) as answer:
        document = json.loads(answer.read())
        assert answer.headers["x-deploykit-engine"].startswith("deploykit-serve/")
        assert "queue;dur=" in answer.headers["server-timing"]
    assert document["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [1, 4], "data": [3.0, 5.0, 7.0, 9.0]}]
    assert document["model_version"] == "1"


# ----------------------------------------------------------------------------------- errors, as Triton's


def _grpc_error(client, *args, **kwargs) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        _infer(client, tritonclient_grpc, *args, **kwargs)
    return caught.value


def _http_error(client, *args, **kwargs) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        _infer(client, tritonhttp, *args, **kwargs)
    return caught.value


def test_errors_have_tritons_codes_and_texts(server, triton_grpc, triton_http) -> None:
    x = np.ones((1, 4), np.float32)
    cases = [
        (("nope", {"x": x}), {}, "StatusCode.NOT_FOUND", "404", "Request for unknown model: 'nope' is not found"),
        (
            ("affine", {"x": x}),
            {"version": "9"},
            "StatusCode.NOT_FOUND",
            "404",
            "Request for unknown model: 'affine' version 9 is not found",
        ),
        (
            ("affine", {"x": x.astype(np.float64)}),
            {},
            "StatusCode.INVALID_ARGUMENT",
            "400",
            "[request id: <id_unknown>] inference input 'x' data-type is 'FP64', but model 'affine' expects 'FP32'",
        ),
        (
            ("affine", {"x": np.ones((1, 5), np.float32)}),
            {},
            "StatusCode.INVALID_ARGUMENT",
            "400",
            "[request id: <id_unknown>] unexpected shape for input 'x' for model 'affine'. "
            "Expected [-1,4], got [1,5]. ",
        ),
        (
            ("affine", {"z": x}),
            {},
            "StatusCode.INVALID_ARGUMENT",
            "400",
            "unexpected inference input 'z' for model 'affine'",
        ),
        (
            ("affine", {"x": x}),
            {"outputs": ["nope"]},
            "StatusCode.INVALID_ARGUMENT",
            "400",
            "unexpected inference output 'nope' for model 'affine'",
        ),
        (
            ("affine", {"x": np.ones((9, 4), np.float32)}),
            {},
            "StatusCode.INVALID_ARGUMENT",
            "400",
            "[request id: <id_unknown>] inference request batch-size must be <= 8 for 'affine'",
        ),
        (
            ("two", {"ids": np.ones((2, 3), np.int64)}),
            {},
            "StatusCode.INVALID_ARGUMENT",
            "400",
            "[request id: <id_unknown>] expected 2 inputs but got 1 inputs for model 'two'. Got input(s) ['ids'], "
            "but missing required input(s) ['scale']. Please provide all required input(s).",
        ),
    ]
    if server.server.config.batching is None:  # no batch-size limit without batching
        cases = [case for case in cases if "batch-size" not in case[-1]]
    for args, kwargs, grpc_status, http_status, message in cases:
        got = _grpc_error(triton_grpc, *args, **kwargs)
        assert (got.status(), got.message()) == (grpc_status, message), message
        got = _http_error(triton_http, *args, **kwargs)
        assert (got.status(), got.message()) == (http_status, message), message


def test_malformed_http_bodies_are_400(http_url) -> None:
    for body, headers in [
        (b"{not json", {}),
        (b'{"inputs": [{"name": "x"}]}', {}),
        (b'{"inputs": []}xx', {"Inference-Header-Content-Length": "99"}),
        (
            json.dumps(
                {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]}
            ).encode()
            + b"short",
            {},
        ),
    ]:
        if "Inference-Header-Content-Length" not in headers and b"binary_data_size" in body:
            headers = {"Inference-Header-Content-Length": str(len(body) - 5)}
        request = urllib.request.Request(f"http://{http_url}/v2/models/affine/infer", body, headers, method="POST")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request)
        assert caught.value.code == 400
        assert json.loads(caught.value.read())["error"]


# ----------------------------------------------------------------------------------- statistics, repository


def test_statistics_count_this_servers_requests(triton_grpc, triton_http) -> None:
    before = triton_grpc.get_inference_statistics("affine", "1", as_json=True)["model_stats"][0]
    _infer(triton_grpc, tritonclient_grpc, "affine", {"x": np.ones((3, 4), np.float32)}, version="1")
    after = triton_http.get_inference_statistics("affine", "1")["model_stats"][0]
    assert after["inference_count"] == int(before.get("inference_count", 0)) + 3
    assert after["execution_count"] == int(before.get("execution_count", 0)) + 1
    success = after["inference_stats"]["success"]
    assert success["count"] == int(before["inference_stats"]["success"].get("count", 0)) + 1 and success["ns"] > 0
    everything = triton_http.get_inference_statistics()["model_stats"]
    assert {(s["name"], s["version"]) for s in everything} >= {("affine", "1"), ("affine", "2"), ("strings", "1")}


def test_repository_index_and_load_unload_refused_without_the_admin_flag(triton_grpc, triton_http) -> None:
    index = triton_grpc.get_model_repository_index(as_json=True)["models"]
    assert {"name": "affine", "version": "1", "state": "READY"} in index
    assert {"name": "strings", "version": "1", "state": "READY"} in triton_http.get_model_repository_index()
    with pytest.raises(InferenceServerException) as caught:
        triton_grpc.unload_model("affine")
    assert caught.value.status() == "StatusCode.PERMISSION_DENIED"
    assert "--enable-admin-apis" in caught.value.message()
    with pytest.raises(InferenceServerException) as caught:
        triton_http.load_model("affine")
    assert caught.value.status() == "403"
    assert triton_grpc.is_model_ready("affine")


def test_load_and_unload_with_the_admin_flag(repo) -> None:
    config = ServerConfig(model_path=repo, grpc_port=0, rest_port=0, admin_apis=True, file_system_poll_seconds=0)
    with ServerThread(config) as running:
        client = tritonclient_grpc.InferenceServerClient(f"127.0.0.1:{running.server.grpc_port}")
        client.unload_model("strings")
        assert not client.is_model_ready("strings")
        with pytest.raises(InferenceServerException, match="Request for unknown model: 'strings' is not found"):
            _infer(client, tritonclient_grpc, "strings", {"text": np.array([[b"a", b"b"]], np.object_)})
        client.load_model("strings")
        assert client.is_model_ready("strings")
        client.close()
