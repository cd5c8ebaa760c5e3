"""REST front end: TF Serving's ``/v1/models/...`` API on aiohttp, sharing the gRPC server's loop.

Paths are matched with TF Serving's own regular expressions (reference/tfserving-api.md §1.4);
errors are ``{"error": message}`` with TF Serving's HTTP status mapping.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from typing import Any
from urllib.parse import unquote

import grpc
from aiohttp import web

from deploykit.errors import DeadlineExceeded, DeployKitError, InvalidInput, NotFound
from deploykit.model_ref import ModelRef
from deploykit.protocol import examples, rest_json, tensor_codec, tfserving_rest
from deploykit.protocol import status_codes as status
from deploykit.protocol.protos import serving_pb2 as pb
from deploykit.protocol.wire import ENGINE_KEY, SERVER_TIMING_KEY, WORKER_KEY
from deploykit.server import http_body, metrics, offload
from deploykit.server.admission import Admission, deadline_after
from deploykit.server.core import InferenceService, Timing
from deploykit.server.grpc_frontend import engine_name, version_status
from deploykit.server.signature_defs import signature_def_map

log = logging.getLogger(__name__)

_POST = re.compile(
    r"(?i)/v1/models/(?P<name>[^/:]+)(?:(?:/versions/(?P<version>\d+))|(?:/labels/(?P<label>[^/:]+)))?"
    r":(?P<verb>classify|regress|predict)"
)
_GET = re.compile(
    r"(?i)/v1/models(?:/(?P<name>[^/:]+))?(?:(?:/versions/(?P<version>\d+))|(?:/labels/(?P<label>[^/:]+)))?"
    r"(?:/(?P<metadata>metadata))?"
)
#: The paths TF Serving's REST handler is registered for (``kPathRegex``); others are 404.
_API = re.compile(r"(?i)/v1/")
JSON = "application/json"
#: TF Serving's ``--rest_api_timeout_in_ms`` default.
DEFAULT_TIMEOUT_S = 30.0
#: The REST paths under which TF Serving serves monitoring (a wrong path there is INVALID_ARGUMENT).
MONITORING_PREFIX = "/monitoring/"
#: Default seconds a client gets to send a request's body (``--rest_body_timeout_seconds``).
DEFAULT_BODY_TIMEOUT_S = 60.0


def _ref(match: re.Match, signature: str = "") -> ModelRef:
    version = match["version"]
    if version is not None:
        try:
            number = int(version)
            if number >= 2**63:
                raise ValueError
        except ValueError:
            raise InvalidInput(f"Failed to convert version: {version} to numeric.") from None
    return ModelRef(
        unquote(match["name"]),
        int(version) if version else None,
        unquote(match["label"]) if match["label"] else None,
        signature,
    )


def _json(document, http_status: int = 200) -> web.Response:
    """A JSON answer; ``document`` may be already encoded (bytes)."""
    body = document if isinstance(document, bytes) else rest_json.dumps(document)
    return web.Response(body=body, status=http_status, content_type=JSON)


def _encode(outputs: dict, row_format: bool) -> bytes:
    return rest_json.dumps(rest_json.encode_outputs(outputs, row_format))


class _BodyTimeout(Exception):
    """The client did not send its whole body in time (408, and the connection is closed)."""


#: aiohttp server options the front end needs: bodies are inflated by :mod:`http_body`, bounded.
RUNNER_OPTIONS: dict[str, Any] = {"auto_decompress": False}


class _Labels:
    """What a request's metrics are labelled with, filled in as routing learns it."""

    def __init__(self) -> None:
        self.model = self.version = self.api = ""


class RestFrontend:
    """aiohttp application bound to one :class:`InferenceService`.

    ``timeout_s`` is TF Serving's ``--rest_api_timeout_in_ms``: a predict not answered by then is
    504 (and not computed at all if it is still queued). ``metrics_path``: where Prometheus text is
    served (None: monitoring disabled). ``max_tensor_bytes`` bounds each decoded tensor,
    ``max_inflated_bytes`` a compressed body once inflated, ``body_timeout_s`` the time a client
    gets to send its body (408 after it). The app must run with aiohttp's ``auto_decompress=False``
    (:data:`RUNNER_OPTIONS`): bodies are inflated here, with a bound.
    """

    def __init__(
        self,
        service: InferenceService,
        max_body_bytes: int,
        admission: Admission | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        metrics_path: str | None = metrics.DEFAULT_PATH,
        cors: bool = False,
        v2=None,
        *,
        max_tensor_bytes: int = tensor_codec.DEFAULT_MAX_TENSOR_BYTES,
        max_inflated_bytes: int = http_body.DEFAULT_MAX_INFLATED_BYTES,
        body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    ) -> None:
        self.service = service
        #: The Open Inference Protocol's /v2 routes (deploykit.server.v2_rest.V2Rest), or None.
        self.v2 = v2
        self.max_tensor_bytes = max_tensor_bytes
        self.max_inflated_bytes = max_inflated_bytes
        self.body_timeout_s = body_timeout_s
        self.max_body_bytes = max_body_bytes
        self.admission = admission or Admission()
        self.timeout_s = timeout_s
        self.metrics_path = metrics_path
        self.cors = cors
        self.worker = str(os.getpid())
        self.app = web.Application(client_max_size=max_body_bytes)
        self.app.router.add_route("*", "/{tail:.*}", self.dispatch)
        self.app.on_response_prepare.append(self._close_when_draining)
        if cors:
            self.app.on_response_prepare.append(_add_cors_headers)

    async def _close_when_draining(self, request: web.Request, response: web.StreamResponse) -> None:
        """While the server drains, every answer (503 or the last ones computed) closes its connection:
        the client's next request opens a new one, which the closed listener then refuses cleanly,
        instead of being sent on a keep-alive connection the shutdown resets."""
        if self.admission.draining:
            response.force_close()
            response.headers["Connection"] = "close"  # headers are already prepared: say it too

    async def dispatch(self, request: web.Request) -> web.Response:
        if self.metrics_path is not None and request.path.startswith(MONITORING_PREFIX):
            return self.monitoring(request)
        if self.cors and request.method == "OPTIONS":
            return _preflight(request)
        if self.v2 is not None and self.v2.handles(request.path):
            return await self.v2.dispatch(request)
        started = time.perf_counter()
        labels = _Labels()
        code = grpc.StatusCode.OK
        try:
            with self.admission.request():
                return await self._route(request, labels)
        except DeployKitError as exc:
            code = status.grpc_code(exc)
            return _json({"error": status.message(exc)}, status.http_status(code))
        except web.HTTPRequestEntityTooLarge:
            code = grpc.StatusCode.RESOURCE_EXHAUSTED
            size = f"of {request.content_length} bytes " if request.content_length else ""
            limit = f"{self.max_body_bytes} bytes (--max_request_bytes)"
            return _json({"error": f"request body {size}is larger than the server's limit of {limit}"}, 429)
        except _BodyTimeout as exc:
            code = grpc.StatusCode.CANCELLED  # metrics: the client gave up sending, as a cancel
            response = _json({"error": str(exc)}, 408)
            response.force_close()
            return response
        except Exception as exc:  # a bug: answer 500, keep serving, keep the traceback in the log
            code = grpc.StatusCode.INTERNAL
            log.exception("REST %s %s failed", request.method, request.path)
            return _json({"error": status.message(exc)}, 500)
        finally:
            seconds = time.perf_counter() - started
            metrics.observe_request(labels.model, labels.version, labels.api, "REST", code.name, seconds)

    def monitoring(self, request: web.Request) -> web.Response:
        """Prometheus text at the configured path; TF Serving's INVALID_ARGUMENT for other paths below it."""
        if request.path != self.metrics_path:
            message = f"Unexpected path: {request.path}. Should be {self.metrics_path}"
            return _json({"error": message}, status.http_status(grpc.StatusCode.INVALID_ARGUMENT))
        return web.Response(body=metrics.exposition(), headers={"Content-Type": metrics.CONTENT_TYPE})

    async def _route(self, request: web.Request, labels: _Labels) -> web.Response:
        path = request.path
        if request.method == "POST" and (match := _POST.fullmatch(path)):
            labels.model, labels.version = unquote(match["name"]), match["version"] or ""
            _ref(match)  # TF Serving checks the URL (a version that is no int64) before the body
            verb = match["verb"].lower()
            labels.api = verb.capitalize()
            if verb == "predict":
                response, labels.version = await self.predict(request, match)
            else:
                response, labels.version = await self.classify_or_regress(request, match, verb)
            return response
        if request.method == "GET" and (match := _GET.fullmatch(path)):
            if not match["name"]:
                raise InvalidInput("Missing model name in request.")
            labels.model, labels.version = unquote(match["name"]), match["version"] or ""
            labels.api = "GetModelMetadata" if match["metadata"] else "GetModelStatus"
            return self.metadata(match) if match["metadata"] else self.model_status(match)
        if not _API.match(path):  # TF Serving dispatches only /v1/ to its handler; nothing else exists
            raise NotFound(f"Not found: {request.method} {path} (the REST API is under /v1/)")
        raise InvalidInput(f"Malformed request: {request.method} {path}")

    async def body(self, request: web.Request) -> bytes:
        """The request body, inflated per its Content-Encoding (bounded); 408 when the client takes
        longer than ``body_timeout_s`` to send it."""
        try:
            body = await asyncio.wait_for(request.read(), self.body_timeout_s)
        except TimeoutError:
            raise _BodyTimeout(
                f"the request body did not arrive within {self.body_timeout_s:g} s (--rest_body_timeout_seconds)"
            ) from None
        encoding = request.headers.get("Content-Encoding", "")
        if encoding.strip().lower() in ("", "identity"):
            return body
        # Always off the loop: a few compressed bytes can be a great deal of work.
        return await asyncio.to_thread(http_body.inflate, body, encoding, self.max_inflated_bytes)

    async def document(self, request: web.Request) -> tuple[dict, int]:
        """The request's JSON object (parsed off the event loop when large) and the body's size."""
        body = await self.body(request)
        return await offload.run(len(body), rest_json.parse_body, body), len(body)

    async def predict(self, request: web.Request, match: re.Match) -> tuple[web.Response, str]:
        """The predict answer and the version that served it."""
        started = time.perf_counter()  # decode: JSON parse and conversion to tensors
        document, size = await self.document(request)
        ref = _ref(match, rest_json.signature_name(document))
        loaded = self.service.resolve(ref)
        name = ref.signature or "serving_default"
        if name not in loaded.signatures:
            raise InvalidInput(f'Serving signature name: "{name}" not found in signature def')
        timing = Timing()
        try:
            with self.service.hold(loaded):  # decoding needs its signature: it must not retire meanwhile
                inputs, row_format = await offload.run(
                    size, rest_json.decode_inputs, document, loaded.signatures[name], self.max_tensor_bytes
                )
                del document  # the parsed JSON can be several times the body: not held during compute
                timing.decode_s = time.perf_counter() - started
                deadline = deadline_after(self.timeout_s)
                _, _, outputs = await asyncio.wait_for(
                    self.service.predict_on(loaded, name, inputs, None, timing, deadline=deadline), self.timeout_s
                )
        except TimeoutError:
            raise DeadlineExceeded(
                f"{ref.name} version {loaded.version} did not answer within {self.timeout_s * 1000:.0f} ms "
                "(--rest_api_timeout_in_ms)"
            ) from None
        started = time.perf_counter()
        size = sum(value.nbytes for value in outputs.values())
        response = _json(await offload.run(size, _encode, outputs, row_format))
        timing.encode_s = time.perf_counter() - started
        response.headers[ENGINE_KEY] = engine_name(loaded)
        response.headers[SERVER_TIMING_KEY] = timing.header()
        response.headers[WORKER_KEY] = self.worker
        return response, str(loaded.version)

    async def classify_or_regress(self, request: web.Request, match: re.Match, verb: str) -> tuple[web.Response, str]:
        """``:classify`` answers ``{"results": [[[label, score], ...], ...]}``, ``:regress``
        ``{"results": [value, ...]}`` (TF Serving's key, although its prose docs say "result").
        Returns the answer and the version that served it."""
        document, _ = await self.document(request)
        ref = _ref(match, rest_json.signature_name(document))
        serialized = examples.serialized(examples.parse_request(document))
        if verb == "classify":
            loaded, _, classifications = await self.service.classify(ref, serialized)
            results: list[Any] = [[[label, score] for label, score in classes] for classes in classifications]
        else:
            loaded, _, results = await self.service.regress(ref, serialized)
        response = _json({"results": results})
        response.headers[ENGINE_KEY] = engine_name(loaded)
        response.headers[WORKER_KEY] = self.worker
        return response, str(loaded.version)

    def metadata(self, match: re.Match) -> web.Response:
        loaded = self.service.metadata(_ref(match))
        return _json(tfserving_rest.metadata_document(loaded.name, loaded.version, signature_def_map(loaded)))

    def model_status(self, match: re.Match) -> web.Response:
        ref = _ref(match)
        response = pb.GetModelStatusResponse()
        response.model_version_status.extend(version_status(v) for v in self.service.status(ref.name, ref.version))
        return _json(tfserving_rest.proto_json(response))


#: TF Serving's answer headers with --rest_api_enable_cors_support (http_server.cc).
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET",
    "Access-Control-Allow-Headers": "Content-Type",
}


async def _add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(CORS_HEADERS)


def _preflight(request: web.Request) -> web.Response:
    """A CORS preflight: allowed from an http(s) origin; TF Serving refuses others (FAILED_PRECONDITION)."""
    origin = request.headers.get("Origin", "")
    if not origin.startswith(("http://", "https://")):
        message = f"OPTIONS request without a valid Origin header (got {origin!r}); expected http(s)://..."
        return _json({"error": message}, status.http_status(grpc.StatusCode.FAILED_PRECONDITION))
    return web.Response(status=200)
