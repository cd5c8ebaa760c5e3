"""The shared client: one code path to TF Serving and to ``deploykit serve``, over gRPC or REST.

::

    with Client("grpc://127.0.0.1:8500") as client:          # or "http://127.0.0.1:8501"
        client.wait_until_ready("mlp-torch-onnx")
        outputs = client.predict("mlp-torch-onnx", {"x": batch})

:class:`AsyncClient` has the same methods as coroutines (grpc.aio / httpx.AsyncClient). Both
raise :mod:`deploykit.errors` classes for error statuses (``ModelNotFound``, ``InvalidInput``, ...,
from the table the server maps with: :mod:`deploykit.protocol.status_codes`), retry only
UNAVAILABLE (HTTP 503 or no connection) with exponential backoff within the call's deadline, raise
:class:`~deploykit.errors.Unreachable` when it expires, and lift gRPC's 4 MiB message limit.
``grpcs://`` and ``https://`` targets use TLS: ``ca_file`` is the CA that signed the server's
certificate (default: the system's trust store), ``cert_file``/``key_file`` the client's own for
mutual TLS. This module imports neither TensorFlow nor PyTorch.

How it is built (and where a protocol plugs in): every API method is written once, as a generator
of steps (send this :class:`~deploykit.protocol.codec.WireRequest`, sleep this long) over the
target's codec; :class:`Client` runs the steps on a blocking transport, :class:`AsyncClient` on an
asyncio one (:mod:`deploykit.transports`). A second wire protocol is a second codec registered in
:data:`CODECS` and chosen with ``protocol=``; see :mod:`deploykit.protocol.codec`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import grpc

from deploykit import transports
from deploykit.errors import DeployKitError, ModelNotFound, Unreachable, UsageError
from deploykit.model_ref import ModelRef
from deploykit.protocol import status_codes, wire
from deploykit.protocol.codec import Classifications, Codec, Features, VersionStatus, WireRequest
from deploykit.protocol.tfserving_grpc import TfServingGrpcCodec
from deploykit.protocol.tfserving_rest import TfServingRestCodec
from deploykit.protocol.v2_codecs import V2GrpcCodec, V2RestCodec
from deploykit.tensors import Signature, Tensors
from deploykit.tls import ClientTls
from deploykit.transports import Reply, Target, client_tls, parse_target

__all__ = ["CODECS", "AsyncClient", "Client", "Target", "VersionStatus", "client_tls", "parse_target", "split_protocol"]

MAX_MESSAGE_BYTES = wire.MAX_MESSAGE_BYTES
DEFAULT_TIMEOUT = 30.0
_BACKOFF_START, _BACKOFF_MAX = 0.05, 1.0

#: (protocol, wire family) -> codec factory, called with ``tensor_content=``. Add a protocol here.
CODECS: dict[tuple[str, str], Callable[..., Codec]] = {
    ("tfserving", "grpc"): TfServingGrpcCodec,
    ("tfserving", "http"): lambda tensor_content=True: TfServingRestCodec(),  # REST JSON has no raw bytes
    ("v2", "grpc"): V2GrpcCodec,  # the Open Inference Protocol (KServe v2): Triton, KServe, MLServer, ...
    ("v2", "http"): V2RestCodec,
}


def split_protocol(target: str, protocol: str = "tfserving") -> tuple[str, str]:
    """A target's protocol prefix: ``v2+grpc://host:8001`` -> ``("v2", "grpc://host:8001")``; a
    target without one keeps ``protocol`` (TF Serving's API by default)."""
    prefix, plus, rest = target.partition("+")
    if plus and "://" in rest and "://" not in prefix and "/" not in prefix:
        return prefix, rest
    return protocol, target


T = TypeVar("T")
P = ParamSpec("P")


@dataclass(frozen=True)
class _Send:
    request: WireRequest[Any]
    timeout: float


@dataclass(frozen=True)
class _Sleep:
    seconds: float


#: What an API method yields to its runner (send -> the Reply; sleep -> None), and finally returns.
Steps = Generator[_Send | _Sleep, Reply | None, T]


def _backoff(attempt: int) -> float:
    return min(_BACKOFF_START * 2.0**attempt, _BACKOFF_MAX)


class _Shell:
    """Everything both clients share: target, codec, the API written once as generators of steps."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        tensor_content: bool = True,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        tls: ClientTls | None = None,
        protocol: str = "tfserving",
    ) -> None:
        protocol, target = split_protocol(target, protocol)
        self.target = parse_target(target)
        self.protocol = protocol
        self.timeout = timeout
        self.tensor_content = tensor_content
        self.max_message_bytes = max_message_bytes
        self.tls = client_tls(self.target, ca_file, cert_file, key_file) if tls is None else tls
        if (protocol, self.target.wire) not in CODECS:
            known = sorted({name for name, _ in CODECS})
            raise UsageError(f"unknown protocol {protocol!r} for {self.target.url}; expected one of {known}")
        self.codec = CODECS[protocol, self.target.wire](tensor_content=tensor_content)
        self._signatures: dict[tuple[str, int | None, str | None], dict[str, Signature]] = {}

    def _transport_options(self) -> dict[str, Any]:
        return {"timeout": self.timeout, "max_message_bytes": self.max_message_bytes}

    # -- one exchange: retry UNAVAILABLE until the deadline, raise from the shared table otherwise
    def _error(self, reply: Reply) -> DeployKitError:
        """No answer within the deadline (UNAVAILABLE, DEADLINE_EXCEEDED) is Unreachable (exit 3)."""
        if not reply.reached:
            return Unreachable(f"{self.target.url} unreachable: {reply.message}")
        if reply.code == grpc.StatusCode.UNAVAILABLE:
            return Unreachable(f"{self.target.url} unavailable: {reply.message}")
        if reply.code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return Unreachable(f"{self.target.url}: deadline exceeded: {reply.message}")
        return status_codes.error_for(reply.code, reply.message)

    def _exchange(self, request: WireRequest[T], timeout: float | None = None) -> Steps[tuple[T, dict[str, str]]]:
        """Send ``request``; its decoded answer and the answer's metadata (gRPC trailers, HTTP headers)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        attempt = 0
        while True:
            reply = yield _Send(request, max(deadline - time.monotonic(), 0.001))
            assert reply is not None
            if reply.ok:
                return request.decode(reply.body), reply.metadata
            error = self._error(reply)
            if reply.code != grpc.StatusCode.UNAVAILABLE or time.monotonic() + _backoff(attempt) >= deadline:
                raise error
            yield _Sleep(_backoff(attempt))
            attempt += 1

    def _call(self, request: WireRequest[T], timeout: float | None) -> Steps[T]:
        value, _ = yield from self._exchange(request, timeout)
        return value

    # -- the API, written once (Client and AsyncClient expose these under the names without "_")
    def _predict(
        self,
        model: str,
        inputs: Tensors,
        *,
        version: int | None = None,
        label: str | None = None,
        signature: str = "",
        output_filter: list[str] | None = None,
        timeout: float | None = None,
    ) -> Steps[Tensors]:
        """Run the model on ``inputs`` (name -> numpy array); returns name -> numpy array."""
        signatures = None
        if self.codec.predict_needs_signatures:
            signatures = yield from self._metadata(model, version=version, label=label, timeout=timeout)
        request = self.codec.predict(ModelRef(model, version, label, signature), inputs, output_filter, signatures)
        return (yield from self._call(request, timeout))

    def _classify(
        self,
        model: str,
        examples: list[Features],
        *,
        context: Features | None = None,
        version: int | None = None,
        label: str | None = None,
        signature: str = "",
        timeout: float | None = None,
    ) -> Steps[Classifications]:
        """Classify ``tf.Example`` s given as feature dicts (``{"x": 2.0}``; a list for several
        values, ``bytes`` for binary ones), with ``context`` features shared by all; returns
        (label, score) per class per example (label ``""`` when the model has no classes)."""
        request = self.codec.classify(ModelRef(model, version, label, signature), examples, context)
        return (yield from self._call(request, timeout))

    def _regress(
        self,
        model: str,
        examples: list[Features],
        *,
        context: Features | None = None,
        version: int | None = None,
        label: str | None = None,
        signature: str = "",
        timeout: float | None = None,
    ) -> Steps[list[float]]:
        """Regress ``tf.Example`` s (as in :meth:`classify`); returns one value per example."""
        request = self.codec.regress(ModelRef(model, version, label, signature), examples, context)
        return (yield from self._call(request, timeout))

    def _metadata(
        self, model: str, *, version: int | None = None, label: str | None = None, timeout: float | None = None
    ) -> Steps[dict[str, Signature]]:
        """Signature name -> :class:`~deploykit.tensors.Signature` (cached per model/version/label)."""
        key = (model, version, label)
        if key not in self._signatures:
            self._signatures[key] = yield from self._call(self.codec.metadata(ModelRef(model, version, label)), timeout)
        return self._signatures[key]

    def _status(
        self, model: str, *, version: int | None = None, timeout: float | None = None
    ) -> Steps[list[VersionStatus]]:
        """Every version's state (AVAILABLE, END with an error, ...)."""
        return (yield from self._call(self.codec.status(ModelRef(model, version)), timeout))

    def _wait_until_ready(self, model: str, *, timeout: float = 60.0) -> Steps[list[VersionStatus]]:
        """Until a version of ``model`` is AVAILABLE; :class:`Unreachable` after ``timeout``."""
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            try:
                found = yield from self._status(model, timeout=max(deadline - time.monotonic(), 0.01))
                if any(s.state == "AVAILABLE" for s in found):
                    return found
                reason = f"no AVAILABLE version yet: {found}"
            except (Unreachable, ModelNotFound) as exc:
                reason = str(exc)
            if time.monotonic() + _backoff(attempt) >= deadline:
                raise Unreachable(f"{model} at {self.target.url} not ready after {timeout:g} s ({reason})")
            yield _Sleep(_backoff(attempt))
            attempt += 1

    def _send(self, request: WireRequest[T], *, timeout: float | None = None) -> Steps[tuple[T, dict[str, str]]]:
        """Send a request built by a codec (e.g. a load-test payload): the decoded answer and the
        answer's metadata (gRPC trailers or HTTP headers), with the retries and errors of every call."""
        return (yield from self._exchange(request, timeout))


def _public(op: Callable[..., Any], method: Callable[..., Any]) -> Callable[..., Any]:
    functools.update_wrapper(method, op)
    method.__name__ = method.__qualname__ = op.__name__.lstrip("_")
    return method


def _blocking(op: Callable[Concatenate[Any, P], Steps[T]]) -> Callable[Concatenate[Any, P], T]:
    """The API method ``op`` as a blocking method (steps run by ``self._run``)."""

    def method(self: Client, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(op(self, *args, **kwargs))

    return _public(op, method)


def _awaitable(op: Callable[Concatenate[Any, P], Steps[T]]) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]:
    """The API method ``op`` as a coroutine method (steps awaited by ``self._run``)."""

    async def method(self: AsyncClient, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(op(self, *args, **kwargs))

    return _public(op, method)


class Client(_Shell):
    """Synchronous client (grpc / httpx)."""

    def __init__(self, target: str, **options: Any) -> None:
        super().__init__(target, **options)
        self._transport = transports.BLOCKING[self.target.wire](self.target, self.tls, **self._transport_options())

    def _run(self, steps: Steps[T]) -> T:
        reply: Reply | None = None
        while True:
            try:
                step = steps.send(reply)
            except StopIteration as done:
                result: T = done.value
                return result
            if isinstance(step, _Sleep):
                time.sleep(step.seconds)
                reply = None
            else:
                reply = self._transport.send(step.request, step.timeout)

    predict = _blocking(_Shell._predict)
    classify = _blocking(_Shell._classify)
    regress = _blocking(_Shell._regress)
    metadata = _blocking(_Shell._metadata)
    status = _blocking(_Shell._status)
    wait_until_ready = _blocking(_Shell._wait_until_ready)
    send = _blocking(_Shell._send)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Shell):
    """asyncio client (grpc.aio / httpx.AsyncClient) with the same methods as :class:`Client`."""

    def __init__(self, target: str, **options: Any) -> None:
        super().__init__(target, **options)
        self._transport = transports.ASYNCIO[self.target.wire](self.target, self.tls, **self._transport_options())

    async def _run(self, steps: Steps[T]) -> T:
        reply: Reply | None = None
        while True:
            try:
                step = steps.send(reply)
            except StopIteration as done:
                result: T = done.value
                return result
            if isinstance(step, _Sleep):
                await asyncio.sleep(step.seconds)
                reply = None
            else:
                reply = await self._transport.send(step.request, step.timeout)

    predict = _awaitable(_Shell._predict)
    classify = _awaitable(_Shell._classify)
    regress = _awaitable(_Shell._regress)
    metadata = _awaitable(_Shell._metadata)
    status = _awaitable(_Shell._status)
    wait_until_ready = _awaitable(_Shell._wait_until_ready)
    send = _awaitable(_Shell._send)

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
