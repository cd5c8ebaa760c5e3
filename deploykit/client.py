"""The shared client: one code path to TF Serving and to ``deploykit serve``, over gRPC or REST.

::

    with Client("grpc://127.0.0.1:8500") as client:          # or "http://127.0.0.1:8501"
        client.wait_until_ready("mlp-torch-onnx")
        outputs = client.predict("mlp-torch-onnx", {"x": batch})

:class:`AsyncClient` has the same methods as coroutines (grpc.aio / httpx.AsyncClient). Both
raise :mod:`deploykit.errors` classes for error statuses (``ModelNotFound``, ``InvalidInput``, ...),
retry only UNAVAILABLE (HTTP 503 or no connection) with exponential backoff within the call's
deadline, raise :class:`~deploykit.errors.Unreachable` when it expires, and lift gRPC's 4 MiB message
limit. ``grpcs://`` and ``https://`` targets use TLS: ``ca_file`` is the CA that signed the server's
certificate (default: the system's trust store), ``cert_file``/``key_file`` the client's own for
mutual TLS. This module imports neither TensorFlow nor PyTorch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import grpc

from deploykit.errors import (
    FailedPrecondition,
    InvalidInput,
    ModelNotFound,
    ResourceExhausted,
    RuntimeFailure,
    ServingError,
    SignatureNotFound,
    Unimplemented,
    Unreachable,
    UsageError,
)
from deploykit.protocol import grpc_paths, messages, rest_client
from deploykit.protocol.grpc_paths import Method
from deploykit.protocol.messages import VersionStatus
from deploykit.tensors import Signature, Tensors
from deploykit.tls import ClientTls

__all__ = ["AsyncClient", "Client", "Target", "VersionStatus", "parse_target"]

MAX_MESSAGE_BYTES = 2**31 - 1
#: gRPC metadata asking deploykit's server for tensor_content outputs (TF Serving ignores it).
TENSOR_CONTENT_METADATA = (("x-deploykit-tensor-content", "1"),)
DEFAULT_TIMEOUT = 30.0
_BACKOFF_START, _BACKOFF_MAX = 0.05, 1.0

_ERRORS_BY_CODE: dict[grpc.StatusCode, type[ServingError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInput,
    grpc.StatusCode.NOT_FOUND: ModelNotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.INTERNAL: RuntimeFailure,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,  # e.g. a Predict-only gateway asked for its status
}
_CODES_BY_HTTP = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


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
    def is_rest(self) -> bool:
        return self.scheme in ("http", "https")

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


def _serving_error(code: grpc.StatusCode, message: str, target: Target) -> Exception:
    if code == grpc.StatusCode.UNAVAILABLE:
        return Unreachable(f"{target.scheme}://{target.address} unavailable: {message}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Unreachable(f"{target.scheme}://{target.address}: deadline exceeded: {message}")
    return _ERRORS_BY_CODE.get(code, ServingError)(message)


class _Base:
    """Target parsing, request building, response checking and the metadata cache of both clients.

    :class:`Client` and :class:`AsyncClient` differ only in how they wait (blocking or awaiting);
    everything that decides *what* is sent and how an answer is read lives here.
    """

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
    ) -> None:
        self.target = parse_target(target)
        self.timeout = timeout
        self.tensor_content = tensor_content
        self.max_message_bytes = max_message_bytes
        self.tls = client_tls(self.target, ca_file, cert_file, key_file) if tls is None else tls
        self._signatures: dict[tuple, dict[str, Signature]] = {}

    def _grpc_options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
        ]

    def _unary_calls(self, channel) -> dict[Method, Any]:
        return {
            m: channel.unary_unary(
                m.path, request_serializer=m.request.SerializeToString, response_deserializer=m.response.FromString
            )
            for m in grpc_paths.METHODS
        }

    def _base_url(self) -> str:
        return f"{self.target.scheme}://{self.target.address}"

    def _http_verify(self):
        """httpx's ``verify``: the TLS context for https targets."""
        return self.tls.ssl_context() if self.tls else True

    def _open_channel(self, grpc_module):
        """A ``grpc`` or ``grpc.aio`` channel to the target, with TLS for grpcs://."""
        address, options = self.target.address, self._grpc_options()
        if self.tls is None:
            return grpc_module.insecure_channel(address, options=options)
        return grpc_module.secure_channel(address, self.tls.grpc_credentials(), options=options)

    @staticmethod
    def _backoff(attempt: int) -> float:
        return min(_BACKOFF_START * 2**attempt, _BACKOFF_MAX)

    # -- failures: _Retry for what may pass on a second try (UNAVAILABLE), the error otherwise
    def _grpc_failure(self, err: grpc.RpcError) -> Exception:
        error = _serving_error(err.code(), err.details() or "", self.target)
        return _Retry(error) if err.code() == grpc.StatusCode.UNAVAILABLE else error

    def _transport_failure(self, exc: Exception) -> _Retry:
        return _Retry(Unreachable(f"{self._base_url()} unreachable: {exc}"))

    def _rest_document(self, response) -> dict:
        if response.status_code == 200:
            return response.json()
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        code = _CODES_BY_HTTP.get(response.status_code, grpc.StatusCode.UNKNOWN)
        error = _serving_error(code, message, self.target)
        raise _Retry(error) if response.status_code == 503 else error

    # -- requests
    def _grpc_predict(self, model, inputs, version, label, signature, output_filter):
        request = messages.predict_request(
            model,
            inputs,
            version=version,
            label=label,
            signature=signature,
            output_filter=output_filter,
            tensor_content=self.tensor_content,
        )
        return request, (TENSOR_CONTENT_METADATA if self.tensor_content else ())

    @staticmethod
    def _rest_predict(signatures, model, inputs, version, label, signature) -> tuple[str, dict, Signature]:
        name = signature or "serving_default"
        if name not in signatures:
            raise SignatureNotFound(f'Serving signature name: "{name}" not found in signature def')
        path = rest_client.model_path(model, version, label) + ":predict"
        return path, rest_client.predict_body(inputs, signature), signatures[name]

    @staticmethod
    def _rest_examples(verb, model, examples, context, version, label, signature) -> tuple[str, dict]:
        path = rest_client.model_path(model, version, label) + f":{verb}"
        return path, rest_client.examples_body(examples, context, signature)

    @staticmethod
    def _grpc_examples(method: Method, model, examples, context, version, label, signature):
        return messages.examples_request(
            method.request(), model, examples, context=context, version=version, label=label, signature=signature
        )

    @staticmethod
    def _not_ready_reason(found: list[VersionStatus]) -> str | None:
        return None if any(s.state == "AVAILABLE" for s in found) else f"no AVAILABLE version yet: {found}"

    def _not_ready_error(self, model: str, timeout: float, reason: str) -> Unreachable:
        return Unreachable(f"{model} at {self._base_url()} not ready after {timeout:g} s ({reason})")


class Client(_Base):
    """Synchronous client (grpc / httpx)."""

    def __init__(self, target: str, **options: Any) -> None:
        super().__init__(target, **options)
        if self.target.is_rest:
            import httpx

            self._http = httpx.Client(base_url=self._base_url(), timeout=self.timeout, verify=self._http_verify())
        else:
            self._channel = self._open_channel(grpc)
            self._calls = self._unary_calls(self._channel)

    def _retrying(self, call: Callable[[float], Any], timeout: float | None) -> Any:
        deadline = time.monotonic() + (timeout or self.timeout)
        attempt = 0
        while True:
            try:
                return call(max(deadline - time.monotonic(), 0.001))
            except _Retry as retry:
                if time.monotonic() + self._backoff(attempt) >= deadline:
                    raise retry.error from None
                time.sleep(self._backoff(attempt))
                attempt += 1

    def _grpc(self, method: Method, request, timeout: float | None, metadata=()) -> Any:
        def call(remaining: float):
            try:
                return self._calls[method](request, timeout=remaining, metadata=metadata)
            except grpc.RpcError as err:
                raise self._grpc_failure(err) from None

        return self._retrying(call, timeout)

    def _rest(self, verb: str, path: str, body: dict | None, timeout: float | None) -> dict:
        import httpx

        def call(remaining: float):
            try:
                response = self._http.request(verb, path, json=body, timeout=remaining)
            except httpx.TransportError as exc:
                raise self._transport_failure(exc) from None
            return self._rest_document(response)

        return self._retrying(call, timeout)

    # -- API
    def predict(
        self,
        model: str,
        inputs: Tensors,
        *,
        version: int | None = None,
        label: str | None = None,
        signature: str = "",
        output_filter: list[str] | None = None,
        timeout: float | None = None,
    ) -> Tensors:
        """Run the model on ``inputs`` (name -> numpy array); returns name -> numpy array."""
        if self.target.is_rest:
            signatures = self.metadata(model, version=version, label=label, timeout=timeout)
            path, body, sig = self._rest_predict(signatures, model, inputs, version, label, signature)
            return rest_client.predict_outputs(self._rest("POST", path, body, timeout), sig, output_filter)
        request, metadata = self._grpc_predict(model, inputs, version, label, signature, output_filter)
        return messages.predict_outputs(self._grpc(grpc_paths.PREDICT, request, timeout, metadata))

    def classify(
        self,
        model: str,
        examples: list[dict],
        *,
        context: dict | None = None,
        version: int | None = None,
        label: str | None = None,
        signature: str = "",
        timeout: float | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Classify ``tf.Example`` s given as feature dicts (``{"x": 2.0}``; a list for several
        values, ``bytes`` for binary ones), with ``context`` features shared by all; returns
        (label, score) per class per example (label ``""`` when the model has no classes)."""
        if self.target.is_rest:
            path, body = self._rest_examples("classify", model, examples, context, version, label, signature)
            return rest_client.classifications(self._rest("POST", path, body, timeout))
        request = self._grpc_examples(grpc_paths.CLASSIFY, model, examples, context, version, label, signature)
        return messages.classifications(self._grpc(grpc_paths.CLASSIFY, request, timeout))

    def regress(
        self,
        model: str,
        examples: list[dict],
        *,
        context: dict | None = None,
        version: int | None = None,
        label: str | None = None,
        signature: str = "",
        timeout: float | None = None,
    ) -> list[float]:
        """Regress ``tf.Example`` s (as in :meth:`classify`); returns one value per example."""
        if self.target.is_rest:
            path, body = self._rest_examples("regress", model, examples, context, version, label, signature)
            return rest_client.regressions(self._rest("POST", path, body, timeout))
        request = self._grpc_examples(grpc_paths.REGRESS, model, examples, context, version, label, signature)
        return messages.regressions(self._grpc(grpc_paths.REGRESS, request, timeout))

    def metadata(
        self, model: str, *, version: int | None = None, label: str | None = None, timeout: float | None = None
    ) -> dict[str, Signature]:
        """Signature name -> :class:`~deploykit.tensors.Signature` (cached per model/version/label)."""
        key = (model, version, label)
        if key not in self._signatures:
            if self.target.is_rest:
                path = rest_client.model_path(model, version, label) + "/metadata"
                self._signatures[key] = rest_client.signatures(self._rest("GET", path, None, timeout))
            else:
                request = messages.metadata_request(model, version, label)
                self._signatures[key] = messages.signatures(self._grpc(grpc_paths.GET_MODEL_METADATA, request, timeout))
        return self._signatures[key]

    def status(self, model: str, *, version: int | None = None, timeout: float | None = None) -> list[VersionStatus]:
        """Every version's state (AVAILABLE, END with an error, ...)."""
        if self.target.is_rest:
            return rest_client.statuses(self._rest("GET", rest_client.model_path(model, version), None, timeout))
        request = messages.status_request(model, version)
        return messages.statuses(self._grpc(grpc_paths.GET_MODEL_STATUS, request, timeout))

    def wait_until_ready(self, model: str, *, timeout: float = 60.0) -> list[VersionStatus]:
        """Block until a version of ``model`` is AVAILABLE; :class:`Unreachable` after ``timeout``."""
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            try:
                found = self.status(model, timeout=max(deadline - time.monotonic(), 0.01))
                if (reason := self._not_ready_reason(found)) is None:
                    return found
            except (Unreachable, ModelNotFound) as exc:
                reason = str(exc)
            if time.monotonic() + self._backoff(attempt) >= deadline:
                raise self._not_ready_error(model, timeout, reason)
            time.sleep(self._backoff(attempt))
            attempt += 1

    def close(self) -> None:
        if self.target.is_rest:
            self._http.close()
        else:
            self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncClient(_Base):
    """asyncio client (grpc.aio / httpx.AsyncClient) with the same methods as :class:`Client`."""

    def __init__(self, target: str, **options: Any) -> None:
        super().__init__(target, **options)
        if self.target.is_rest:
            import httpx

            self._http = httpx.AsyncClient(base_url=self._base_url(), timeout=self.timeout, verify=self._http_verify())
        else:
            self._channel = self._open_channel(grpc.aio)
            self._calls = self._unary_calls(self._channel)

    async def _retrying(self, call, timeout: float | None) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.timeout)
        attempt = 0
        while True:
            try:
                return await call(max(deadline - loop.time(), 0.001))
            except _Retry as retry:
                if loop.time() + self._backoff(attempt) >= deadline:
                    raise retry.error from None
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1

    async def _grpc(self, method: Method, request, timeout: float | None, metadata=()) -> Any:
        async def call(remaining: float):
            try:
                return await self._calls[method](request, timeout=remaining, metadata=metadata)
            except grpc.RpcError as err:
                raise self._grpc_failure(err) from None

        return await self._retrying(call, timeout)

    async def _rest(self, verb: str, path: str, body: dict | None, timeout: float | None) -> dict:
        import httpx

        async def call(remaining: float):
            try:
                response = await self._http.request(verb, path, json=body, timeout=remaining)
            except httpx.TransportError as exc:
                raise self._transport_failure(exc) from None
            return self._rest_document(response)

        return await self._retrying(call, timeout)

    async def predict(
        self,
        model: str,
        inputs: Tensors,
        *,
        version: int | None = None,
        label: str | None = None,
        signature: str = "",
        output_filter: list[str] | None = None,
        timeout: float | None = None,
    ) -> Tensors:
        if self.target.is_rest:
            signatures = await self.metadata(model, version=version, label=label, timeout=timeout)
            path, body, sig = self._rest_predict(signatures, model, inputs, version, label, signature)
            return rest_client.predict_outputs(await self._rest("POST", path, body, timeout), sig, output_filter)
        request, metadata = self._grpc_predict(model, inputs, version, label, signature, output_filter)
        return messages.predict_outputs(await self._grpc(grpc_paths.PREDICT, request, timeout, metadata))

    async def classify(
        self,
        model: str,
        examples: list[dict],
        *,
        context: dict | None = None,
        version: int | None = None,
        label: str | None = None,
        signature: str = "",
        timeout: float | None = None,
    ) -> list[list[tuple[str, float]]]:
        if self.target.is_rest:
            path, body = self._rest_examples("classify", model, examples, context, version, label, signature)
            return rest_client.classifications(await self._rest("POST", path, body, timeout))
        request = self._grpc_examples(grpc_paths.CLASSIFY, model, examples, context, version, label, signature)
        return messages.classifications(await self._grpc(grpc_paths.CLASSIFY, request, timeout))

    async def regress(
        self,
        model: str,
        examples: list[dict],
        *,
        context: dict | None = None,
        version: int | None = None,
        label: str | None = None,
        signature: str = "",
        timeout: float | None = None,
    ) -> list[float]:
        if self.target.is_rest:
            path, body = self._rest_examples("regress", model, examples, context, version, label, signature)
            return rest_client.regressions(await self._rest("POST", path, body, timeout))
        request = self._grpc_examples(grpc_paths.REGRESS, model, examples, context, version, label, signature)
        return messages.regressions(await self._grpc(grpc_paths.REGRESS, request, timeout))

    async def metadata(
        self, model: str, *, version: int | None = None, label: str | None = None, timeout: float | None = None
    ) -> dict[str, Signature]:
        key = (model, version, label)
        if key not in self._signatures:
            if self.target.is_rest:
                path = rest_client.model_path(model, version, label) + "/metadata"
                self._signatures[key] = rest_client.signatures(await self._rest("GET", path, None, timeout))
            else:
                request = messages.metadata_request(model, version, label)
                response = await self._grpc(grpc_paths.GET_MODEL_METADATA, request, timeout)
                self._signatures[key] = messages.signatures(response)
        return self._signatures[key]

    async def status(
        self, model: str, *, version: int | None = None, timeout: float | None = None
    ) -> list[VersionStatus]:
        if self.target.is_rest:
            document = await self._rest("GET", rest_client.model_path(model, version), None, timeout)
            return rest_client.statuses(document)
        request = messages.status_request(model, version)
        return messages.statuses(await self._grpc(grpc_paths.GET_MODEL_STATUS, request, timeout))

    async def wait_until_ready(self, model: str, *, timeout: float = 60.0) -> list[VersionStatus]:
        """Wait until a version of ``model`` is AVAILABLE; :class:`Unreachable` after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        attempt = 0
        while True:
            try:
                found = await self.status(model, timeout=max(deadline - loop.time(), 0.01))
                if (reason := self._not_ready_reason(found)) is None:
                    return found
            except (Unreachable, ModelNotFound) as exc:
                reason = str(exc)
            if loop.time() + self._backoff(attempt) >= deadline:
                raise self._not_ready_error(model, timeout, reason)
            await asyncio.sleep(self._backoff(attempt))
            attempt += 1

    async def close(self) -> None:
        if self.target.is_rest:
            await self._http.aclose()
        else:
            await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


class _Retry(Exception):
    """Internal: an UNAVAILABLE answer worth retrying; carries the error to raise if time runs out."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error
