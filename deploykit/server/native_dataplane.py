"""The native gRPC data plane's Python side (``deploykit serve --dataplane native``).

A C++ gRPC server (:mod:`deploykit.native`) owns the gRPC port and its threads. It decodes the hot
method, TF Serving Predict, into numpy views and calls :meth:`_Dispatcher.predict`; the request runs
through the same :class:`~deploykit.server.grpc_frontend.GrpcFrontend` checks, admission, metrics and
error table as on the Python data plane, and C++ encodes the response. Every other method (and a
Predict the C++ decoder declines: strings, bfloat16, malformed tensors) arrives as raw bytes at
:meth:`_Dispatcher.generic` and is answered by the very handlers the Python data plane registers,
through a small stand-in for ``grpc.aio.ServicerContext``. Handlers run on the server's event loop,
so the control plane (models, versions, reloads, batching) is unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2_grpc

from deploykit import native
from deploykit.errors import UsageError
from deploykit.model_ref import ModelRef
from deploykit.protocol import grpc_paths, v2_paths
from deploykit.protocol import tfserving_grpc as codec
from deploykit.protocol.grpc_paths import Method
from deploykit.protocol.protos import serving_pb2 as pb
from deploykit.protocol.wire import SERVER_TIMING_KEY, TENSOR_CONTENT_KEY
from deploykit.server import native_inline
from deploykit.server.admission import deadline_after
from deploykit.server.core import Timing
from deploykit.server.grpc_frontend import (
    GrpcFrontend,
    _guarded,
    encode_predict_response,
)

if TYPE_CHECKING:
    from deploykit.server.v2_grpc import V2Grpc
    from deploykit.server.version_loader import LoadedVersion
    from deploykit.tls import ServerTls

log = logging.getLogger(__name__)

DATAPLANES = ("auto", "native", "python")
#: Threads of the C++ server: they poll the completion queue, decode, check and hand over.
NATIVE_THREADS = 2


def resolve(dataplane: str) -> str:
    """``native`` or ``python`` for a ``--dataplane`` choice; ``auto`` is native when it is built.

    :class:`UsageError` for ``native`` when the extension is not built, or an unknown choice.
    """
    if dataplane not in DATAPLANES:
        raise UsageError(f"--dataplane must be one of {', '.join(DATAPLANES)}, not {dataplane!r}")
    if dataplane == "python":
        return "python"
    if native.available():
        return "native"
    if dataplane == "native":
        raise UsageError(f"--dataplane native: {native.unavailable_reason()}")
    log.info("gRPC data plane: python (%s)", native.unavailable_reason())
    return "python"


class _Context:
    """What deploykit's handlers (and the health servicer) use of ``grpc.aio.ServicerContext``."""

    def __init__(self, metadata, time_remaining: float | None) -> None:
        self._metadata = tuple(metadata)
        self._deadline = deadline_after(time_remaining)
        self.code = grpc.StatusCode.OK
        self.details = ""
        self.trailing: tuple = ()

    def invocation_metadata(self):
        return self._metadata

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def set_trailing_metadata(self, metadata) -> None:
        self.trailing = tuple(metadata)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata=()) -> None:
        self.code, self.details = code, details
        if trailing_metadata:
            self.trailing = tuple(trailing_metadata)
        raise grpc.aio.AbortError()


@dataclass
class _Decoded:
    """A Predict the C++ side decoded: its model spec (None: it had none), output filter and tensors."""

    ref: ModelRef | None
    output_filter: list[str]
    inputs: dict
    timing: Timing

    @property
    def model_spec(self) -> pb.ModelSpec:  # for the request's metrics labels
        spec = pb.ModelSpec()
        if self.ref is not None:
            codec.model_spec(spec, self.ref)
        return spec

    @classmethod
    def FromString(cls, decoded: _Decoded) -> _Decoded:  # noqa: N802 (the Method.request protocol)
        return decoded  # already decoded natively: nothing to parse


@dataclass
class _Predicted:
    """What the native Predict handler returns: encoded by C++ afterwards."""

    loaded: LoadedVersion
    signature_name: str
    outputs: dict

    @property
    def model_spec(self) -> pb.ModelSpec:  # the served version, for the request's metrics labels
        spec = pb.ModelSpec(name=self.loaded.name)
        spec.version.value = self.loaded.version
        return spec


#: Predict as the native plane runs it: requests arrive decoded (see _Decoded.FromString).
_NATIVE_PREDICT = Method(grpc_paths.PREDICTION_SERVICE, "Predict", _Decoded, _Predicted)


class _HandlerCallDetails(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


class _Dispatcher:
    """Called by the C++ threads (holding the GIL only briefly): Predict and ModelInfer run on them when
    they can (:mod:`native_inline`), every other call on the event loop."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, frontend: GrpcFrontend, handlers: list, v2: V2Grpc | None = None
    ) -> None:
        self._loop = loop
        self._frontend = frontend
        self._handlers = handlers
        self._methods: dict[str, grpc.RpcMethodHandler | None] = {}
        self._tasks: dict[int, asyncio.Task] = {}
        self._inline = native_inline.InlineInference(frontend, v2)
        self._predict_handler = _guarded(_NATIVE_PREDICT, self._predict_tensors, frontend.admission)

    # ------------------------------------------------------------------ called from C++ threads

    def predict(
        self, call, spec, output_filter: list, inputs: dict, as_content: bool, time_remaining, decode_s: float
    ) -> None:
        """A decoded Predict: ``spec`` is its ModelSpec as (name, version or None, label or None,
        signature), None when it has none (C++ parsed the request: Python parses no protobuf)."""
        if self._inline.submit_predict(call, spec, output_filter, inputs, as_content, time_remaining, decode_s):
            return
        decoded = _Decoded(None if spec is None else ModelRef(*spec), output_filter, inputs, Timing(decode_s=decode_s))
        self._loop.call_soon_threadsafe(self._spawn, call, self._predict(call, decoded, as_content, time_remaining))

    def generic(self, call, method: str, payload: bytes, metadata: list, time_remaining) -> None:
        """Any other call (C++ passes its serialized message): a ModelInfer computed inline when it
        can be (:mod:`native_inline`), everything else on the event loop."""
        if method == v2_paths.MODEL_INFER.path and self._inline.submit_infer(call, payload, time_remaining):
            return
        coroutine = self._generic(call, method, payload, metadata, time_remaining)
        self._loop.call_soon_threadsafe(self._spawn, call, coroutine)

    def cancelled(self, call) -> None:
        """The client went away or the deadline passed: stop the handler (as grpc.aio cancels it)."""
        if self._inline.cancel(call):
            return
        self._loop.call_soon_threadsafe(self._cancel, call.id)

    # ------------------------------------------------------------------ on the event loop

    def _spawn(self, call, coroutine) -> None:
        task = self._loop.create_task(coroutine)
        self._tasks[call.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(call.id, None))

    def _cancel(self, call_id: int) -> None:
        task = self._tasks.get(call_id)
        if task is not None:
            task.cancel()

    async def _predict_tensors(self, decoded: _Decoded, context: _Context) -> _Predicted:
        loaded, signature_name, outputs = await self._frontend.predict_tensors(
            decoded.ref, decoded.output_filter, decoded.inputs, decoded.timing, context
        )
        return _Predicted(loaded, signature_name, outputs)

    async def _predict(self, call, decoded: _Decoded, as_content: bool, time_remaining) -> None:
        context = _Context((), time_remaining)
        timing = decoded.timing
        try:
            result: _Predicted = await self._predict_handler(decoded, context)
        except grpc.aio.AbortError:
            call.finish(context.code.value[0], context.details, None, context.trailing)
            return
        except asyncio.CancelledError:
            call.finish(grpc.StatusCode.CANCELLED.value[0], "Cancelled", None, ())  # the client has gone
            return
        as_content = as_content or self._frontend.tensor_content

        def trailers(encode_s: float) -> tuple:
            timing.encode_s = encode_s
            self._frontend._identify(context, result.loaded, (SERVER_TIMING_KEY, timing.header()))
            return context.trailing

        if not call.finish_predict(
            result.loaded.name, result.loaded.version, result.signature_name, result.outputs, as_content, trailers
        ):  # an output the C++ encoder does not write (strings, bfloat16): the Python codec encodes
            started = time.perf_counter()
            response = encode_predict_response(result.loaded, result.signature_name, result.outputs, as_content)
            payload = response.SerializeToString()
            call.finish(0, "", payload, trailers(time.perf_counter() - started))

    def _lookup(self, method: str) -> grpc.RpcMethodHandler | None:
        if method not in self._methods:
            details = _HandlerCallDetails(method)
            found = (h.service(details) for h in self._handlers)
            self._methods[method] = next((h for h in found if h is not None), None)
        return self._methods[method]

    async def _generic(self, call, method: str, payload: bytes, metadata: list, time_remaining) -> None:
        handler = self._lookup(method)
        if handler is None:  # grpc's own answer to an unknown method
            call.finish(grpc.StatusCode.UNIMPLEMENTED.value[0], "Method not found!", None, ())
            return
        if handler.unary_unary is None:
            message = f"{method}: streaming methods are served by the Python data plane only (--dataplane python)"
            call.finish(grpc.StatusCode.UNIMPLEMENTED.value[0], message, None, ())
            return
        context = _Context(metadata, time_remaining)
        try:
            request = handler.request_deserializer(payload) if handler.request_deserializer else payload
            response = await handler.unary_unary(request, context)
            body = handler.response_serializer(response) if handler.response_serializer else response
        except grpc.aio.AbortError:
            call.finish(context.code.value[0], context.details, None, context.trailing)
        except asyncio.CancelledError:
            call.finish(grpc.StatusCode.CANCELLED.value[0], "Cancelled", None, ())
        except Exception as exc:  # as grpc.aio answers a handler that raised
            log.exception("%s failed", method)
            call.finish(grpc.StatusCode.UNKNOWN.value[0], f"Unexpected {type(exc)}: {exc}", None, context.trailing)
        else:
            call.finish(context.code.value[0], context.details, body, context.trailing)


class _Handlers:
    """Collects generic handlers the way ``grpc.aio.Server`` does (for ``add_*Servicer_to_server``)."""

    def __init__(self) -> None:
        self.generic: list[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, handlers) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, service, handlers) -> None:
        pass  # the generic handler added alongside serves the same methods


class NativeGrpcServer:
    """The C++ server behind the same ``stop(grace)`` as ``grpc.aio.Server``."""

    def __init__(self, server, dispatcher: _Dispatcher) -> None:
        self._server = server
        self._dispatcher = dispatcher  # referenced by the C++ server too; kept for clarity

    def begin_stop(self) -> None:
        """Close the port and send GOAWAY on every connection now; calls in flight go on (see :meth:`stop`)."""
        self._server.begin_shutdown()

    async def stop(self, grace: float | None) -> None:
        """Let calls in flight finish for ``grace`` seconds, cancel the rest, stop the threads."""
        await asyncio.to_thread(self._server.shutdown, grace or 0.0)


async def start(
    frontend: GrpcFrontend,
    health,
    options: dict,
    ports: list[tuple[str, ServerTls | None]],
    threads: int,
    v2: V2Grpc | None = None,
) -> tuple[NativeGrpcServer, list[int]]:
    """Start the native server with ``frontend``'s handlers and the ``health`` servicer.

    ``options``: gRPC channel arguments (as for ``grpc.aio.server``); ``ports``: (address, TLS or None)
    pairs; ``threads``: native threads (they decode, check and encode; inference threads compute).
    Returns the server and the port bound for each address (:class:`UsageError` if one fails).
    """
    module = native.load()
    if module is None:  # callers choose this data plane only when the extension loads
        raise UsageError(f"the native data plane is not available: {native.unavailable_reason()}")
    handlers = _Handlers()
    handlers.add_generic_rpc_handlers(frontend.handlers())
    if v2 is not None:  # the Open Inference Protocol, same port
        handlers.add_generic_rpc_handlers(v2.handlers())
    health_pb2_grpc.add_HealthServicer_to_server(health, handlers)
    dispatcher = _Dispatcher(asyncio.get_running_loop(), frontend, handlers.generic, v2)
    server = module.Server(dispatcher, TENSOR_CONTENT_KEY, frontend.max_tensor_bytes)
    for key, value in options.items():
        server.add_channel_argument(key, value)
    indexes = []
    for address, tls in ports:
        if tls is None:
            indexes.append(server.add_port(address))
        else:
            indexes.append(server.add_port(address, tls.key.decode(), tls.cert.decode(), _text(tls.client_ca)))
    try:
        server.start(threads)
    except RuntimeError as exc:
        addresses = ", ".join(address for address, _ in ports)
        raise UsageError(f"cannot listen for gRPC on {addresses}: {exc}") from exc
    log.info("gRPC data plane: native (C++ gRPC, %d threads)", threads)
    return NativeGrpcServer(server, dispatcher), [server.bound_port(i) for i in indexes]


def _text(pem: bytes | None) -> str | None:
    return None if pem is None else pem.decode()


async def start_for(
    config, frontend: GrpcFrontend, health, options: dict, v2: V2Grpc | None = None
) -> tuple[NativeGrpcServer, int | None]:
    """:func:`start` on a :class:`~deploykit.server.app.ServerConfig`'s gRPC port (TLS as configured)
    and unix socket; returns the server and the TCP port bound (None without one)."""
    ports: list[tuple[str, ServerTls | None]] = []
    if config.grpc_port is not None:
        ports.append((f"{config.host}:{config.grpc_port}", config.tls))
    if config.grpc_socket_path is not None:
        ports.append((f"unix:{config.grpc_socket_path}", None))
    server, bound = await start(frontend, health, options, ports, NATIVE_THREADS, v2)
    return server, bound[0] if config.grpc_port is not None else None
