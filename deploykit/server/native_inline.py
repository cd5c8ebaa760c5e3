"""Predict without the event loop: one thread hop from the native server to an inference thread.

On the Python data plane a request crosses four threads (gRPC's, the event loop, an inference
thread, the loop again); on this 2-core machine each crossing costs about as much as the whole
native transport (BENCHMARKS.md). So when a request needs nothing from the event loop (no dynamic
batching, the server not draining), the native thread that decoded it runs the same checks as
:meth:`InferenceService.predict` (resolve, signature, output filter, inputs) and submits the
computation to the service's inference threads, whose queue, deadline check and in-flight count are
the Python data plane's; the inference thread then encodes and answers (the runtime releases the
GIL while computing). Anything else (an error in those checks, a model change racing the request,
batching, draining) returns False and the request takes the event-loop path, which answers exactly
as the Python data plane does.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future

import grpc

from deploykit.errors import DeployKitError, ModelNotReady, RuntimeFailure
from deploykit.protocol import status_codes as status
from deploykit.protocol import tfserving_grpc as codec
from deploykit.protocol.protos import serving_pb2 as pb
from deploykit.protocol.wire import SERVER_TIMING_KEY
from deploykit.server import metrics
from deploykit.server.admission import check_deadline, deadline_after
from deploykit.server.core import Timing
from deploykit.server.grpc_frontend import _DEADLINE_SLACK_S, GrpcFrontend, encode_predict_response
from deploykit.server.input_checks import check_inputs, select_outputs

log = logging.getLogger(__name__)


class _Trailers:
    """Collects :meth:`GrpcFrontend._identify`'s trailing metadata (a context with only that method)."""

    trailing: tuple = ()

    def set_trailing_metadata(self, metadata) -> None:
        self.trailing = tuple(metadata)


class InlinePredict:
    """Runs natively decoded Predicts on the inference threads; :meth:`cancel` drops a queued one."""

    def __init__(self, frontend: GrpcFrontend) -> None:
        self.frontend = frontend
        self._queued: dict[int, Future] = {}

    def submit(self, call, request: bytes, inputs: dict, as_content: bool, time_remaining, decode_s) -> bool:
        """Check and queue one Predict; False: answer it on the event loop instead."""
        service = self.frontend.service
        if service.batchers is not None:
            return False
        admitted = self.frontend.admission.request()
        try:
            admitted.__enter__()  # left when the answer is sent (_finish)
        except ModelNotReady:  # draining: refused on the event loop, as on the Python data plane
            return False
        try:
            queued = self._check_and_queue(call, request, inputs, as_content, time_remaining, decode_s, admitted)
        except BaseException:
            admitted.__exit__(None, None, None)
            raise
        if not queued:
            admitted.__exit__(None, None, None)
        return queued

    def cancel(self, call) -> bool:
        """The client went away or its deadline passed: drop its computation if it has not started."""
        work = self._queued.get(call.id)
        return work is not None and work.cancel()

    def _check_and_queue(self, call, request, inputs, as_content, time_remaining, decode_s, admitted) -> bool:
        service = self.frontend.service
        parsed = pb.PredictRequest.FromString(request)
        if not parsed.HasField("model_spec"):
            return False
        ref = codec.model_ref(parsed.model_spec)
        try:
            loaded = service.resolve(ref)
            signature_name, signature = service.signature(loaded, ref.signature)
            names = select_outputs(signature, list(parsed.output_filter))
            check_inputs(signature, inputs, check_shapes=not loaded.runtime.advisory_shapes)
        except (DeployKitError, RuntimeError):  # RuntimeError: the model manager changed the dicts meanwhile
            return False
        # Counted before the version is re-checked: a version retiring now either is no longer
        # registered (we back off) or sees this request in flight and waits for it. (`+=` on an int
        # attribute is not interrupted by a thread switch: CPython switches at calls and jumps.)
        loaded.inflight += 1
        if service.registry.get(ref.name, loaded.version) is not loaded or not loaded.available:
            loaded.inflight -= 1
            return False
        request = _Request(call, loaded, signature_name, names, inputs, as_content or self.frontend.tensor_content)
        request.timing.decode_s = decode_s
        request.deadline = deadline_after(time_remaining)
        work = service.executor.submit(self._compute, request)
        self._queued[call.id] = work
        work.add_done_callback(lambda done: self._finish(request, done, admitted))
        return True

    @staticmethod
    def _compute(request: _Request):
        """On an inference thread: as InferenceService._compute_alone's compute."""
        request.timing.queue_s = time.perf_counter() - request.submitted
        loaded = request.loaded
        check_deadline(request.deadline, f"{loaded.name} version {loaded.version}")
        started = time.perf_counter()
        outputs = loaded.runtime.predict(request.inputs, request.signature_name)
        request.timing.compute_s = time.perf_counter() - started
        return outputs

    def _finish(self, request: _Request, work: Future, admitted) -> None:
        """On the inference thread that computed (or the one that cancelled): answer, count, release."""
        loaded, call = request.loaded, request.call
        self._queued.pop(call.id, None)
        loaded.inflight -= 1
        code = grpc.StatusCode.OK
        try:
            if work.cancelled():
                remaining = None if request.deadline is None else request.deadline - time.monotonic()
                expired = remaining is not None and remaining <= _DEADLINE_SLACK_S
                code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
                call.finish(code.value[0], "Cancelled", None, ())
                return
            error = work.exception()
            if error is not None:
                if not isinstance(error, DeployKitError):
                    log.error("model %s version %d failed on a request", loaded.name, loaded.version, exc_info=error)
                    error = RuntimeFailure(f"{loaded.name} version {loaded.version}: {type(error).__name__}: {error}")
                code = status.grpc_code(error)
                call.finish(code.value[0], status.message(error), None, ())
                return
            self._answer(request, work.result())
        finally:
            admitted.__exit__(None, None, None)
            seconds = time.perf_counter() - request.submitted + request.timing.decode_s
            metrics.observe_request(loaded.name, str(loaded.version), "Predict", "GRPC", code.name, seconds)

    def _answer(self, request: _Request, outputs: dict) -> None:
        loaded = request.loaded
        outputs = {name: outputs[name] for name in request.names}
        timing, trailers = request.timing, _Trailers()

        def trailing(encode_s: float) -> tuple:
            timing.encode_s = encode_s
            self.frontend._identify(trailers, loaded, (SERVER_TIMING_KEY, timing.header()))
            return trailers.trailing

        call, signature_name, as_content = request.call, request.signature_name, request.as_content
        if not call.finish_predict(loaded.name, loaded.version, signature_name, outputs, as_content, trailing):
            started = time.perf_counter()  # an output the C++ encoder does not write: the Python codec does
            payload = encode_predict_response(loaded, signature_name, outputs, as_content).SerializeToString()
            call.finish(0, "", payload, trailing(time.perf_counter() - started))


class _Request:
    """One Predict between its checks on the native thread and its answer from an inference thread."""

    def __init__(self, call, loaded, signature_name: str, names: list[str], inputs: dict, as_content: bool) -> None:
        self.call, self.loaded, self.signature_name = call, loaded, signature_name
        self.names, self.inputs, self.as_content = names, inputs, as_content
        self.timing = Timing()
        self.deadline: float | None = None
        self.submitted = time.perf_counter()
