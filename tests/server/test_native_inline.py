"""Where the native data plane computes a Predict (deploykit.server.native_inline): on the gRPC thread
that decoded it, or on the inference threads. Real ONNX Runtime models and a real InferenceService;
the C++ call object is replaced by a recorder (it exists only inside the native server, whose whole
gRPC behaviour tests/server runs against both data planes)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from onnx_builders import add_version

from deploykit.server import native_inline
from deploykit.server.core import InferenceService
from deploykit.server.grpc_frontend import GrpcFrontend
from deploykit.server.native_inline import InlinePredict
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


def submit(inline: InlinePredict, call: RecordingCall, spec=SPEC, output_filter=(), inputs=None) -> bool:
    return inline.submit(call, spec, list(output_filter), {"x": X} if inputs is None else inputs, False, None, 1e-6)


def test_a_fast_model_is_computed_on_the_calling_thread(frontend) -> None:
    inline, call = InlinePredict(frontend), RecordingCall()
    assert submit(inline, call)
    assert call.answered.is_set() and call.thread == threading.get_ident()  # answered before submit returned
    assert [threading.current_thread().name] == COMPUTED_ON
    np.testing.assert_allclose(call.outputs["y"], X + 1)
    assert "server-timing" in call.trailing
    assert frontend.admission.in_flight == 0 and frontend.service.registry.get("affine", 1).inflight == 0


def test_a_slow_model_or_no_free_compute_slot_goes_to_the_inference_threads(frontend) -> None:
    inline = InlinePredict(frontend)
    inline._typical[("affine", 1)] = native_inline.INLINE_MAX_COMPUTE_S * 2  # as measured on a slow model
    call = RecordingCall()
    assert submit(inline, call) and call.answered.wait(10)
    assert call.code == 0

    inline = InlinePredict(frontend)
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
    inline = InlinePredict(frontend)
    for spec, inputs in ((None, None), (("other", None, None, ""), None), (SPEC, {"z": X})):
        call = RecordingCall()
        assert not submit(inline, call, spec=spec, inputs=inputs)  # answered there with the Python plane's error
        assert not call.answered.is_set()
    assert not submit(inline, RecordingCall(), output_filter=["nope"])
    frontend.admission.draining = True
    assert not submit(inline, RecordingCall())
    assert frontend.admission.in_flight == 0 and frontend.service.registry.get("affine", 1).inflight == 0


def test_the_output_filter_from_cpp_selects_outputs(frontend) -> None:
    inline, call = InlinePredict(frontend), RecordingCall()
    assert submit(inline, call, output_filter=["y"])
    assert list(call.outputs) == ["y"]
