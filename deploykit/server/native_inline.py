"""Predict and ModelInfer without the event loop: computed on the native thread that received them,
or one hop away.

On the Python data plane a request crosses four threads (gRPC's, the event loop, an inference
thread, the loop again); on a 2-core machine each crossing costs about as much as the whole native
transport (BENCHMARKS.md). So when a request needs nothing from the event loop (no dynamic batching,
the server not draining), the native thread that received it runs the Python data plane's checks
(TF Serving's Predict: those of :meth:`InferenceService.predict` on the model spec and tensors C++
decoded; the Open Inference Protocol's ModelInfer: also Triton's, of
:class:`~deploykit.server.v2_model.V2Service`, on the message parsed here) and then:

- computes it right there, with no thread hand-over at all, when the version computes fast
  (typically under :data:`INLINE_MAX_COMPUTE_S`) and one of the service's compute slots (one per
  inference thread: --inference-threads still bounds the computations running at once) is free;
  the answer is encoded on this thread and sent by C++ once it has released the GIL;
- otherwise submits it to the service's inference threads, which compute, encode and answer.

Both ways keep the Python data plane's admission (drain), in-flight count of the version (so a
retiring version waits for it), deadline check before computing, metrics, v2 statistics and
trailers. Anything else (an error in those checks, a model change racing the request, batching,
draining) returns False and the request takes the event-loop path, which answers exactly as the
Python data plane does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future

import grpc
from google.protobuf.message import DecodeError

from deploykit.errors import DeployKitError, ModelNotReady, RuntimeFailure
from deploykit.model_ref import ModelRef
from deploykit.protocol import grpc_paths, v2_paths, v2_status
from deploykit.protocol import status_codes as status
from deploykit.protocol.protos import v2_service_pb2 as v2_pb
from deploykit.protocol.wire import SERVER_TIMING_KEY
from deploykit.runtimes.base import DEFAULT_SIGNATURE
from deploykit.server import metrics
from deploykit.server.admission import check_deadline, deadline_after
from deploykit.server.core import Timing
from deploykit.server.grpc_frontend import _DEADLINE_SLACK_S, GrpcFrontend, encode_predict_response
from deploykit.server.input_checks import check_inputs, select_outputs
from deploykit.server.v2_grpc import V2Grpc, wire_inputs
from deploykit.server.v2_model import VersionStats, batch_rows
from deploykit.server.version_loader import LoadedVersion

log = logging.getLogger(__name__)

#: A version whose computations take longer than this (see InlineInference._compute) goes to the
#: inference threads: a thread hand-over costs ~0.1-0.4 ms, little beside such a computation, and
#: the native threads stay free to take new calls (health checks, metadata, other models) meanwhile.
INLINE_MAX_COMPUTE_S = 0.001
_ENVELOPE_RISE = 1.1


class _Trailers:
    """Collects :meth:`GrpcFrontend._identify`'s trailing metadata (a context with only that method)."""

    trailing: tuple = ()

    def set_trailing_metadata(self, metadata) -> None:
        self.trailing = tuple(metadata)


class _Request:
    """One request between its checks on the native thread and its answer; the subclasses answer
    it in their protocol."""

    #: The method, as the request metrics name it.
    method = ""

    def __init__(self, call, loaded: LoadedVersion, signature_name: str, names: list[str], inputs: dict) -> None:
        self.call, self.loaded, self.signature_name = call, loaded, signature_name
        self.names, self.inputs = names, inputs
        self.timing = Timing()
        self.deadline: float | None = None
        self.submitted = time.perf_counter()

    def metric_labels(self) -> tuple[str, str]:
        """(model, version) as the request metrics label this request."""
        return self.loaded.name, str(self.loaded.version)

    def seconds(self) -> float:
        """Time spent on the request so far, its decoding included."""
        return time.perf_counter() - self.submitted + self.timing.decode_s

    def status_code(self, error: DeployKitError) -> grpc.StatusCode:
        """The status ``error`` is answered with in this protocol."""
        return status.grpc_code(error)

    def failed(self) -> None:
        """The computation failed (the error is answered by the caller)."""

    def answer(self, outputs: dict) -> None:
        """Encode and send the answer (``outputs``: every output the version computed)."""
        raise NotImplementedError


class _Predict(_Request):
    """A TF Serving Predict, answered by C++'s encoder (the Python codec for what it does not write)."""

    method = grpc_paths.PREDICT.name

    def __init__(self, frontend: GrpcFrontend, as_content: bool, *args) -> None:
        super().__init__(*args)
        self.frontend, self.as_content = frontend, as_content

    def answer(self, outputs: dict) -> None:
        loaded, timing, trailers = self.loaded, self.timing, _Trailers()
        outputs = {name: outputs[name] for name in self.names}

        def trailing(encode_s: float) -> tuple:
            timing.encode_s = encode_s
            self.frontend._identify(trailers, loaded, (SERVER_TIMING_KEY, timing.header()))
            return trailers.trailing

        call, signature_name, as_content = self.call, self.signature_name, self.as_content
        if not call.finish_predict(loaded.name, loaded.version, signature_name, outputs, as_content, trailing):
            started = time.perf_counter()  # an output the C++ encoder does not write: the Python codec does
            payload = encode_predict_response(loaded, signature_name, outputs, as_content).SerializeToString()
            call.finish(0, "", payload, trailing(time.perf_counter() - started))


class _Infer(_Request):
    """An Open Inference Protocol ModelInfer: answered and counted in Triton's statistics as
    :meth:`V2Grpc.model_infer` does."""

    method = v2_paths.MODEL_INFER.name

    def __init__(self, v2: V2Grpc, message: v2_pb.ModelInferRequest, stats: VersionStats, *args) -> None:
        super().__init__(*args)
        self.v2, self.message, self.stats = v2, message, stats

    def metric_labels(self) -> tuple[str, str]:
        return self.message.model_name, self.message.model_version  # as the request named them

    def status_code(self, error: DeployKitError) -> grpc.StatusCode:
        return v2_status.grpc_code(error)

    def failed(self) -> None:
        self.stats.failed(self.seconds())

    def answer(self, outputs: dict) -> None:
        outputs = {name: outputs[name] for name in self.names}
        self.stats.succeeded(batch_rows(self.inputs), self.timing, self.seconds())
        response, trailers = self.v2.answer(self.message, self.loaded, outputs, self.timing)
        self.call.finish(0, "", response.SerializeToString(), trailers)


class InlineInference:
    """Runs Predicts (decoded by C++) and ModelInfers on the native threads or the inference threads.

    ``v2``: the Open Inference Protocol's handlers (None: every ModelInfer goes to the event loop).
    :meth:`cancel` drops a request still queued for the inference threads.
    """

    def __init__(self, frontend: GrpcFrontend, v2: V2Grpc | None = None) -> None:
        self.frontend, self.v2 = frontend, v2
        self._queued: dict[int, Future] = {}
        #: (model, version) -> its typical compute seconds (a decaying minimum).
        self._typical: dict[tuple[str, int], float] = {}

    def submit_predict(self, call, spec, output_filter, inputs, as_content, time_remaining, decode_s) -> bool:
        """Check and run (or queue) one Predict; False: answer it on the event loop instead.

        ``spec``: the request's ModelSpec as (name, version or None, label or None, signature), None
        when it has none; ``output_filter``: its output names.
        """
        if spec is None:
            return False

        def check() -> _Request | None:
            found = self._check(ModelRef(*spec), output_filter, inputs)
            if found is None:
                return None
            request = _Predict(self.frontend, as_content or self.frontend.tensor_content, call, *found, inputs)
            request.timing.decode_s = decode_s
            return request

        return self._submit(check, time_remaining)

    def submit_infer(self, call, payload: bytes, time_remaining) -> bool:
        """Parse, check and run (or queue) one ModelInfer; False: answer it on the event loop instead."""
        v2 = self.v2
        if v2 is None:
            return False

        def check() -> _Request | None:
            timing, started = Timing(), time.perf_counter()
            try:
                message = v2_pb.ModelInferRequest.FromString(payload)
                inputs = wire_inputs(message)
                timing.decode_s = time.perf_counter() - started
                requested = [output.name for output in message.outputs]
                loaded = v2.v2.resolve(message.model_name, message.model_version)
                arrays = v2.v2.decode(loaded, inputs, requested, message.id, timing)
            except (DeployKitError, DecodeError, RuntimeError):  # RuntimeError: see _check
                return None
            found = self._check(ModelRef(loaded.name, loaded.version, None, DEFAULT_SIGNATURE), requested, arrays)
            if found is None:
                return None
            request = _Infer(v2, message, v2.v2.stats_of(found[0]), call, *found, arrays)
            request.timing = timing
            return request

        return self._submit(check, time_remaining)

    def cancel(self, call) -> bool:
        """The client went away or its deadline passed: drop its computation if it has not started."""
        work = self._queued.get(call.id)
        return work is not None and work.cancel()

    def _submit(self, check: Callable[[], _Request | None], time_remaining) -> bool:
        """Admit, ``check``, then run or queue the request; False (nothing answered, nothing counted)
        when the event loop must answer it."""
        service, admission = self.frontend.service, self.frontend.admission
        if service.batchers is not None or admission.holding:  # holding: see closing.py
            return False
        try:
            admission.enter()  # left once the answer is given (_respond)
        except ModelNotReady:  # draining: refused on the event loop, as on the Python data plane
            return False
        try:
            request = check()
        except BaseException:
            admission.leave()
            raise
        if request is None:
            admission.leave()
            return False
        request.deadline = deadline_after(time_remaining)
        self._run(request)  # from here on, _respond leaves the admission
        return True

    def _check(self, ref: ModelRef, output_filter, inputs) -> tuple[LoadedVersion, str, list[str]] | None:
        """:meth:`InferenceService.predict`'s checks; (version, signature name, output names), with the
        version entered (:meth:`LoadedVersion.enter`), or None."""
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
        return loaded, signature_name, names

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
        assert loaded.runtime is not None  # checked in _check
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
                code = request.status_code(error)
                request.failed()
                call.finish(code.value[0], status.message(error), None, ())
            else:
                try:
                    request.answer(outputs)
                except Exception as exc:  # a bug: INTERNAL, as the event-loop path answers it; serving goes on
                    log.exception("%s on model %s version %d failed", request.method, loaded.name, loaded.version)
                    code = grpc.StatusCode.INTERNAL
                    call.finish(code.value[0], status.message(exc), None, ())
        finally:
            self.frontend.admission.leave()
            metrics.observe_request(*request.metric_labels(), request.method, "GRPC", code.name, request.seconds())
