"""gRPC front end of the Open Inference Protocol: ``inference.GRPCInferenceService`` at its official paths.

Registered beside TF Serving's services on the same server (:func:`V2Grpc.handlers`); requests are
parsed here from raw bytes into deploykit's ``deploykit.v2`` messages, so deploykit coexists in a
process with tritonclient/kserve/mlserver's ``inference.*`` registrations. Errors carry Triton's
codes and texts (:mod:`deploykit.protocol.v2_status`); answers carry ``server-timing`` and
``x-deploykit-engine`` trailers as TF Serving API answers do.

ModelInfer answers in the form the request used: raw ``raw_output_contents`` (Triton's only form,
and what tritonclient sends) for raw requests, typed ``contents`` for typed ones (except when an
output is FP16/BF16, which has no typed field: then everything is raw).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf.message import DecodeError

from deploykit import __version__
from deploykit.errors import DeployKitError, InvalidInput
from deploykit.protocol import status_codes, v2_paths, v2_status, v2_tensors
from deploykit.protocol.grpc_paths import Method
from deploykit.protocol.protos import v2_service_pb2 as pb
from deploykit.protocol.wire import ENGINE_KEY, SERVER_TIMING_KEY, WORKER_KEY
from deploykit.server import metrics
from deploykit.server.admission import Admission, deadline_after
from deploykit.server.core import Timing
from deploykit.server.grpc_frontend import engine_name
from deploykit.server.v2_model import ENGINE_PARAMETER, V2Service

log = logging.getLogger(__name__)

#: What ServerMetadata answers as the server's name.
SERVER_NAME = "deploykit"


def server_metadata() -> pb.ServerMetadataResponse:
    return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=v2_paths.EXTENSIONS)


def wire_inputs(request: pb.ModelInferRequest) -> list[v2_tensors.WireTensor]:
    """The request's input tensors, raw or typed (Triton's rule: raw forbids ``contents`` on every input)."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(
            f"expected {len(request.inputs)} raw_input_contents (one per input, in order), got {len(raw)} "
            f"for model '{request.model_name}'"
        )
    tensors = []
    for index, tensor in enumerate(request.inputs):
        if raw:
            if tensor.HasField("contents"):
                raise InvalidInput(
                    f"contents field must not be specified when using raw_input_contents for '{tensor.name}' "
                    f"for model '{request.model_name}'"
                )
            tensors.append(v2_tensors.raw_tensor(tensor.name, tensor.datatype, tensor.shape, raw[index]))
        else:
            tensors.append(v2_tensors.contents_tensor(tensor.name, tensor.datatype, tensor.shape, tensor.contents))
    return tensors


def fill_outputs(response: pb.ModelInferResponse, outputs: dict, raw: bool) -> None:
    """Outputs into the response, raw (one ``raw_output_contents`` per output) or typed."""
    raw = raw or any(v2_tensors.datatype(a.dtype) not in v2_tensors.CONTENTS_FIELDS for a in outputs.values())
    for name, array in outputs.items():
        tensor = response.outputs.add(name=name, datatype=v2_tensors.datatype(array.dtype), shape=array.shape)
        if raw:
            response.raw_output_contents.append(v2_tensors.to_raw(array))
        else:
            v2_tensors.fill_contents(tensor.contents, array)


class V2Grpc:
    """Handlers of ``inference.GRPCInferenceService`` bound to one :class:`V2Service`."""

    def __init__(self, v2: V2Service, admission: Admission | None = None) -> None:
        self.v2 = v2
        self.admission = admission or Admission()
        self.worker = str(os.getpid())

    async def server_live(self, request, context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, request, context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.v2.service.ready and not self.admission.draining)

    async def model_ready(self, request: pb.ModelReadyRequest, context) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self.v2.ready(request.name, request.version))

    async def server_metadata(self, request, context) -> pb.ServerMetadataResponse:
        return server_metadata()

    async def model_metadata(self, request: pb.ModelMetadataRequest, context) -> pb.ModelMetadataResponse:
        return self.v2.metadata(self.v2.resolve(request.name, request.version))

    async def model_config(self, request: pb.ModelConfigRequest, context) -> pb.ModelConfigResponse:
        return pb.ModelConfigResponse(config=self.v2.config(self.v2.resolve(request.name, request.version)))

    async def model_statistics(self, request: pb.ModelStatisticsRequest, context) -> pb.ModelStatisticsResponse:
        return self.v2.statistics(request.name, request.version)

    async def repository_index(self, request: pb.RepositoryIndexRequest, context) -> pb.RepositoryIndexResponse:
        return self.v2.repository_index(request.ready)

    async def repository_model_load(self, request: pb.RepositoryModelLoadRequest, context):
        await self.v2.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    async def repository_model_unload(self, request: pb.RepositoryModelUnloadRequest, context):
        await self.v2.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    async def model_infer(self, request: pb.ModelInferRequest, context) -> pb.ModelInferResponse:
        timing = Timing()
        started = time.perf_counter()
        inputs = wire_inputs(request)
        timing.decode_s = time.perf_counter() - started
        loaded, outputs = await self.v2.infer(
            request.model_name,
            request.model_version,
            inputs,
            [output.name for output in request.outputs],
            request.id,
            timing,
            deadline=deadline_after(context.time_remaining()),
        )
        response, trailers = self.answer(request, loaded, outputs, timing)
        context.set_trailing_metadata(trailers)
        return response

    def answer(
        self, request: pb.ModelInferRequest, loaded, outputs: dict, timing: Timing
    ) -> tuple[pb.ModelInferResponse, tuple]:
        """ModelInfer's answer to ``request`` and its trailing metadata (engine, worker, Server-Timing),
        the encoding time counted in ``timing`` and the version's statistics."""
        started = time.perf_counter()
        response = pb.ModelInferResponse(model_name=loaded.name, model_version=str(loaded.version), id=request.id)
        fill_outputs(response, outputs, raw=bool(request.raw_input_contents) or not request.inputs)
        engine = engine_name(loaded)
        response.parameters[ENGINE_PARAMETER].string_param = engine
        timing.encode_s = time.perf_counter() - started
        self.v2.record_encode(loaded, timing.encode_s)
        return response, ((ENGINE_KEY, engine), (WORKER_KEY, self.worker), (SERVER_TIMING_KEY, timing.header()))

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        """One generic handler serving every method of :data:`deploykit.protocol.v2_paths.METHODS`."""
        implementations = {
            v2_paths.SERVER_LIVE: self.server_live,
            v2_paths.SERVER_READY: self.server_ready,
            v2_paths.MODEL_READY: self.model_ready,
            v2_paths.SERVER_METADATA: self.server_metadata,
            v2_paths.MODEL_METADATA: self.model_metadata,
            v2_paths.MODEL_INFER: self.model_infer,
            v2_paths.MODEL_CONFIG: self.model_config,
            v2_paths.MODEL_STATISTICS: self.model_statistics,
            v2_paths.REPOSITORY_INDEX: self.repository_index,
            v2_paths.REPOSITORY_MODEL_LOAD: self.repository_model_load,
            v2_paths.REPOSITORY_MODEL_UNLOAD: self.repository_model_unload,
        }
        methods = {
            method.name: grpc.unary_unary_rpc_method_handler(
                _guarded(method, implementation, self.admission),
                request_deserializer=None,  # raw bytes: parsed in _guarded
                response_serializer=method.response.SerializeToString,
            )
            for method, implementation in implementations.items()
        }
        return [grpc.method_handlers_generic_handler(v2_paths.SERVICE, methods)]


def _guarded(method: Method, implementation: Callable[..., Awaitable], admission: Admission) -> Callable:
    """Admit, parse, run, record metrics; every failure becomes a status with Triton's code."""

    async def handler(raw: bytes, context: grpc.aio.ServicerContext):
        started = time.perf_counter()
        request = None
        code = grpc.StatusCode.OK
        try:
            if admission.holding:  # the gRPC port is about to close: answered once GOAWAY is out
                await admission.wait_while_held()
            with admission.request():
                try:
                    request = method.request.FromString(raw)
                except DecodeError as exc:
                    raise InvalidInput(f"Could not parse {method.request.__name__}: {exc}") from exc
                return await implementation(request, context)
        except DeployKitError as exc:
            code = v2_status.grpc_code(exc)
            await context.abort(code, status_codes.message(exc))
        except grpc.aio.AbortError:
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:  # a bug: answer INTERNAL, keep serving, keep the traceback in the log
            code = grpc.StatusCode.INTERNAL
            log.exception("%s failed", method.path)
            await context.abort(code, status_codes.message(exc))
        finally:
            if method is v2_paths.MODEL_INFER:
                model = request.model_name if request is not None else ""
                version = request.model_version if request is not None else ""
                seconds = time.perf_counter() - started
                metrics.observe_request(model, version, method.name, "GRPC", code.name, seconds)

    return handler
