"""deploykit's Open Inference Protocol messages are Triton's, field for field and byte for byte.

deploykit keeps its own copy under the proto package ``deploykit.v2`` (tritonclient, kserve and
mlserver all register ``inference.*``); these tests compare every message, recursively, with the
ones tritonclient ships and round-trip real requests both ways, so a wrong field number fails here
rather than as a silently mis-parsed tensor.
"""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format

from deploykit.protocol.protos import v2_model_config_pb2 as mc
from deploykit.protocol.protos import v2_service_pb2 as pb
from tests.protocol.test_proto_compat import _compare

tritonclient_grpc = pytest.importorskip("tritonclient.grpc")
from tritonclient.grpc import model_config_pb2 as triton_mc  # noqa: E402
from tritonclient.grpc import service_pb2 as triton_pb  # noqa: E402


def _pairs():
    """Every message of both files, deploykit's next to Triton's (same short name)."""
    for ours_module, theirs_module in ((pb, triton_pb), (mc, triton_mc)):
        theirs = theirs_module.DESCRIPTOR.message_types_by_name
        ours = ours_module.DESCRIPTOR.message_types_by_name
        assert set(ours) == set(theirs), ours_module.__name__
        for name in sorted(ours):
            yield name, ours[name], theirs[name]


@pytest.mark.parametrize("pair", list(_pairs()), ids=lambda pair: pair[0])
def test_every_message_matches_tritonclients(pair) -> None:
    name, ours, theirs = pair
    assert ours.full_name == f"deploykit.v2.{name}" and theirs.full_name == f"inference.{name}"
    _compare(ours, theirs, name, set())


def test_enums_match() -> None:
    for ours_module, theirs_module in ((pb, triton_pb), (mc, triton_mc)):
        for name, enum in theirs_module.DESCRIPTOR.enum_types_by_name.items():
            mine = ours_module.DESCRIPTOR.enum_types_by_name[name]
            assert [(v.name, v.number) for v in mine.values] == [(v.name, v.number) for v in enum.values]


def _tritonclient_request() -> bytes:
    """A ModelInferRequest built by tritonclient itself: raw FP32, BYTES and a requested output."""
    from tritonclient.grpc import InferInput, InferRequestedOutput
    from tritonclient.grpc._utils import _get_inference_request

    x = InferInput("x", [2, 3], "FP32")
    x.set_data_from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
    s = InferInput("s", [2], "BYTES")
    s.set_data_from_numpy(np.array([b"a", b"\x00bc"], dtype=np.object_))
    request = _get_inference_request(
        model_name="m",
        inputs=[x, s],
        model_version="2",
        request_id="r1",
        outputs=[InferRequestedOutput("logits")],
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        parameters={"p": 3},
    )
    return request.SerializeToString()


def test_a_tritonclient_request_parses_as_deploykits() -> None:
    request = pb.ModelInferRequest.FromString(_tritonclient_request())
    assert (request.model_name, request.model_version, request.id) == ("m", "2", "r1")
    assert [(t.name, t.datatype, list(t.shape)) for t in request.inputs] == [("x", "FP32", [2, 3]), ("s", "BYTES", [2])]
    assert np.frombuffer(request.raw_input_contents[0], "<f4").tolist() == [0, 1, 2, 3, 4, 5]
    assert request.raw_input_contents[1] == b"\x01\x00\x00\x00a\x03\x00\x00\x00\x00bc"
    assert [o.name for o in request.outputs] == ["logits"]
    assert request.parameters["p"].int64_param == 3
    assert request.SerializeToString() == _tritonclient_request()


def test_a_deploykit_response_parses_as_tritonclients() -> None:
    ours = pb.ModelInferResponse(model_name="m", model_version="1", id="r1")
    out = ours.outputs.add(name="logits", datatype="FP32", shape=[1, 2])
    out.parameters["binary_data_size"].int64_param = 8
    ours.raw_output_contents.append(np.array([1.5, -2], "<f4").tobytes())
    typed = ours.outputs.add(name="ids", datatype="INT64", shape=[2])
    typed.contents.int64_contents.extend([7, -1])
    theirs = triton_pb.ModelInferResponse.FromString(ours.SerializeToString())
    assert theirs.outputs[1].contents.int64_contents == [7, -1]
    assert theirs.SerializeToString() == ours.SerializeToString()
    from tritonclient.grpc import InferResult

    result = InferResult(theirs)
    assert result.as_numpy("logits").tolist() == [[1.5, -2.0]]


def test_a_model_config_round_trips_in_text_format() -> None:
    ours = mc.ModelConfig(name="m", platform="onnxruntime_onnx", max_batch_size=8)
    ours.input.add(name="x", data_type=mc.TYPE_FP32, dims=[-1, 3])
    ours.dynamic_batching.max_queue_delay_microseconds = 100
    ours.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    theirs = text_format.Parse(text_format.MessageToString(ours), triton_mc.ModelConfig())
    assert theirs.SerializeToString() == ours.SerializeToString()


def test_both_packages_live_in_one_process() -> None:
    """The reason for deploykit's own package: Triton's inference.* is registered beside it."""
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.Default()
    assert pool.FindMessageTypeByName("inference.ModelInferRequest") is not None
    assert pool.FindMessageTypeByName("deploykit.v2.ModelInferRequest") is not None
