"""Where the native data plane computes a Predict or a ModelInfer (deploykit.server.native_inline): on
the gRPC thread that received it, or on the inference threads. Real ONNX Runtime models and a real InferenceService;
the C++ call object is replaced by a recorder (it exists only inside the native server, whose whole
gRPC behaviour tests/server runs against both data planes)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from onnx_builders import add_version

from deploykit.protocol import v2_tensors
from deploykit.protocol.protos import v2_service_pb2 as v2_pb
from deploykit.server import native_inline
from deploykit.server.core import InferenceService
from deploykit.server.grpc_frontend import GrpcFrontend
from deploykit.server.native_inline import InlineInference
from deploykit.server.v2_grpc import V2Grpc
from deploykit.server.v2_model import V2Service
from deploykit.server.version_loader import load_version

X = np.ones((2, 4), np.float32)
SPEC = ("affine", None, None, "")


class RecordingCall:
    """Stands in for the native server's call: records the answer and the thread that gave it."""

    def __init__(self, call_id: int = 1) -> None:
        self.id = call_id
        self.answered = threading.Event()
        self.code: int | None = None
        self.outputs: dict | None = None
        self.thread: int | None = None

    def finish(self, code, message, payload, trailing) -> None:
        self.message, self.payload, self.trailing = message, payload, dict(trailing)
        self._record(code)

    def finish_predict(self, name, version, signature_name, outputs, tensor_content, trailers) -> bool:
        self.outputs = dict(outputs)
        self.trailing = dict(trailers(0.0))
        self._record(0)
        return True

    def _record(self, code: int) -> None:
        self.code, self.thread = code, threading.get_ident()
        self.answered.set()


@pytest.fixture
def frontend(tmp_path: Path, monkeypatch):
    add_version(tmp_path, 1)
    loaded = load_version("affine", 1, tmp_path / "1")
    assert loaded.available, loaded.error
    predict = loaded.runtime.predict

    def recording_predict(*args):  # the real computation, noting which thread ran it
        COMPUTED_ON.append(threading.current_thread().name)
        return predict(*args)

    monkeypatch.setattr(loaded.runtime, "predict", recording_predict)
    COMPUTED_ON.clear()
    service = InferenceService([loaded], threads=2)
    yield GrpcFrontend(service)
    service.close()


COMPUTED_ON: list[str] = []


def submit(inline: InlineInference, call: RecordingCall, spec=SPEC, output_filter=(), inputs=None) -> bool:
    return inline.submit_predict(
        call, spec, list(output_filter), {"x": X} if inputs is None else inputs, False, None, 1e-6
    )


def test_a_fast_model_is_computed_on_the_calling_thread(frontend) -> None:
    inline, call = InlineInference(frontend), RecordingCall()
    assert submit(inline, call)
    assert call.answered.is_set() and call.thread == threading.get_ident()  # answered before submit returned
    assert [threading.current_thread().name] == COMPUTED_ON
    np.testing.assert_allclose(call.outputs["y"], X + 1)
    assert "server-timing" in call.trailing
    assert frontend.admission.in_flight == 0 and frontend.service.registry.get("affine", 1).inflight == 0


def test_a_slow_model_or_no_free_compute_slot_goes_to_the_inference_threads(frontend) -> None:
    inline = InlineInference(frontend)
    inline._typical[("affine", 1)] = native_inline.INLINE_MAX_COMPUTE_S * 2  # as measured on a slow model
    call = RecordingCall()
    assert submit(inline, call) and call.answered.wait(10)
    assert call.code == 0

    inline = InlineInference(frontend)
    service = frontend.service
    assert service.try_compute_slot()  # every compute slot taken (2 inference threads)...
    assert service.try_compute_slot()
    assert not service.try_compute_slot()
    call = RecordingCall(2)
    assert submit(inline, call)
    assert not call.answered.is_set()  # ...so it waits for an inference thread's slot
    service.release_compute_slot()
    assert call.answered.wait(10) and call.code == 0
    service.release_compute_slot()
    assert [name.startswith("deploykit-infer") for name in COMPUTED_ON] == [True, True]
    frontend.service.executor.shutdown(wait=True)  # their answers and releases are over
    assert frontend.admission.in_flight == 0 and frontend.service.registry.get("affine", 1).inflight == 0


def test_requests_it_cannot_answer_go_to_the_event_loop(frontend) -> None:
    inline = InlineInference(frontend)
    for spec, inputs in ((None, None), (("other", None, None, ""), None), (SPEC, {"z": X})):
        call = RecordingCall()
        assert not submit(inline, call, spec=spec, inputs=inputs)  # answered there with the Python plane's error
        assert not call.answered.is_set()
    assert not submit(inline, RecordingCall(), output_filter=["nope"])
    frontend.admission.draining = True
    assert not submit(inline, RecordingCall())
    assert frontend.admission.in_flight == 0 and frontend.service.registry.get("affine", 1).inflight == 0


def test_the_output_filter_from_cpp_selects_outputs(frontend) -> None:
    inline, call = InlineInference(frontend), RecordingCall()
    assert submit(inline, call, output_filter=["y"])
    assert list(call.outputs) == ["y"]


def infer_payload(model: str = "affine", x: np.ndarray = X, input_name: str = "x", **fields) -> bytes:
    request = v2_pb.ModelInferRequest(model_name=model, id="r1", **fields)
    request.inputs.add(name=input_name, datatype=v2_tensors.datatype(x.dtype), shape=x.shape)
    request.raw_input_contents.append(v2_tensors.to_raw(x))
    return request.SerializeToString()


def _with_shape(payload: bytes, shape: list[int]) -> bytes:
    request = v2_pb.ModelInferRequest.FromString(payload)
    request.inputs[0].ClearField("shape")
    request.inputs[0].shape.extend(shape)
    return request.SerializeToString()


def test_a_model_infer_is_computed_on_the_calling_thread_answered_and_counted(frontend) -> None:
    v2 = V2Grpc(V2Service(frontend.service), frontend.admission)
    inline, call = InlineInference(frontend, v2), RecordingCall()
    assert inline.submit_infer(call, infer_payload(), None)
    assert call.answered.is_set() and call.thread == threading.get_ident() and call.code == 0
    assert [threading.current_thread().name] == COMPUTED_ON
    response = v2_pb.ModelInferResponse.FromString(call.payload)
    assert (response.model_name, response.model_version, response.id) == ("affine", "1", "r1")
    (output,) = response.outputs
    y = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(tuple(output.shape))
    np.testing.assert_allclose(y, X + 1)
    assert {"server-timing", "x-deploykit-engine"} <= set(call.trailing)
    stats = v2.v2.stats[("affine", 1)]
    assert (stats.execution_count, stats.inference_count, stats.success.count, stats.fail.count) == (1, 2, 1, 0)
    assert stats.compute_output.count == 1
    assert frontend.admission.in_flight == 0 and frontend.service.registry.get("affine", 1).inflight == 0


def test_a_model_infer_it_cannot_answer_goes_to_the_event_loop_uncounted(frontend) -> None:
    v2 = V2Grpc(V2Service(frontend.service), frontend.admission)
    inline = InlineInference(frontend, v2)
    for payload in (
        b"not a protobuf \xff",
        infer_payload(model="other"),
        infer_payload(input_name="z"),
        infer_payload(x=X.astype(np.float64)),
        infer_payload(model_version="7"),
        _with_shape(infer_payload(), [2**40, 4]),  # a huge declared shape over 32 bytes: refused, not allocated
    ):
        call = RecordingCall()
        assert not inline.submit_infer(call, payload, None)  # answered there with Triton's error
        assert not call.answered.is_set()
    assert not InlineInference(frontend).submit_infer(RecordingCall(), infer_payload(), None)  # no v2 handlers
    assert all(stats.fail.count == 0 for stats in v2.v2.stats.values())  # counted once, by the event loop
    assert frontend.admission.in_flight == 0 and frontend.service.registry.get("affine", 1).inflight == 0
