"""Predict without the event loop: computed on the native thread that decoded it, or one hop away.

On the Python data plane a request crosses four threads (gRPC's, the event loop, an inference
thread, the loop again); on a 2-core machine each crossing costs about as much as the whole native
transport (BENCHMARKS.md). So when a request needs nothing from the event loop (no dynamic batching,
the server not draining), the native thread that decoded it runs the same checks as
:meth:`InferenceService.predict` (resolve, signature, output filter, inputs) on the model spec C++
read for it, and then:

- computes it right there, with no thread hand-over at all, when the version computes fast
  (typically under :data:`INLINE_MAX_COMPUTE_S`) and one of the service's compute slots (one per
  inference thread: --inference-threads still bounds the computations running at once) is free;
  the answer is encoded on this thread and sent by C++ once it has released the GIL;
- otherwise submits it to the service's inference threads, which compute, encode and answer.

Both ways keep the Python data plane's admission (drain), in-flight count of the version (so a
retiring version waits for it), deadline check before computing, metrics and Server-Timing trailer.
Anything else (an error in those checks, a model change racing the request, batching, draining)
returns False and the request takes the event-loop path, which answers exactly as the Python data
plane does.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future

import grpc

from deploykit.errors import DeployKitError, ModelNotReady, RuntimeFailure
from deploykit.model_ref import ModelRef
from deploykit.protocol import status_codes as status
from deploykit.protocol.wire import SERVER_TIMING_KEY
from deploykit.server import metrics
from deploykit.server.admission import check_deadline, deadline_after
from deploykit.server.core import Timing
from deploykit.server.grpc_frontend import _DEADLINE_SLACK_S, GrpcFrontend, encode_predict_response
from deploykit.server.input_checks import check_inputs, select_outputs

log = logging.getLogger(__name__)

#: A version whose computations take longer than this (see InlinePredict._compute) goes to the
#: inference threads: a thread hand-over costs ~0.1-0.4 ms, little beside such a computation, and
#: the native threads stay free to take new calls (health checks, metadata, other models) meanwhile.
INLINE_MAX_COMPUTE_S = 0.001
_ENVELOPE_RISE = 1.1


class _Trailers:
    """Collects :meth:`GrpcFrontend._identify`'s trailing metadata (a context with only that method)."""

    trailing: tuple = ()

    def set_trailing_metadata(self, metadata) -> None:
        self.trailing = tuple(metadata)


class InlinePredict:
    """Runs natively decoded Predicts on the native threads or the inference threads.

    :meth:`cancel` drops a request still queued for the inference threads.
    """

    def __init__(self, frontend: GrpcFrontend) -> None:
        self.frontend = frontend
        self._queued: dict[int, Future] = {}
        #: (model, version) -> its typical compute seconds (a decaying minimum).
        self._typical: dict[tuple[str, int], float] = {}

    def submit(self, call, spec, output_filter, inputs, as_content, time_remaining, decode_s) -> bool:
        """Check and run (or queue) one Predict; False: answer it on the event loop instead.

        ``spec``: the request's ModelSpec as (name, version or None, label or None, signature), None
        when it has none; ``output_filter``: its output names.
        """
        service, admission = self.frontend.service, self.frontend.admission
        if service.batchers is not None or spec is None or admission.holding:  # holding: see closing.py
            return False
        try:
            admission.enter()  # left once the answer is given (_respond)
        except ModelNotReady:  # draining: refused on the event loop, as on the Python data plane
            return False
        try:
            request = self._check(call, ModelRef(*spec), output_filter, inputs, as_content, time_remaining)
        except BaseException:
            admission.leave()
            raise
        if request is None:
            admission.leave()
            return False
        request.timing.decode_s = decode_s
        self._run(request)  # from here on, _respond leaves the admission
        return True

    def cancel(self, call) -> bool:
        """The client went away or its deadline passed: drop its computation if it has not started."""
        work = self._queued.get(call.id)
        return work is not None and work.cancel()

    def _check(self, call, ref: ModelRef, output_filter, inputs, as_content, time_remaining) -> _Request | None:
        service = self.frontend.service
        try:
            loaded = service.resolve(ref)
            signature_name, signature = service.signature(loaded, ref.signature)
            names = select_outputs(signature, list(output_filter))
            assert loaded.runtime is not None  # resolved versions are loaded
            check_inputs(signature, inputs, check_shapes=not loaded.runtime.advisory_shapes)
        except (DeployKitError, RuntimeError):  # RuntimeError: the model manager changed the dicts meanwhile
            return None
        # Counted before the version is re-checked: a version retiring now either is no longer
        # registered (we back off) or sees this request in flight and waits for it.
        loaded.enter()
        if service.registry.get(ref.name, loaded.version) is not loaded or not loaded.available:
            loaded.leave()
            return None
        request = _Request(call, loaded, signature_name, names, inputs, as_content or self.frontend.tensor_content)
        request.deadline = deadline_after(time_remaining)
        return request

    def _run(self, request: _Request) -> None:
        """Compute here when the version is fast and a slot is free; else queue for the inference threads."""
        loaded, service = request.loaded, self.frontend.service
        fast = self._typical.get((loaded.name, loaded.version), 0.0) <= INLINE_MAX_COMPUTE_S
        if fast and service.try_compute_slot():
            try:
                outputs, error = self._compute(request), None
            except Exception as exc:  # answered below, like an inference thread's failure
                outputs, error = None, exc
            finally:
                service.release_compute_slot()
            self._respond(request, outputs, error)
            return
        try:
            work = service.executor.submit(self._compute_in_pool, request)
        except BaseException:  # the inference threads have stopped (server closing)
            loaded.leave()
            self.frontend.admission.leave()
            raise
        self._queued[request.call.id] = work
        work.add_done_callback(lambda done: self._done(request, done))

    def _compute(self, request: _Request):
        """As InferenceService._compute_alone's compute (on a native or an inference thread)."""
        request.timing.queue_s = time.perf_counter() - request.submitted
        loaded = request.loaded
        check_deadline(request.deadline, f"{loaded.name} version {loaded.version}")
        started = time.perf_counter()
        outputs = loaded.runtime.predict(request.inputs, request.signature_name)
        request.timing.compute_s = took = time.perf_counter() - started
        # A decaying minimum: waiting for the GIL (and for a core) only ever adds to the time
        # measured, so the lower envelope follows the model, not the load; it rises 10% a request
        # when every computation takes longer (say, larger batches).
        key = (loaded.name, loaded.version)
        self._typical[key] = min(took, self._typical.get(key, took) * _ENVELOPE_RISE)
        return outputs

    def _compute_in_pool(self, request: _Request):
        with self.frontend.service.compute_slot():
            return self._compute(request)

    def _done(self, request: _Request, work: Future) -> None:
        """On the inference thread that computed (or the one that cancelled)."""
        self._queued.pop(request.call.id, None)
        if work.cancelled():
            self._respond(request, None, None, cancelled=True)
        else:
            error = work.exception()
            self._respond(request, None if error is not None else work.result(), error)

    def _respond(self, request: _Request, outputs, error: BaseException | None, cancelled: bool = False) -> None:
        """Answer, count, release the version and the admission."""
        loaded, call = request.loaded, request.call
        loaded.leave()
        code = grpc.StatusCode.OK
        try:
            if cancelled:
                remaining = None if request.deadline is None else request.deadline - time.monotonic()
                expired = remaining is not None and remaining <= _DEADLINE_SLACK_S
                code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
                call.finish(code.value[0], "Cancelled", None, ())
            elif error is not None:
                if not isinstance(error, DeployKitError):
                    log.error("model %s version %d failed on a request", loaded.name, loaded.version, exc_info=error)
                    error = RuntimeFailure(f"{loaded.name} version {loaded.version}: {type(error).__name__}: {error}")
                code = status.grpc_code(error)
                call.finish(code.value[0], status.message(error), None, ())
            else:
                self._answer(request, outputs)
        finally:
            self.frontend.admission.leave()
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
    """One Predict between its checks on the native thread and its answer."""

    def __init__(self, call, loaded, signature_name: str, names: list[str], inputs: dict, as_content: bool) -> None:
        self.call, self.loaded, self.signature_name = call, loaded, signature_name
        self.names, self.inputs, self.as_content = names, inputs, as_content
        self.timing = Timing()
        self.deadline: float | None = None
        self.submitted = time.perf_counter()
