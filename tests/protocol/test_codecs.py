"""The TF Serving codecs, message by message: what one side encodes the other side decodes to the
same values (client request -> server, server response -> client), for gRPC and REST; the
error table read both ways for every code; and the client shell's steps, driven without a network."""

from __future__ import annotations

import json
import re

import grpc
import numpy as np
import pytest

from deploykit import errors
from deploykit.client import Client, _Send, _Shell, _Sleep
from deploykit.errors import InvalidInput
from deploykit.model_ref import ModelRef
from deploykit.protocol import examples, rest_json, status_codes, tfserving_grpc, tfserving_rest, wire
from deploykit.protocol.codec import VersionStatus
from deploykit.protocol.protos import example_pb2
from deploykit.protocol.protos import serving_pb2 as pb
from deploykit.tensors import Signature, TensorSpec
from deploykit.transports import Reply

SIGNATURE = Signature(
    (TensorSpec("x", "float32", (None, 3)), TensorSpec("ids", "int64", (None,))),
    (TensorSpec("logits", "float32", (None, 2)), TensorSpec("label", "string", None)),
)
INPUTS = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "ids": np.array([4, 5], np.int64)}
OUTPUTS = {"logits": np.array([[0.5, -1.0], [2.0, 3.25]], np.float32), "label": np.array([b"a", b"b"], object)}
REFS = [
    ModelRef("m"),
    ModelRef("m", version=3),
    ModelRef("m", label="stable"),
    ModelRef("m", version=2, signature="serving_default"),
]
EXAMPLES = [{"x": 2.0, "tags": [b"\x00\xff", b"b"]}, {"x": [1.0, 2.5], "n": 4}]
CONTEXT = {"country": b"fr"}
GRPC, REST = tfserving_grpc.TfServingGrpcCodec(), tfserving_rest.TfServingRestCodec()


def _same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for name, value in want.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
        assert got[name].tolist() == value.tolist(), name


def _wire(raw: bytes, message_type):
    """What arrives: the bytes parsed as the server parses them."""
    return message_type.FromString(raw)


# -- gRPC, message by message
@pytest.mark.parametrize("ref", REFS)
@pytest.mark.parametrize("tensor_content", [True, False])
def test_grpc_predict_request_round_trip(ref: ModelRef, tensor_content: bool) -> None:
    request = tfserving_grpc.TfServingGrpcCodec(tensor_content).predict(ref, INPUTS, ["logits"])
    assert request.path == "/tensorflow.serving.PredictionService/Predict"
    assert request.metadata == (((wire.TENSOR_CONTENT_KEY, "1"),) if tensor_content else ())
    received = _wire(request.body, pb.PredictRequest)
    assert tfserving_grpc.model_ref(received.model_spec) == ref
    assert list(received.output_filter) == ["logits"]
    _same(tfserving_grpc.predict_inputs(received), INPUTS)


@pytest.mark.parametrize("tensor_content", [True, False])
def test_grpc_predict_response_round_trip(tensor_content: bool) -> None:
    response = tfserving_grpc.predict_response(ModelRef("m", signature="s"), 7, OUTPUTS, tensor_content=tensor_content)
    assert tfserving_grpc.model_ref(response.model_spec) == ModelRef("m", 7, None, "s")
    _same(GRPC.predict(ModelRef("m"), INPUTS).decode(response.SerializeToString()), OUTPUTS)


@pytest.mark.parametrize("verb", ["classify", "regress"])
def test_grpc_examples_request_round_trip(verb: str) -> None:
    request = getattr(GRPC, verb)(ModelRef("m", 1, None, "sig"), EXAMPLES, CONTEXT)
    received = _wire(request.body, pb.ClassificationRequest if verb == "classify" else pb.RegressionRequest)
    assert tfserving_grpc.model_ref(received.model_spec) == ModelRef("m", 1, None, "sig")
    # the REST body of the same examples reaches the server as the same serialized examples
    rest_body = json.loads(getattr(REST, verb)(ModelRef("m"), EXAMPLES, CONTEXT).body)
    via_grpc = [example_pb2.Example.FromString(e) for e in examples.serialized(received.input)]
    via_rest = [example_pb2.Example.FromString(e) for e in examples.serialized(examples.parse_request(rest_body))]
    assert via_grpc == via_rest and len(via_grpc) == len(EXAMPLES)
    assert via_grpc[0].features.feature["country"].bytes_list.value == [b"fr"]
    assert via_grpc[0].features.feature["tags"].bytes_list.value == [b"\x00\xff", b"b"]


def test_grpc_classification_and_regression_responses_round_trip() -> None:
    results = [[("cat", 0.75), ("dog", 0.25)], [("", 1.5)]]
    response = pb.ClassificationResponse()
    tfserving_grpc.fill_classifications(response.result, results)
    assert GRPC.classify(ModelRef("m"), EXAMPLES).decode(response.SerializeToString()) == results
    regression = pb.RegressionResponse()
    tfserving_grpc.fill_regressions(regression.result, [0.5, -2.0])
    assert GRPC.regress(ModelRef("m"), EXAMPLES).decode(regression.SerializeToString()) == [0.5, -2.0]


def test_grpc_metadata_round_trip() -> None:
    request = GRPC.metadata(ModelRef("m", label="canary"))
    received = _wire(request.body, pb.GetModelMetadataRequest)
    assert tfserving_grpc.model_ref(received.model_spec) == ModelRef("m", label="canary")
    assert list(received.metadata_field) == ["signature_def"]
    signature_map = pb.SignatureDefMap()
    signature_map.signature_def["serving_default"].CopyFrom(tfserving_grpc.signature_def(SIGNATURE))
    response = tfserving_grpc.metadata_response("m", 4, signature_map)
    assert request.decode(response.SerializeToString()) == {"serving_default": _sorted(SIGNATURE)}


def test_grpc_status_round_trip() -> None:
    request = GRPC.status(ModelRef("m", version=2, label="ignored"))
    assert tfserving_grpc.model_ref(_wire(request.body, pb.GetModelStatusRequest).model_spec) == ModelRef("m", 2)
    response = pb.GetModelStatusResponse()
    response.model_version_status.extend(
        [tfserving_grpc.version_status(2, "AVAILABLE"), tfserving_grpc.version_status(1, "END", "broken file")]
    )
    assert request.decode(response.SerializeToString()) == [
        VersionStatus(2, "AVAILABLE", "OK", ""),
        VersionStatus(1, "END", "UNKNOWN", "broken file"),
    ]


# -- REST, document by document
@pytest.mark.parametrize("ref", REFS)
def test_rest_predict_round_trip(ref: ModelRef) -> None:
    request = REST.predict(ref, INPUTS, None, {ref.signature or "serving_default": SIGNATURE})
    assert request.path == tfserving_rest.model_path(ref) + ":predict"
    document = rest_json.parse_body(request.body)
    assert rest_json.signature_name(document) == ref.signature
    inputs, row_format = rest_json.decode_inputs(document, SIGNATURE)
    assert not row_format
    _same(inputs, INPUTS)
    answer = rest_json.dumps(rest_json.encode_outputs(OUTPUTS, row_format=False))
    _same(request.decode(answer), OUTPUTS)
    filtered = REST.predict(ref, INPUTS, ["label"], {ref.signature or "serving_default": SIGNATURE})
    _same(filtered.decode(answer), {"label": OUTPUTS["label"]})


def test_rest_predict_with_an_unknown_signature_fails_before_sending() -> None:
    with pytest.raises(errors.SignatureNotFound, match='"nope" not found'):
        REST.predict(ModelRef("m", signature="nope"), INPUTS, None, {"serving_default": SIGNATURE})


def test_rest_classification_and_regression_round_trip() -> None:
    results = [[("cat", 0.75), ("dog", 0.25)]]
    document = rest_json.dumps({"results": [[[label, score] for label, score in c] for c in results]})
    assert REST.classify(ModelRef("m"), EXAMPLES).decode(document) == results
    assert REST.regress(ModelRef("m"), EXAMPLES).decode(rest_json.dumps({"results": [1.5, 2]})) == [1.5, 2.0]


def test_rest_metadata_and_status_round_trip() -> None:
    signature_map = pb.SignatureDefMap()
    signature_map.signature_def["serving_default"].CopyFrom(tfserving_grpc.signature_def(SIGNATURE))
    metadata = REST.metadata(ModelRef("m", 3))
    assert (metadata.path, metadata.body) == ("/v1/models/m/versions/3/metadata", None)
    document = rest_json.dumps(tfserving_rest.metadata_document("m", 3, signature_map))
    assert metadata.decode(document) == {"serving_default": _sorted(SIGNATURE)}
    status = REST.status(ModelRef("m", label="ignored"))
    assert (status.path, status.body) == ("/v1/models/m", None)
    response = pb.GetModelStatusResponse()
    response.model_version_status.append(tfserving_grpc.version_status(5, "LOADING"))
    assert status.decode(rest_json.dumps(tfserving_rest.proto_json(response))) == [
        VersionStatus(5, "LOADING", "OK", "")
    ]


def _sorted(signature: Signature) -> Signature:
    """Metadata answers list tensors by name."""
    return Signature(
        tuple(sorted(signature.inputs, key=lambda t: t.name)), tuple(sorted(signature.outputs, key=lambda t: t.name))
    )


# -- the error table, both directions, every code
@pytest.mark.parametrize("cls", list(status_codes.GRPC_CODES))
def test_every_error_class_maps_to_a_code_and_back(cls) -> None:
    code = status_codes.grpc_code(cls("x"))
    assert code == status_codes.GRPC_CODES[cls]
    raised = status_codes.error_for(code, "what the server said")
    assert isinstance(raised, cls) and str(raised) == "what the server said"
    assert status_codes.grpc_code(raised) == code  # and the client's error maps to the same code again
    # over REST the status carries the code (where statuses are shared, to the error's base class)
    via_http = status_codes.error_for(status_codes.code_for_http(status_codes.http_status(code)), "m")
    assert status_codes.http_status(status_codes.grpc_code(via_http)) == status_codes.http_status(code)


@pytest.mark.parametrize("code", list(grpc.StatusCode))
def test_every_grpc_code_reads_back(code: grpc.StatusCode) -> None:
    http = status_codes.http_status(code)
    assert status_codes.http_status(status_codes.code_for_http(http)) == http
    error = status_codes.error_for(code, "m")
    assert isinstance(error, errors.ServingError)
    if code in status_codes.ERRORS:
        assert status_codes.grpc_code(error) == code
    else:
        assert type(error) is errors.ServingError


def test_client_reading_of_codes() -> None:
    assert type(status_codes.error_for(grpc.StatusCode.NOT_FOUND, "m")) is errors.ModelNotFound
    assert status_codes.code_for_http(400) == grpc.StatusCode.INVALID_ARGUMENT
    assert status_codes.code_for_http(500) == grpc.StatusCode.INTERNAL
    assert status_codes.code_for_http(418) == grpc.StatusCode.UNKNOWN
    assert isinstance(status_codes.error_for(grpc.StatusCode.DEADLINE_EXCEEDED, "m"), errors.DeadlineExceeded)
    assert isinstance(status_codes.error_for(grpc.StatusCode.UNIMPLEMENTED, "m"), errors.Unimplemented)


# -- the shell's steps, with scripted replies instead of a transport
def _drive(steps, replies: list[Reply]) -> tuple[object, list]:
    """Run an API method's steps, answering each send with the next reply; (result, steps seen)."""
    seen, value = [], None
    try:
        while True:
            step = steps.send(value)
            seen.append(step)
            value = replies.pop(0) if isinstance(step, _Send) else None
    except StopIteration as done:
        return done.value, seen


def _shell(target: str = "grpc://127.0.0.1:1") -> _Shell:
    return _Shell(target, timeout=5)


def test_shell_retries_unavailable_then_decodes() -> None:
    response = pb.RegressionResponse()
    tfserving_grpc.fill_regressions(response.result, [1.0])
    replies = [
        Reply(grpc.StatusCode.UNAVAILABLE, message="draining"),
        Reply(grpc.StatusCode.OK, response.SerializeToString()),
    ]
    result, seen = _drive(_shell()._regress("m", [{"x": 1.0}]), replies)
    assert result == [1.0]
    assert [type(s) for s in seen] == [_Send, _Sleep, _Send]


@pytest.mark.parametrize(
    ("code", "raised"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidInput),
        (grpc.StatusCode.NOT_FOUND, errors.ModelNotFound),
        (grpc.StatusCode.UNIMPLEMENTED, errors.Unimplemented),
        (grpc.StatusCode.INTERNAL, errors.RuntimeFailure),
        (grpc.StatusCode.DEADLINE_EXCEEDED, errors.Unreachable),  # no answer within the call's deadline
        (grpc.StatusCode.DATA_LOSS, errors.ServingError),
    ],
)
def test_shell_raises_from_the_table(code: grpc.StatusCode, raised: type) -> None:
    with pytest.raises(raised, match="said so"):
        _drive(_shell()._status("m"), [Reply(code, message="said so")])


def test_rest_predict_fetches_signatures_once() -> None:
    shell = _shell("http://127.0.0.1:1")
    signature_map = pb.SignatureDefMap()
    signature_map.signature_def["serving_default"].CopyFrom(tfserving_grpc.signature_def(SIGNATURE))
    metadata = rest_json.dumps(tfserving_rest.metadata_document("m", 1, signature_map))
    answer = rest_json.dumps(rest_json.encode_outputs(OUTPUTS, row_format=False))
    ok = grpc.StatusCode.OK
    _, first = _drive(shell._predict("m", INPUTS), [Reply(ok, metadata), Reply(ok, answer)])
    result, second = _drive(shell._predict("m", INPUTS), [Reply(ok, answer)])
    assert [s.request.path for s in first] == ["/v1/models/m/metadata", "/v1/models/m:predict"]
    assert [s.request.path for s in second] == ["/v1/models/m:predict"]
    _same(result, OUTPUTS)


def test_client_methods_keep_their_names_and_docs() -> None:
    assert Client.predict.__name__ == "predict" and "numpy array" in Client.predict.__doc__
    with pytest.raises(errors.UsageError, match="unknown protocol 'v9'"):
        Client("grpc://127.0.0.1:1", protocol="v9")


def test_client_is_public() -> None:
    import deploykit
    from deploykit.client import AsyncClient

    assert deploykit.Client is Client and deploykit.AsyncClient is AsyncClient
    assert {"Client", "AsyncClient"} <= set(deploykit.__all__)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"instances":' + b"[" * 1000 + b"]" * 1000 + b"}", "nested too deeply"),
        (b'{"instances": [' + b"1" * 5000 + b"]}", "Exceeds the limit .4300 digits"),
        (b'{"instances": [1, 2', "JSON Parse error"),
        (b"\xff\xfe", "JSON Parse error"),
    ],
)
def test_rest_json_client_mistakes_are_invalid_input(body: bytes, message: str) -> None:
    """Issue 13 item 9: recursion and the integer digit limit are the client's mistake (400), not 500."""
    try:
        document = rest_json.parse_body(body)
    except InvalidInput as exc:
        assert re.search(message, str(exc)), exc
        return
    # Whether 1,000 levels exceed the parser's recursion limit depends on the process (TensorFlow and
    # torch raise the limit); when they parse, the tensor decoder refuses them instead.
    assert message == "nested too deeply", f"parsed {body[:40]!r}..."
    with pytest.raises(InvalidInput, match="nest more than 64 deep"):
        rest_json.decode_inputs({"inputs": {"x": document["instances"]}}, SIGNATURE)


def test_rest_json_tensors_deeper_than_64_or_larger_than_the_limit_are_invalid_input() -> None:
    deep = [[0.0]]
    for _ in range(70):
        deep = [deep]
    with pytest.raises(InvalidInput, match="nest more than 64 deep"):
        rest_json.decode_inputs({"inputs": {"x": deep}}, SIGNATURE)
    with pytest.raises(InvalidInput, match="--max_decoded_tensor_bytes"):
        rest_json.decode_inputs({"inputs": {"x": [[1.0] * 64] * 10}}, SIGNATURE, max_bytes=1000)
