"""deploykit's server on TF Serving's own reference models (tests/data/tfserving), answering as TF
Serving does: every signature, metadata equal to TF Serving's golden files, TF1 lenient shapes,
Classify/Regress on tf.Example inputs, stateful models, a broken model reported while the others
serve, and TF Serving's error codes and texts.

Driven by deploykit's clients (gRPC and REST), the official tensorflow-serving-api stubs and plain
HTTP. Expected values are the models' math (half_plus_two: y = 0.5x + 2, y2 = 0.5x + 3,
y3 = 0.5*x2 + 3; half_plus_three: y = 0.5x + 3) and TF Serving's own test expectations.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import TFSERVING_TESTDATA, skip_rest_twice

from deploykit.client import AsyncClient, Client
from deploykit.errors import FailedPrecondition, InvalidInput
from deploykit.server import ServerConfig, ServerThread
from deploykit.server.model_config import ModelConfig

TF1 = "default"  # saved_model_half_plus_two_cpu, under the name TF Serving's golden file uses
TWO_VERSIONS = "saved_model_half_plus_two_2_versions"
TF2 = "half_plus_two_tf2"
THREE = "half_plus_three"
COUNTER = "counter"
BAD = "bad_half_plus_two"


@pytest.fixture(scope="module")
def server(tmp_path_factory, dataplane):
    """Every reference model in one server. The two-version model is served at version 123 only,
    as in TF Serving's handler test that produced its golden metadata (specific { versions: 123 })."""
    two_versions = tmp_path_factory.mktemp("models") / TWO_VERSIONS
    shutil.copytree(TFSERVING_TESTDATA / TWO_VERSIONS / "00000123", two_versions / "00000123")
    sources = [
        ModelConfig(TF1, TFSERVING_TESTDATA / "saved_model_half_plus_two_cpu"),
        ModelConfig(TWO_VERSIONS, two_versions),
        ModelConfig(TF2, TFSERVING_TESTDATA / "saved_model_half_plus_two_tf2_cpu"),
        ModelConfig(THREE, TFSERVING_TESTDATA / "saved_model_half_plus_three"),
        ModelConfig(COUNTER, TFSERVING_TESTDATA / "saved_model_counter"),
        ModelConfig(BAD, TFSERVING_TESTDATA / "bad_half_plus_two"),
    ]
    with ServerThread(ServerConfig(models=sources, grpc_port=0, rest_port=0, dataplane=dataplane)) as running:
        yield running


@pytest.fixture(scope="module", params=["grpc", "rest"])
def client(request, server, dataplane):
    skip_rest_twice(request.param, dataplane)
    with Client(server.grpc_target if request.param == "grpc" else server.rest_target, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def stub(server):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _http(server, method: str, path: str, body: object = None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.rest_target + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.headers["Content-Type"] == "application/json"
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _predict_request(model: str, inputs: dict, signature: str = ""):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def _examples_request(kind: str, model: str, signature: str, examples: list[dict], context: dict | None = None):
    """An official ClassificationRequest / RegressionRequest with float features."""
    from tensorflow_serving.apis import classification_pb2, regression_pb2

    request = (classification_pb2.ClassificationRequest if kind == "classify" else regression_pb2.RegressionRequest)()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if context is None:
        target = request.input.example_list.examples
    else:
        target = request.input.example_list_with_context.examples
        for name, value in context.items():
            request.input.example_list_with_context.context.features.feature[name].float_list.value.append(value)
    for features in examples:
        example = target.add()
        for name, value in features.items():
            example.features.feature[name].float_list.value.append(value)
    return request


def _serialized_example(**features: float) -> bytes:
    import tensorflow as tf

    feature = {k: tf.train.Feature(float_list=tf.train.FloatList(value=[v])) for k, v in features.items()}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    return info.value


# ----------------------------------------------------------------------------------- predict


@pytest.mark.parametrize(
    ("model", "x", "expected"),
    [
        (TF1, [[1.0], [2.0], [-4.0]], [[2.5], [3.0], [0.0]]),
        (TWO_VERSIONS, [[6.0]], [[5.0]]),
        (TF2, [3.0], [3.5]),  # a TF2 module: x is TensorSpec([1])
        (THREE, [2.0, 4.0], [4.0, 5.0]),  # declared scalar: TF1 shapes are advisory
    ],
)
def test_predict_on_every_reference_model(client: Client, model: str, x, expected) -> None:
    got = client.predict(model, {"x": np.array(x, np.float32)})
    assert set(got) == {"y"}
    np.testing.assert_allclose(got["y"], np.array(expected, np.float32))
    assert got["y"].shape == np.shape(expected)


def test_official_stub_predict_typed_fields_and_model_spec(stub) -> None:
    from tensorflow.core.framework import types_pb2

    response = stub.Predict(_predict_request(TF1, {"x": np.array([[2.0]], np.float32)}), timeout=30)
    y = response.outputs["y"]
    assert y.dtype == types_pb2.DT_FLOAT
    assert list(y.float_val) == [3.0] and not y.tensor_content  # TF Serving's default: typed fields
    assert [d.size for d in y.tensor_shape.dim] == [1, 1]
    assert response.model_spec.name == TF1
    assert response.model_spec.version.value == 123
    assert response.model_spec.signature_name == "serving_default"


def test_tf1_inputs_of_any_shape_as_tf_serving_feeds_them(server, stub) -> None:
    """x is declared [-1,1]; TF Serving feeds the tensor as sent and the output keeps its shape."""
    response = stub.Predict(_predict_request(TF1, {"x": np.array([2.0, 3.0, 4.0], np.float32)}), timeout=30)
    assert [d.size for d in response.outputs["y"].tensor_shape.dim] == [3]
    assert list(response.outputs["y"].float_val) == [3.0, 3.5, 4.0]
    # TF Serving's own REST expectations (tensorflow_model_server_test.py, http_rest_api_handler_test.cc)
    assert _http(server, "POST", f"/v1/models/{TF1}:predict", {"instances": [2.0, 3.0, 4.0]}) == (
        200,
        {"predictions": [3.0, 3.5, 4.0]},
    )
    assert _http(server, "POST", f"/v1/models/{TF1}:predict", {"inputs": [2.0, 3.0, 4.0]}) == (
        200,
        {"outputs": [3.0, 3.5, 4.0]},
    )
    status, document = _http(
        server, "POST", f"/v1/models/{TWO_VERSIONS}:predict", {"instances": [[1.0, 2.0], [3.0, 4.0]]}
    )
    assert (status, document) == (200, {"predictions": [[2.5, 3.0], [3.5, 4.0]]})


def test_tf2_signatures_keep_their_shapes(client: Client) -> None:
    with pytest.raises(InvalidInput, match=r"input tensor 'x' has shape \[3\]; the signature expects \[1\]"):
        client.predict(TF2, {"x": np.array([1.0, 2.0, 3.0], np.float32)})


def test_predict_runs_classify_and_regress_signatures(client: Client) -> None:
    """method_name is not checked (TF Serving's default): Predict runs every kind of signature."""
    x2 = {"inputs": np.array([[1.0], [3.0]], np.float32)}
    np.testing.assert_allclose(client.predict(TF1, x2, signature="regress_x2_to_y3")["outputs"], [[3.5], [4.5]])
    np.testing.assert_allclose(
        client.predict(TWO_VERSIONS, x2, signature="classify_x2_to_y3")["scores"], [[3.5], [4.5]]
    )
    examples = np.array([_serialized_example(x=2.0), _serialized_example(x=4.0)], dtype=object)
    np.testing.assert_allclose(
        client.predict(TF1, {"inputs": examples}, signature="classify_x_to_y")["scores"], [[3.0], [4.0]]
    )
    np.testing.assert_allclose(
        client.predict(TF1, {"inputs": examples}, signature="regress_x_to_y2")["outputs"], [[4.0], [5.0]]
    )
    np.testing.assert_allclose(
        client.predict(TF2, {"inputs": examples}, signature="regress_x_to_y")["outputs"], [[3.0], [4.0]]
    )
    one = {"inputs": np.array([1.0], np.float32)}
    np.testing.assert_allclose(client.predict(TF2, one, signature="classify_x2_to_y3")["scores"], [3.5])


# ----------------------------------------------------------------------------------- classify / regress


@pytest.mark.parametrize("model", [TF1, TWO_VERSIONS, TF2])
def test_classify_and_regress_with_deploykit_client(client: Client, model: str) -> None:
    examples = [{"x": 2.0}, {"x": 10.0}]
    assert client.classify(model, examples, signature="classify_x_to_y") == [[("", 3.0)], [("", 7.0)]]
    assert client.regress(model, examples, signature="regress_x_to_y") == [3.0, 7.0]
    assert client.regress(model, examples, signature="regress_x_to_y2") == [4.0, 8.0]


def test_context_features_are_merged_into_each_example(client: Client) -> None:
    """An example's own value wins over the context's; a feature only in the context reaches all."""
    got = client.regress(TF1, [{}, {"x": 2.0}], context={"x": 10.0}, signature="regress_x_to_y")
    assert got == [7.0, 3.0]


def test_official_stubs_classify_and_regress(stub) -> None:
    # tensorflow_model_server_test.py testClassify / testRegress
    response = stub.Classify(_examples_request("classify", TF1, "classify_x_to_y", [{"x": 2.0}]), timeout=30)
    assert [[(c.label, c.score) for c in r.classes] for r in response.result.classifications] == [[("", 3.0)]]
    assert (response.model_spec.name, response.model_spec.version.value) == (TF1, 123)
    assert response.model_spec.signature_name == "classify_x_to_y"
    response = stub.Regress(_examples_request("regress", TF1, "regress_x_to_y", [{"x": 2.0}]), timeout=30)
    assert [r.value for r in response.result.regressions] == [3.0]
    assert response.model_spec.signature_name == "regress_x_to_y"
    with_context = _examples_request("regress", TF2, "regress_x_to_y2", [{"x": 4.0}, {}], context={"x": 0.0})
    assert [r.value for r in stub.Regress(with_context, timeout=30).result.regressions] == [5.0, 3.0]


def test_plain_http_classify_and_regress(server) -> None:
    # TF Serving's own expectations (tensorflow_model_server_test.py, http_rest_api_handler_test.cc)
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    assert _http(server, "POST", f"/v1/models/{TF1}:classify", body) == (200, {"results": [[["", 3.0]]]})
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}
    assert _http(server, "POST", f"/v1/models/{TF1}:regress", body) == (200, {"results": [3.0]})
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}
    assert _http(server, "POST", f"/v1/models/{TWO_VERSIONS}/versions/123:regress", body) == (200, {"results": [42.0]})
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]}
    assert _http(server, "POST", f"/v1/models/{TWO_VERSIONS}:classify", body) == (200, {"results": [[["", 12.0]]]})


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_async_client_classify_and_regress(server, transport: str) -> None:
    async def run():
        async with AsyncClient(server.grpc_target if transport == "grpc" else server.rest_target) as client:
            return await asyncio.gather(
                client.classify(TF1, [{"x": [4.0]}], signature="classify_x_to_y"),
                client.regress(TF1, [{"x": 4.0, "x2": 1.0}], signature="regress_x_to_y2"),
            )

    assert asyncio.run(run()) == [[[("", 4.0)]], [5.0]]


# ----------------------------------------------------------------------------------- multi inference

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


def _multi_request(tasks: list[tuple[str, str, str]], examples: list[dict]):
    """An official MultiInferenceRequest: tasks of (model, signature, method) on float-feature examples."""
    from tensorflow_serving.apis import inference_pb2

    request = inference_pb2.MultiInferenceRequest()
    for model, signature, method in tasks:
        task = request.tasks.add(method_name=method)
        task.model_spec.name = model
        task.model_spec.signature_name = signature
    for features in examples:
        example = request.input.example_list.examples.add()
        for name, value in features.items():
            example.features.feature[name].float_list.value.append(value)
    return request


@pytest.mark.parametrize("model", [TF1, TWO_VERSIONS])
def test_official_stub_multi_inference_classifies_and_regresses_at_once(stub, model: str) -> None:
    request = _multi_request(
        [
            (model, "classify_x_to_y", CLASSIFY_METHOD),
            (model, "regress_x_to_y", REGRESS_METHOD),
            (model, "regress_x_to_y2", REGRESS_METHOD),
        ],
        [{"x": 2.0}, {"x": 10.0}],
    )
    classified, regressed, regressed2 = stub.MultiInference(request, timeout=30).results
    assert classified.WhichOneof("result") == "classification_result"
    assert [[(c.label, c.score) for c in r.classes] for r in classified.classification_result.classifications] == [
        [("", 3.0)],
        [("", 7.0)],
    ]
    assert regressed.WhichOneof("result") == "regression_result"
    assert [r.value for r in regressed.regression_result.regressions] == [3.0, 7.0]
    assert [r.value for r in regressed2.regression_result.regressions] == [4.0, 8.0]
    for result, signature in zip(
        (classified, regressed, regressed2), ("classify_x_to_y", "regress_x_to_y", "regress_x_to_y2"), strict=True
    ):
        assert (result.model_spec.name, result.model_spec.version.value) == (model, 123)
        assert result.model_spec.signature_name == signature


def test_multi_inference_with_a_context(stub) -> None:
    request = _multi_request([(TF1, "regress_x_to_y", REGRESS_METHOD), (TF1, "classify_x_to_y", CLASSIFY_METHOD)], [])
    with_context = request.input.example_list_with_context
    with_context.context.features.feature["x"].float_list.value.append(10.0)
    with_context.examples.add()
    with_context.examples.add().features.feature["x"].float_list.value.append(2.0)
    regressed, classified = stub.MultiInference(request, timeout=30).results
    assert [r.value for r in regressed.regression_result.regressions] == [7.0, 3.0]
    assert [[c.score for c in r.classes] for r in classified.classification_result.classifications] == [[7.0], [3.0]]


@pytest.mark.parametrize(
    ("tasks", "code", "message"),
    [
        (
            [(TF1, "classify_x_to_y", CLASSIFY_METHOD), (TWO_VERSIONS, "regress_x_to_y", REGRESS_METHOD)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "All ModelSpecs in a MultiInferenceRequest must access the same model name.",
        ),
        (
            [(TF1, "classify_x_to_y", CLASSIFY_METHOD), ("", "regress_x_to_y", REGRESS_METHOD)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "Found ModelSpec with an empty model name.",
        ),
        (
            [(TF1, "regress_x_to_y", REGRESS_METHOD), (TF1, "regress_x_to_y", REGRESS_METHOD)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "Duplicate evaluation of signature: regress_x_to_y",
        ),
        (
            [(TF1, "regress_x_to_y", REGRESS_METHOD), (TF1, "nope", REGRESS_METHOD)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "Requested signature not found in model graph: nope",
        ),
        (
            [(TF1, "", "tensorflow/serving/predict")],
            grpc.StatusCode.UNIMPLEMENTED,
            "Unsupported signature method_name: tensorflow/serving/predict",
        ),
        (
            [(TF1, "classify_x_to_y", REGRESS_METHOD)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "No regression outputs found in SignatureDef: {classify_x_to_y}",
        ),
        # one Session::Run feeds every signature in TF Serving: x2:0 is not tf_example:0
        (
            [(TF1, "regress_x_to_y", REGRESS_METHOD), (TF1, "regress_x2_to_y3", REGRESS_METHOD)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "Input tensor must be the same for all Signatures.",
        ),
        # a TF2 export gives each signature its own input tensor
        (
            [(TF2, "classify_x_to_y", CLASSIFY_METHOD), (TF2, "regress_x_to_y", REGRESS_METHOD)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "Input tensor must be the same for all Signatures.",
        ),
        ([], grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest()"),
        (
            [("nope", "regress_x_to_y", REGRESS_METHOD)],
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Latest(nope)",
        ),
    ],
)
def test_multi_inference_errors_have_tf_servings_codes_and_texts(stub, tasks, code, message: str) -> None:
    error = _rpc_error(stub.MultiInference, _multi_request(tasks, [{"x": 1.0}]))
    assert (error.code(), error.details()) == (code, message.format_map(_debug_strings(TF1)))


def test_multi_inference_checks_the_tasks_before_the_input(stub) -> None:
    tasks = [(TF1, "regress_x_to_y", REGRESS_METHOD), (TF1, "regress_x_to_y", REGRESS_METHOD)]
    error = _rpc_error(stub.MultiInference, _multi_request(tasks, []))
    assert error.details() == "Duplicate evaluation of signature: regress_x_to_y"
    error = _rpc_error(stub.MultiInference, _multi_request(tasks[:1], []))
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Input is empty.")


# ----------------------------------------------------------------------------------- metadata and status


def _golden(name: str) -> dict:
    return json.loads((TFSERVING_TESTDATA / name).read_text())


@pytest.mark.parametrize(
    ("model", "golden"),
    [(TF1, "half_plus_two_model_metadata.json"), (TWO_VERSIONS, "saved_model_half_plus_two_2_versions_metadata.json")],
)
def test_rest_metadata_equals_tf_servings_golden_file(server, model: str, golden: str) -> None:
    assert _http(server, "GET", f"/v1/models/{model}/metadata") == (200, _golden(golden))


def _debug_strings(model: str) -> dict[str, str]:
    """Per signature of a reference model, the SignatureDef as TF Serving prints it in its errors
    (protobuf text format, of TensorFlow's own message)."""
    from google.protobuf import text_format

    directory = {TF1: "saved_model_half_plus_two_cpu"}[model]
    signature_defs = _saved_signature_defs(TFSERVING_TESTDATA / directory)
    return {name: text_format.MessageToString(definition) for name, definition in signature_defs.items()}


def _saved_signature_defs(model_dir: Path) -> dict:
    """The SignatureDefs in a saved_model.pb, read with TensorFlow's own protos."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((model_dir / "00000123" / "saved_model.pb").read_bytes())
    (meta_graph,) = saved.meta_graphs
    return dict(meta_graph.signature_def)


def test_tf2_rest_metadata_equals_tf_servings_golden_file() -> None:
    """The TF2 golden file describes this model served as saved_model_half_plus_two_2_versions.

    It predates the vendored saved_model.pb, which TF Serving regenerated later with TF 2.14: that
    export records a default for serving_default's x (0.0, shape [1]), checked here against the
    saved_model.pb; the golden file also lacks ``defaults`` on the initializer signature, whose map
    is empty. Apart from those two entries the answer must equal the golden file.
    """
    model_dir = TFSERVING_TESTDATA / "saved_model_half_plus_two_tf2_cpu"
    (saved_default,) = _saved_signature_defs(model_dir)["serving_default"].defaults.values()
    sources = [ModelConfig(TWO_VERSIONS, model_dir)]
    with ServerThread(ServerConfig(models=sources, grpc_port=None, rest_port=0)) as running:
        status, got = _http(running, "GET", f"/v1/models/{TWO_VERSIONS}/metadata")
    assert status == 200
    got_defs = got["metadata"]["signature_def"]["signature_def"]
    default = got_defs["serving_default"].pop("defaults")["x"]
    assert default["dtype"] == "DT_FLOAT" and default["float_val"] == list(saved_default.float_val) == [0.0]
    assert default["tensor_shape"] == {"dim": [{"size": "1", "name": ""}], "unknown_rank": False}
    assert got_defs["__saved_model_init_op"].pop("defaults") == {}
    expected = _golden("saved_model_half_plus_two_tf2_2_versions_metadata.json")
    expected_defs = expected["metadata"]["signature_def"]["signature_def"]
    assert expected_defs["serving_default"].pop("defaults") == {}
    assert got == expected


@pytest.mark.parametrize(
    ("model", "directory"),
    [
        (TF1, "saved_model_half_plus_two_cpu"),
        (TF2, "saved_model_half_plus_two_tf2_cpu"),
        (COUNTER, "saved_model_counter"),
    ],
)
def test_grpc_metadata_is_the_saved_signature_defs(stub, model: str, directory: str) -> None:
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = model
    response = stub.GetModelMetadata(request, timeout=30)
    assert (response.model_spec.name, response.model_spec.version.value) == (model, 123)
    assert response.model_spec.signature_name == ""
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    assert dict(signature_map.signature_def) == _saved_signature_defs(TFSERVING_TESTDATA / directory)


def test_model_status_grpc_and_rest(server) -> None:
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as channel:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = TF1
        (version,) = (
            model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=30).model_version_status
        )
    assert version.version == 123 and version.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert version.status.error_code == 0 and version.status.error_message == ""
    expected = {
        "model_version_status": [
            {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    for path in (f"/v1/models/{TF1}", f"/v1/models/{TF1}/versions/123"):
        assert _http(server, "GET", path) == (200, expected)


def test_bad_model_is_reported_while_the_others_serve(server, client: Client) -> None:
    (status,) = client.status(BAD)
    assert (status.version, status.state) == (123, "END")
    assert status.error_code != "OK" and "saved_model.pb" in status.error_message
    with pytest.raises(Exception, match=r"Servable not found for request: Latest\(bad_half_plus_two\)"):
        client.predict(BAD, {"x": np.array([[1.0]], np.float32)})
    np.testing.assert_allclose(client.predict(THREE, {"x": np.array([0.0], np.float32)})["y"], [3.0])


# ----------------------------------------------------------------------------------- stateful model


def test_counter_keeps_state_between_requests(server) -> None:
    with Client(server.grpc_target) as client:

        def call(signature: str, inputs: dict | None = None) -> float:
            (value,) = client.predict(COUNTER, inputs or {}, signature=signature).values()
            assert value.shape == ()
            return float(value)

        assert call("reset_counter") == 0.0
        assert call("incr_counter") == 1.0
        assert call("incr_counter") == 2.0
        assert call("get_counter") == 2.0
        assert call("incr_counter_by", {"delta": np.float32(3.0)}) == 5.0
        assert call("get_counter") == 5.0
    status, document = _http(
        server, "POST", f"/v1/models/{COUNTER}:predict", {"signature_name": "get_counter", "inputs": {}}
    )
    assert (status, document) == (200, {"outputs": 5.0})


# ----------------------------------------------------------------------------------- errors


def test_signature_errors_have_tf_servings_codes_and_texts(server, stub) -> None:
    error = _rpc_error(stub.Predict, _predict_request(TF1, {"x": np.array([1.0], np.float32)}, "nope"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == 'Serving signature key "nope" not found.'
    for kind, call in (("classify", stub.Classify), ("regress", stub.Regress)):
        error = _rpc_error(call, _examples_request(kind, TF1, "nope", [{"x": 1.0}]))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == "No signature was found with the name: nope"
        status, document = _http(
            server, "POST", f"/v1/models/{TF1}:{kind}", {"signature_name": "nope", "examples": [{"x": 1.0}]}
        )
        assert (status, document) == (400, {"error": "No signature was found with the name: nope"})
    # an empty signature name is serving_default, a predict signature whose input is x, not inputs
    error = _rpc_error(stub.Regress, _examples_request("regress", TF1, "", [{"x": 1.0}]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    serving_default = _debug_strings(TF1)["serving_default"]
    assert error.details() == f"No regression inputs found in SignatureDef: {serving_default}"
    error = _rpc_error(stub.Classify, _examples_request("classify", TF1, "regress_x_to_y", [{"x": 1.0}]))
    assert error.details() == (
        'Expected classification signature outputs to contain at least one of "classes" or "scores". '
        f"Signature was: {_debug_strings(TF1)['regress_x_to_y']}"
    )


def test_input_errors_have_tf_servings_codes_and_texts(server, stub) -> None:
    error = _rpc_error(stub.Predict, _predict_request(TF1, {"z": np.array([1.0], np.float32)}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("input size does not match signature: 1!=1 len({z}) != len({x}).")
    error = _rpc_error(stub.Predict, _predict_request(TF1, {"x": np.array([b"two"], object)}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("Expects arg[0] to be float but string is provided")
    # a classify/regress signature whose input is not a string tensor gets the examples all the same
    error = _rpc_error(stub.Regress, _examples_request("regress", THREE, "tensorflow/serving/regress", [{"x": 1.0}]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("Expects arg[0] to be float but string is provided")
    error = _rpc_error(stub.Classify, _examples_request("classify", TF1, "classify_x_to_y", []))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details() == "Input is empty."
    # a feature of the wrong kind fails inside the model's ParseExample: TF's own InvalidArgument
    status, document = _http(
        server, "POST", f"/v1/models/{TF1}:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 2}]}
    )
    assert status == 400 and "x" in document["error"] and "float" in document["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"signature_name": "classify_x_to_y"}, "key 'examples' is expected and was not found"),
        ({"examples": {"x": 1.0}}, "Expecting 'examples' value to be an list/array"),
        ({"examples": []}, "'examples' value is an empty array"),
        ({"examples": [[1.0]]}, "Example must be JSON object but got JSON Array"),
        ({"examples": [{"x": [1.0, "a"]}]}, "Unexpected element type in feature: x expecting type: float"),
        ({"examples": [{"x": None}]}, "Feature: x has element with unexpected JSON type: Null"),
        ({"examples": [{"x": 1.0}], "signature_name": 3}, "'signature_name' key must be a string value."),
    ],
)
def test_bad_rest_classify_bodies(server, body: dict, message: str) -> None:
    status, document = _http(server, "POST", f"/v1/models/{TF1}:classify", body)
    assert status == 400 and message in document["error"]


def test_deploykit_client_raises_the_matching_errors(client: Client) -> None:
    with pytest.raises(FailedPrecondition, match="nope"):  # FAILED_PRECONDITION, as TF Serving
        client.predict(TF1, {"x": np.array([[1.0]], np.float32)}, signature="nope")
    with pytest.raises(InvalidInput, match="No signature was found with the name: nope"):
        client.classify(TF1, [{"x": 1.0}], signature="nope")
    with pytest.raises(InvalidInput, match="Expected classification signature outputs to contain at least one of"):
        client.classify(TF1, [{"x": 1.0}], signature="regress_x_to_y")


def test_concurrent_requests_on_one_tf1_session(server) -> None:
    """Session callables are shared by the inference threads; concurrent requests each get their own answer."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> None:
        with Client(server.grpc_target) as client:
            for j in range(10):
                x = np.full((i + 1,), float(i * 10 + j), np.float32)
                np.testing.assert_allclose(client.predict(TF1, {"x": x})["y"], x * 0.5 + 2)
                assert client.regress(TF1, [{"x": float(j)}] * (i + 1), signature="regress_x_to_y") == [j * 0.5 + 2] * (
                    i + 1
                )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(8)))
