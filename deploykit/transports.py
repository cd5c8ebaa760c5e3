"""How the client's bytes travel: blocking or asyncio, over gRPC or HTTP.

A transport sends a :class:`~deploykit.protocol.codec.WireRequest`'s bytes to its path and returns
a :class:`Reply`: the answer's bytes, or the gRPC code and message it failed with (an HTTP
status is read back as its code through :mod:`deploykit.protocol.status_codes`). Transports never
raise for an answer and know no message type: codecs (:mod:`deploykit.protocol.codec`) decide what
is sent, the client shell (:mod:`deploykit.client`) what a failure means.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import grpc

from deploykit.errors import UsageError
from deploykit.protocol import status_codes, wire
from deploykit.protocol.codec import WireRequest
from deploykit.tls import ClientTls


@dataclass(frozen=True)
class Target:
    """Where a server listens: ``grpc(s)://host:port`` or ``http(s)://host:port``."""

    scheme: str
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``scheme://host:port``."""
        return f"{self.scheme}://{self.address}"

    @property
    def is_rest(self) -> bool:
        return self.scheme in ("http", "https")

    @property
    def wire(self) -> str:
        """The transport family: "http" or "grpc" (what a :class:`~deploykit.protocol.codec.Codec` names)."""
        return "http" if self.is_rest else "grpc"

    @property
    def secure(self) -> bool:
        """TLS: ``grpcs://`` or ``https://``."""
        return self.scheme in ("grpcs", "https")


def parse_target(text: str) -> Target:
    """``grpc://host:port``, ``grpcs://...``, ``http://host:port``, ``https://...`` or bare ``host:port`` (gRPC)."""
    url = urlparse(text if "://" in text else f"grpc://{text}")
    if url.scheme not in ("grpc", "grpcs", "http", "https") or not url.hostname:
        raise UsageError(f"cannot parse target {text!r}; expected grpc(s)://HOST:PORT or http(s)://HOST:PORT")
    default_port = {"grpc": 8500, "grpcs": 443, "http": 8501, "https": 443}[url.scheme]
    try:
        port = url.port or default_port
    except ValueError:
        raise UsageError(f"target {text!r} has an invalid port") from None
    return Target(url.scheme, url.hostname, port)


def client_tls(
    target: Target, ca_file: str | Path | None, cert_file: str | Path | None, key_file: str | Path | None
) -> ClientTls | None:
    """The TLS material for ``target``: read for grpcs:// and https://, refused for plaintext targets."""
    if target.secure:
        return ClientTls.from_files(ca_file, cert_file, key_file)
    if ca_file or cert_file or key_file:
        raise UsageError(
            f"TLS files given for a plaintext target {target.scheme}://{target.address}: use grpcs:// or https://"
        )
    return None


@dataclass(frozen=True)
class Reply:
    """What came back: ``code`` OK with ``body``, or a failure's code and message."""

    code: grpc.StatusCode
    body: bytes = b""
    message: str = ""
    metadata: dict[str, str] = field(default_factory=dict)  # gRPC trailers / HTTP headers
    reached: bool = True  # False: no connection to the target at all

    @property
    def ok(self) -> bool:
        return self.code == grpc.StatusCode.OK


class BlockingTransport(Protocol):
    def send(self, request: WireRequest[Any], timeout: float) -> Reply: ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    async def send(self, request: WireRequest[Any], timeout: float) -> Reply: ...

    async def close(self) -> None: ...


# -- gRPC: raw bytes on the method path (no serializer: the codec serialised the message)
def open_channel(grpc_module: Any, address: str, tls: ClientTls | None, max_message_bytes: int) -> Any:
    """A ``grpc`` or ``grpc.aio`` channel to ``address``, with TLS when ``tls`` is given."""
    options = wire.grpc_message_limits(max_message_bytes)
    if tls is None:
        return grpc_module.insecure_channel(address, options=options)
    return grpc_module.secure_channel(address, tls.grpc_credentials(), options=options)


def _grpc_failure(err: grpc.RpcError) -> Reply:
    return Reply(err.code(), message=err.details() or "")


class _Channel:
    """A channel and its raw-bytes callables, one per method path."""

    def __init__(self, grpc_module: Any, target: Target, tls: ClientTls | None, max_message_bytes: int) -> None:
        self.channel = open_channel(grpc_module, target.address, tls, max_message_bytes)
        self._callables: dict[str, Any] = {}

    def _callable(self, path: str) -> Any:
        if path not in self._callables:
            self._callables[path] = self.channel.unary_unary(path)
        return self._callables[path]


class GrpcTransport(_Channel):
    """Blocking gRPC (one channel)."""

    def __init__(self, target: Target, tls: ClientTls | None, *, timeout: float, max_message_bytes: int) -> None:
        super().__init__(grpc, target, tls, max_message_bytes)

    def send(self, request: WireRequest[Any], timeout: float) -> Reply:
        try:
            body, call = self._callable(request.path).with_call(
                request.body, timeout=timeout, metadata=request.metadata
            )
        except grpc.RpcError as err:
            return _grpc_failure(err)
        return Reply(grpc.StatusCode.OK, body, metadata=dict(call.trailing_metadata() or ()))

    def close(self) -> None:
        self.channel.close()


class AsyncGrpcTransport(_Channel):
    """asyncio gRPC (one grpc.aio channel)."""

    def __init__(self, target: Target, tls: ClientTls | None, *, timeout: float, max_message_bytes: int) -> None:
        super().__init__(grpc.aio, target, tls, max_message_bytes)

    async def send(self, request: WireRequest[Any], timeout: float) -> Reply:
        call = self._callable(request.path)(request.body, timeout=timeout, metadata=request.metadata)
        try:
            body = await call
        except grpc.RpcError as err:
            return _grpc_failure(err)
        return Reply(grpc.StatusCode.OK, body, metadata=dict(await call.trailing_metadata() or ()))

    async def close(self) -> None:
        await self.channel.close()


# -- HTTP (httpx): GET without a body, POST with one
def _http_reply(response: Any) -> Reply:
    headers = dict(response.headers)
    if response.status_code == 200:
        return Reply(grpc.StatusCode.OK, response.content, metadata=headers)
    try:  # TF Serving and the Open Inference Protocol both answer {"error": message}
        message = json.loads(response.content).get("error", response.text)
    except (ValueError, AttributeError):
        message = response.text
    return Reply(status_codes.code_for_http(response.status_code), message=str(message), metadata=headers)


def _no_connection(exc: Exception) -> Reply:
    return Reply(grpc.StatusCode.UNAVAILABLE, message=str(exc), reached=False)


def _http_call(request: WireRequest[Any]) -> dict[str, Any]:
    method = "GET" if request.body is None else "POST"
    return {"method": method, "url": request.path, "content": request.body, "headers": dict(request.metadata)}


class HttpTransport:
    """Blocking HTTP/1.1 with keep-alive (httpx.Client)."""

    def __init__(self, target: Target, tls: ClientTls | None, *, timeout: float, max_message_bytes: int) -> None:
        import httpx

        self.httpx = httpx
        self.client = httpx.Client(base_url=target.url, timeout=timeout, verify=tls.ssl_context() if tls else True)

    def send(self, request: WireRequest[Any], timeout: float) -> Reply:
        try:
            return _http_reply(self.client.request(**_http_call(request), timeout=timeout))
        except self.httpx.TransportError as exc:
            return _no_connection(exc)

    def close(self) -> None:
        self.client.close()


class AsyncHttpTransport:
    """asyncio HTTP/1.1 with keep-alive (httpx.AsyncClient)."""

    def __init__(self, target: Target, tls: ClientTls | None, *, timeout: float, max_message_bytes: int) -> None:
        import httpx

        self.httpx = httpx
        self.client = httpx.AsyncClient(base_url=target.url, timeout=timeout, verify=tls.ssl_context() if tls else True)

    async def send(self, request: WireRequest[Any], timeout: float) -> Reply:
        try:
            return _http_reply(await self.client.request(**_http_call(request), timeout=timeout))
        except self.httpx.TransportError as exc:
            return _no_connection(exc)

    async def close(self) -> None:
        await self.client.aclose()


#: Transport class per wire family, blocking and asyncio.
BLOCKING: dict[str, type] = {"grpc": GrpcTransport, "http": HttpTransport}
ASYNCIO: dict[str, type] = {"grpc": AsyncGrpcTransport, "http": AsyncHttpTransport}
