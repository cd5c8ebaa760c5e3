"""TF Serving's own test cases, one by one, against deploykit's compatible mode (issue 13 item 19).

Each case names the TF Serving test it comes from (``http_rest_api_handler_test.cc``,
``predict_impl_test.cc``, ``get_model_status_impl_test.cc``); the mapping of every case, including
the ones that cannot apply, is the table in docs/tfserving.md. The model is TF Serving's own
``saved_model_half_plus_two_cpu`` (version 123, label ``stable``).
"""

from __future__ import annotations

import shutil

import grpc
import httpx
import pytest
from conftest import TFSERVING_TESTDATA
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from deploykit.server import ServerConfig, ServerThread

MODEL = "half_plus_two"
PREDICT = f"/v1/models/{MODEL}:predict"

#: REST does not depend on the gRPC data plane: these run once, on the Python one (not generated
#: for native rather than skipped).
REST_ONLY = pytest.mark.parametrize("dataplane", ["python"], indirect=True, scope="module")


@pytest.fixture(scope="module")
def server(tmp_path_factory, dataplane):
    base = tmp_path_factory.mktemp("tfs") / MODEL
    shutil.copytree(TFSERVING_TESTDATA / "saved_model_half_plus_two_cpu", base)
    config = ServerConfig(
        model_path=base, model_name=MODEL, grpc_port=0, rest_port=0, labels=[(None, "stable", 123)], dataplane=dataplane
    )
    with ServerThread(config) as running:
        yield running


# (method, path, body) -> (HTTP status, exact error text or substring marked with "~")
HANDLER_CASES = {
    # UnsupportedApiCalls
    "GET /v1/foo": ("GET", "/v1/foo", "", 400, "Malformed request: GET /v1/foo"),
    "POST /v1/foo": ("POST", "/v1/foo", "", 400, "Malformed request: POST /v1/foo"),
    "GET /v1/models": ("GET", "/v1/models", "", 400, "Missing model name in request."),
    "GET debug path": ("GET", "/v1/models/debug/model_name", "", 400, "~Malformed request"),
    "POST /v1/models": ("POST", "/v1/models", "", 400, "~Malformed request"),
    "GET :predict": ("GET", "/v1/models/foo:predict", "", 400, "~Malformed request"),
    "GET version (singular)": ("GET", "/v1/models/foo/version/50:predict", "", 400, "~Malformed request"),
    "POST version (singular)": ("POST", "/v1/models/foo/version/50:regress", "", 400, "~Malformed request"),
    "version HELLO": ("POST", "/v1/models/foo/versions/HELLO:regress", "", 400, "~Malformed request"),
    # The URL is checked before the (empty) body, as in TF Serving.
    "version uint64 max": (
        "POST",
        f"/v1/models/foo/versions/{2**64 - 1}:regress",
        "",
        400,
        f"Failed to convert version: {2**64 - 1} to numeric.",
    ),
    "POST metadata": ("POST", "/v1/models/foo/metadata", "", 400, "~Malformed request"),
    "label (singular)": ("POST", "/v1/models/foo/label/some_label:regress", "", 400, "~Malformed request"),
    "version and label": ("POST", "/v1/models/foo/versions/50/labels/some_label:regress", "", 400, "~Malformed"),
    "label as version": ("POST", "/v1/models/foo/versions/some_label:regress", "", 400, "~Malformed request"),
    # kPathRegex: only /v1/ is the API; TF Serving's HTTP server answers 404 elsewhere.
    "/statuspage": ("GET", "/statuspage", "", 404, "~the REST API is under /v1/"),
    "/index": ("GET", "/index", "", 404, "~the REST API is under /v1/"),
    # PredictModelNameVersionErrors
    "unknown model": ("POST", "/v1/models/foo:predict", '{ "instances": [1] }', 404, "~Servable not found"),
    "unknown model version": ("POST", "/v1/models/foo/versions/50:predict", '{ "instances": [1] }', 404, "~not found"),
    "name99": ("POST", f"/v1/models/{MODEL}99:predict", '{ "instances": [1] }', 404, "~Servable not found"),
    # PredictRequestErrors
    "empty document": ("POST", PREDICT, "", 400, "JSON Parse error: The document is empty"),
    "invalid JSON": ("POST", PREDICT, "instances = [1, 2]", 400, "JSON Parse error: Invalid value. at offset: 0"),
    "incorrect type": ("POST", PREDICT, '{ "instances": ["x", "y"] }', 400, "~not of expected type: float"),
    "nonexistent label": (
        "POST",
        f"/v1/models/{MODEL}/labels/nonexistent:predict",
        '{ "instances": ["x", "y"] }',
        400,
        "Unrecognized servable version label: nonexistent",
    ),
    "signature_name type": (
        "POST",
        PREDICT,
        '{ "signature_name": 100 }',
        400,
        "'signature_name' key must be a string value.",
    ),
    # RapidJSON texts for other malformed documents, and a document that is no object.
    "whitespace only": ("POST", PREDICT, "  \n", 400, "JSON Parse error: The document is empty. at offset: 3"),
    "missing comma in array": ("POST", PREDICT, '{"instances": [1 2]}', 400, "~Missing a comma or ']' after an array"),
    "missing comma in object": ("POST", PREDICT, '{"a": 1 "b": 2}', 400, "~Missing a comma or '}' after an object"),
    "missing name": ("POST", PREDICT, "{1: 2}", 400, "~Missing a name for object member."),
    "unterminated string": ("POST", PREDICT, '{"instances', 400, "~Missing a closing quotation mark in string."),
    "not an object": ("POST", PREDICT, "[1, 2]", 400, "JSON Value: [1,2] Is not object"),
}

# Successful calls of the Predict/Regress/Classify/GetStatus tests: (method, path, body) -> JSON answer.
HANDLER_SUCCESS = {
    "Predict rows": (
        "POST",
        PREDICT,
        '{"instances": [[1.0, 2.0], [3.0, 4.0]]}',
        {"predictions": [[2.5, 3.0], [3.5, 4.0]]},
    ),
    "Predict version": (
        "POST",
        f"/v1/models/{MODEL}/versions/123:predict",
        '{"instances": [1.0, 2.0]}',
        {"predictions": [2.5, 3.0]},
    ),
    "Predict label": (
        "POST",
        f"/v1/models/{MODEL}/labels/stable:predict",
        '{"instances": [1.0, 2.0]}',
        {"predictions": [2.5, 3.0]},
    ),
    "Predict signature": (
        "POST",
        PREDICT,
        '{"signature_name": "serving_default", "instances": [3.0, 4.0]}',
        {"predictions": [3.5, 4.0]},
    ),
    "Predict columnar": (
        "POST",
        PREDICT,
        '{"signature_name": "serving_default", "inputs": [3.0, 4.0]}',
        {"outputs": [3.5, 4.0]},
    ),
    "Predict trailing text ignored": ("POST", PREDICT, '{"instances": [1.0]} trailing', {"predictions": [2.5]}),
    "Regress": (
        "POST",
        f"/v1/models/{MODEL}:regress",
        '{"signature_name": "regress_x_to_y", "examples": [ { "x": 80.0 } ] }',
        {"results": [42]},
    ),
    "Classify": (
        "POST",
        f"/v1/models/{MODEL}:classify",
        '{"signature_name": "classify_x_to_y", "examples": [ { "x": 20.0 } ] }',
        {"results": [[["", 12]]]},
    ),
    "GetStatus": (
        "GET",
        f"/v1/models/{MODEL}",
        None,
        {
            "model_version_status": [
                {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            ]
        },
    ),
    "GetStatus label": (
        "GET",
        f"/v1/models/{MODEL}/labels/stable",
        None,
        {
            "model_version_status": [
                {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            ]
        },
    ),
}


@pytest.mark.parametrize("case", HANDLER_CASES)
@REST_ONLY
def test_http_rest_api_handler_error_cases(server, dataplane, case: str) -> None:
    method, path, body, http_status, message = HANDLER_CASES[case]
    answer = httpx.request(method, server.rest_target + path, content=body, timeout=30)
    assert answer.status_code == http_status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    if message.startswith("~"):
        assert message[1:] in error
    else:
        assert error == message


@pytest.mark.parametrize("case", HANDLER_SUCCESS)
@REST_ONLY
def test_http_rest_api_handler_success_cases(server, dataplane, case: str) -> None:
    method, path, body, expected = HANDLER_SUCCESS[case]
    answer = httpx.request(method, server.rest_target + path, content=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json() == expected


def _channel(server):
    return grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}")


def test_predict_missing_or_empty_model_spec(server) -> None:
    """PredictImplTest.MissingOrEmptyModelSpec: no spec and a spec without a name are
    INVALID_ARGUMENT; a wrong name is NOT_FOUND."""
    with _channel(server) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        codes = []
        for prepare in (
            lambda r: None,
            lambda r: r.model_spec.SetInParent(),
            lambda r: setattr(r.model_spec, "name", "test"),
        ):
            prepare(request)
            with pytest.raises(grpc.RpcError) as caught:
                stub.Predict(request, timeout=30)
            codes.append(caught.value.code())
    assert codes == [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND]


def test_get_model_status_missing_or_empty_model_spec(server) -> None:
    """GetModelStatusImplTest.MissingOrEmptyModelSpecFailure, InvalidModelNameFailure."""
    with _channel(server) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(), timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == "Missing ModelSpec"
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "nonexistent_model"
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetModelStatus(request, timeout=30)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
