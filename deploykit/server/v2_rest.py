"""REST front end of the Open Inference Protocol: ``/v2/...`` beside TF Serving's ``/v1/...``.

Paths (reference/open-inference-protocol.md §2.1): ``GET /v2``, ``/v2/health/{live,ready}``,
``/v2/models/M[/versions/V]`` (metadata), ``.../ready``, ``.../config``, ``.../stats``,
``/v2/models/stats``, ``POST .../infer``, ``POST /v2/repository/index`` and
``/v2/repository/models/M/{load,unload}``. Infer takes JSON and Triton's binary tensor data
extension: a JSON header of ``Inference-Header-Content-Length`` bytes followed by the blobs of the
tensors whose ``parameters.binary_data_size`` is set, in order; outputs come back as blobs when the
request asks (``binary_data`` per output, ``binary_data_output`` for all). Errors are
``{"error": message}`` with Triton's HTTP statuses; health and readiness answer 200 or 400 with an
empty body, as Triton.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from typing import Any
from urllib.parse import unquote

import grpc
from aiohttp import web

from deploykit.errors import DeadlineExceeded, DeployKitError, InvalidInput, ModelNotReady, NotFound
from deploykit.protocol import rest_json, status_codes, v2_model_config, v2_status, v2_tensors
from deploykit.protocol.wire import ENGINE_KEY, SERVER_TIMING_KEY, WORKER_KEY
from deploykit.server import metrics
from deploykit.server.admission import Admission, deadline_after
from deploykit.server.core import Timing
from deploykit.server.grpc_frontend import engine_name
from deploykit.server.v2_grpc import server_metadata
from deploykit.server.v2_model import ENGINE_PARAMETER, V2Service

#: Header of the binary tensor data extension: the size of the JSON part of the body.
HEADER_LENGTH = "Inference-Header-Content-Length"
PREFIX = "/v2"

_MODEL = re.compile(
    r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?:/(?P<verb>ready|config|stats|infer))?"
)
_REPOSITORY = re.compile(r"/v2/repository/models/(?P<name>[^/]+)/(?P<verb>load|unload)")


def _json(document, http_status: int = 200) -> web.Response:
    return web.Response(body=rest_json.dumps(document), status=http_status, content_type="application/json")


def _status_only(ok: bool) -> web.Response:
    """Triton's health/readiness answer: 200 or 400, no body."""
    return web.Response(status=200 if ok else 400)


class V2Rest:
    """The ``/v2`` routes; :meth:`dispatch` is called by the REST front end for paths under ``/v2``."""

    def __init__(self, v2: V2Service, admission: Admission | None = None, timeout_s: float = 30.0) -> None:
        self.v2 = v2
        self.admission = admission or Admission()
        self.timeout_s = timeout_s
        self.worker = str(os.getpid())

    @staticmethod
    def handles(path: str) -> bool:
        return path == PREFIX or path.startswith(PREFIX + "/")

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        labels = ["", "", ""]  # model, version, api (infer only: other calls are not requests to a model)
        try:
            with self.admission.request():
                return await self._route(request, labels)
        except DeployKitError as exc:
            code = v2_status.grpc_code(exc)
            return _json({"error": status_codes.message(exc)}, v2_status.http_status(code))
        except web.HTTPRequestEntityTooLarge as exc:
            code = grpc.StatusCode.INVALID_ARGUMENT
            return _json({"error": f"request body is larger than the server's limit: {exc.text}"}, 400)
        finally:
            if labels[2]:
                seconds = time.perf_counter() - started
                metrics.observe_request(labels[0], labels[1], labels[2], "REST", code.name, seconds)

    async def _route(self, request: web.Request, labels: list[str]) -> web.StreamResponse:
        path, method = request.path, request.method
        if method == "GET" and path == PREFIX:
            return _json(v2_model_config.to_json(server_metadata()))
        if method == "GET" and path == "/v2/health/live":
            return _status_only(True)
        if method == "GET" and path == "/v2/health/ready":
            return _status_only(self.v2.service.ready and not self.admission.draining)
        if method == "GET" and path == "/v2/models/stats":
            return _json(v2_model_config.to_json(self.v2.statistics("", "")))
        if method == "POST" and path == "/v2/repository/index":
            body = await request.read()
            document = _parse(body) if body else {}
            index = self.v2.repository_index(bool(document.get("ready", False)))
            return _json([_index_entry(model) for model in index.models])
        if method == "POST" and (match := _REPOSITORY.fullmatch(path)):
            name = unquote(match["name"])
            await (self.v2.load(name) if match["verb"] == "load" else self.v2.unload(name))
            return web.Response(status=200)
        if match := _MODEL.fullmatch(path):
            name, version, verb = unquote(match["name"]), unquote(match["version"] or ""), match["verb"]
            if method == "POST" and verb == "infer":
                labels[:] = [name, version, "ModelInfer"]
                response, labels[1] = await self.infer(request, name, version)
                return response
            if method == "GET" and verb == "ready":
                try:
                    self.v2.resolve(name, version)
                except ModelNotReady:
                    return _status_only(False)
                return _status_only(True)
            if method == "GET" and verb == "stats":
                return _json(v2_model_config.to_json(self.v2.statistics(name, version)))
            if method == "GET" and verb in (None, "config"):
                loaded = self.v2.resolve(name, version)
                message = self.v2.config(loaded) if verb == "config" else self.v2.metadata(loaded)
                return _json(v2_model_config.to_json(message))
        raise NotFound(f"no v2 API at {method} {path}")

    async def infer(self, request: web.Request, name: str, version: str) -> tuple[web.Response, str]:
        body = await request.read()
        timing = Timing()
        started = time.perf_counter()
        document, blobs = _split(body, request.headers.get(HEADER_LENGTH))
        inputs = _wire_inputs(document, blobs, name)
        requested, binary = _requested_outputs(document)
        timing.decode_s = time.perf_counter() - started
        try:
            loaded, outputs = await asyncio.wait_for(
                self.v2.infer(
                    name,
                    version,
                    inputs,
                    list(requested),
                    str(document.get("id", "")),
                    timing,
                    deadline=deadline_after(self.timeout_s),
                ),
                self.timeout_s,
            )
        except TimeoutError:
            raise DeadlineExceeded(
                f"Request timeout expired: '{name}' did not answer within {self.timeout_s * 1000:.0f} ms"
            ) from None
        started = time.perf_counter()
        engine = engine_name(loaded)
        answer: dict[str, Any] = {"model_name": loaded.name, "model_version": str(loaded.version)}
        if "id" in document:
            answer["id"] = document["id"]
        answer["parameters"] = {ENGINE_PARAMETER: engine}
        answer["outputs"], parts = [], []
        for output_name, array in outputs.items():
            entry: dict[str, Any] = {
                "name": output_name,
                "datatype": v2_tensors.datatype(array.dtype),
                "shape": list(array.shape),
            }
            if requested.get(output_name, binary):
                data = v2_tensors.to_raw(array)
                entry["parameters"] = {"binary_data_size": len(data)}
                parts.append(data)
            else:
                entry["data"] = v2_tensors.to_json(array)
            answer["outputs"].append(entry)
        header = rest_json.dumps(answer)
        if parts:
            response = web.Response(body=b"".join([header, *parts]), content_type="application/octet-stream")
            response.headers[HEADER_LENGTH] = str(len(header))
        else:
            response = web.Response(body=header, content_type="application/json")
        timing.encode_s = time.perf_counter() - started
        self.v2.record_encode(loaded, timing.encode_s)
        response.headers[ENGINE_KEY] = engine
        response.headers[SERVER_TIMING_KEY] = timing.header()
        response.headers[WORKER_KEY] = self.worker
        return response, str(loaded.version)


def _index_entry(model) -> dict:
    """One repository index entry as Triton writes it (``reason`` only when there is one)."""
    entry = {"name": model.name, "version": model.version, "state": model.state}
    if model.reason:
        entry["reason"] = model.reason
    return entry


def _parse(body: bytes) -> dict:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"failed to parse the request JSON buffer: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidInput("failed to parse the request JSON buffer: expected a JSON object")
    return document


def _split(body: bytes, header_length: str | None) -> tuple[dict, memoryview]:
    """The JSON header and the binary part of an infer body (all JSON without the header)."""
    if header_length is None:
        return _parse(body), memoryview(b"")
    try:
        length = int(header_length)
        if not 0 <= length <= len(body):
            raise ValueError
    except ValueError:
        raise InvalidInput(
            f"Unable to parse {HEADER_LENGTH}, value is out of range [ 0, {len(body)} ], got: {header_length}"
        ) from None
    if length == 0:
        raise InvalidInput(
            f"{HEADER_LENGTH}: 0 (a binary body without JSON header) is not supported by deploykit; "
            "send the JSON inference header first"
        )
    return _parse(body[:length]), memoryview(body)[length:]


def _wire_inputs(document: dict, blobs: memoryview, model: str) -> list[v2_tensors.WireTensor]:
    inputs = document.get("inputs")
    if not isinstance(inputs, list):
        raise InvalidInput("inference request JSON must have an 'inputs' array")
    tensors, offset = [], 0
    for entry in inputs:
        try:
            name, datatype, shape = entry["name"], entry["datatype"], entry["shape"]
            if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
                raise TypeError
        except (KeyError, TypeError):
            raise InvalidInput(
                f"each input needs 'name', 'datatype' and 'shape' (a list of integers); got {json.dumps(entry)[:200]}"
            ) from None
        size = (entry.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if "data" in entry:
                raise InvalidInput(
                    f"unexpected explicit tensor data for input tensor '{name}' for model '{model}', binary data "
                    "was already supplied."
                )
            if not isinstance(size, int) or size < 0 or offset + size > len(blobs):
                raise InvalidInput(f"unexpected size for input '{name}', expecting {size} bytes for model '{model}'")
            tensors.append(v2_tensors.raw_tensor(name, datatype, shape, blobs[offset : offset + size]))
            offset += size
        elif "data" in entry:
            tensors.append(v2_tensors.json_tensor(name, datatype, shape, entry["data"]))
        else:
            raise InvalidInput(f"unable to find data for input tensor '{name}' for model '{model}' in request.")
    if offset != len(blobs):
        raise InvalidInput(f"unexpected additional input data for model '{model}'")
    return tensors


def _requested_outputs(document: dict) -> tuple[dict[str, bool], bool]:
    """(requested output -> binary?, default for the others) from ``outputs`` and ``binary_data_output``."""
    default = bool((document.get("parameters") or {}).get("binary_data_output", False))
    requested = {}
    for entry in document.get("outputs") or []:
        if not isinstance(entry, dict) or "name" not in entry:
            raise InvalidInput(f"each requested output needs a 'name'; got {json.dumps(entry)[:200]}")
        requested[entry["name"]] = bool((entry.get("parameters") or {}).get("binary_data", default))
    return requested, default
