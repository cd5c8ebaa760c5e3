"""gRPC front end: TF Serving's PredictionService and ModelService at their official paths.

Handlers are registered as generic handlers on the official method paths with deploykit's own
messages (:mod:`deploykit.protocol.grpc_paths`). Requests arrive as raw bytes and are parsed here,
so a malformed message is INVALID_ARGUMENT (as in TF Serving), not the framework's INTERNAL.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf.message import DecodeError

from deploykit.errors import DeployKitError, FailedPrecondition, InvalidInput
from deploykit.model_ref import ModelRef
from deploykit.protocol import examples, grpc_paths, tensor_codec
from deploykit.protocol import status_codes as status
from deploykit.protocol import tfserving_grpc as codec
from deploykit.protocol.grpc_paths import Method
from deploykit.protocol.protos import error_codes_pb2
from deploykit.protocol.protos import serving_pb2 as pb
from deploykit.protocol.wire import ENGINE_KEY, SERVER_TIMING_KEY, TENSOR_CONTENT_KEY, WORKER_KEY
from deploykit.server import metrics, model_config, offload
from deploykit.server.admin import AdminPolicy
from deploykit.server.admission import Admission, deadline_after
from deploykit.server.core import InferenceService, Timing
from deploykit.server.manager import ModelManager
from deploykit.server.signature_defs import signature_def_map
from deploykit.server.version_loader import LoadedVersion

log = logging.getLogger(__name__)

_RELOAD = "HandleReloadConfigRequest"
#: A cancellation this close to the request's deadline is counted as DEADLINE_EXCEEDED.
_DEADLINE_SLACK_S = 0.25


@functools.cache
def _engine_name(format_name: str) -> str:
    from deploykit import __version__

    return f"deploykit-serve/{__version__} ({format_name})"


def engine_name(loaded: LoadedVersion) -> str:
    return _engine_name(loaded.format)


def encode_predict_response(
    loaded: LoadedVersion, signature_name: str, outputs: dict, tensor_content: bool
) -> pb.PredictResponse:
    """The PredictResponse of ``outputs`` from the version served: typed fields or ``tensor_content``."""
    served = ModelRef(loaded.name, signature=signature_name)
    return codec.predict_response(served, loaded.version, outputs, tensor_content=tensor_content)


class GrpcFrontend:
    """Request handlers bound to one :class:`InferenceService`."""

    def __init__(
        self,
        service: InferenceService,
        manager: ModelManager | None = None,
        admission: Admission | None = None,
        *,
        tensor_content: bool = False,
        max_tensor_bytes: int = tensor_codec.DEFAULT_MAX_TENSOR_BYTES,
        admin: AdminPolicy | None = None,
    ) -> None:
        self.service = service
        self.manager = manager
        self.admission = admission or Admission()
        #: TF Serving's --enable_serialization_as_tensor_content: outputs as raw bytes, not typed fields.
        self.tensor_content = tensor_content
        #: --max_decoded_tensor_bytes: the largest tensor a request may decode to (checked first).
        self.max_tensor_bytes = max_tensor_bytes
        #: Who may reload the config (default: nobody).
        self.admin = admin or AdminPolicy()
        self.worker = str(os.getpid())

    async def predict(self, request: pb.PredictRequest, context: grpc.aio.ServicerContext) -> pb.PredictResponse:
        if not request.HasField("model_spec"):
            raise InvalidInput("Missing ModelSpec")
        timing = Timing()
        started = time.perf_counter()
        # Every declared shape is checked before anything is allocated; big decodes leave the loop.
        size = codec.predict_input_bytes(request, self.max_tensor_bytes)
        inputs = await offload.run(size, codec.predict_inputs, request, self.max_tensor_bytes)
        timing.decode_s = time.perf_counter() - started
        loaded, signature_name, outputs = await self.predict_tensors(request, inputs, timing, context)
        started = time.perf_counter()
        response = encode_predict_response(loaded, signature_name, outputs, self.wants_tensor_content(context))
        timing.encode_s = time.perf_counter() - started  # protobuf serialisation itself happens after return
        self._identify(context, loaded, (SERVER_TIMING_KEY, timing.header()))
        return response

    async def predict_tensors(
        self, request: pb.PredictRequest, inputs: dict, timing: Timing, context
    ) -> tuple[LoadedVersion, str, dict]:
        """Predict on decoded ``inputs`` (``request`` gives the model spec and output filter; its
        tensors are not read). The native data plane decodes and encodes itself and calls this."""
        if not request.HasField("model_spec"):
            raise InvalidInput("Missing ModelSpec")
        return await self.service.predict(
            codec.model_ref(request.model_spec),
            inputs,
            list(request.output_filter),
            timing,
            deadline=deadline_after(context.time_remaining()),
        )

    def wants_tensor_content(self, context) -> bool:
        """Outputs as ``tensor_content``: the server's option, or the caller's request metadata."""
        return self.tensor_content or dict(context.invocation_metadata() or ()).get(TENSOR_CONTENT_KEY) == "1"

    def _identify(self, context: grpc.aio.ServicerContext, loaded: LoadedVersion, *extra: tuple[str, str]) -> None:
        """Trailing metadata naming the engine and the worker process that answered (plus ``extra``)."""
        context.set_trailing_metadata(((ENGINE_KEY, engine_name(loaded)), (WORKER_KEY, self.worker), *extra))

    async def get_model_metadata(self, request: pb.GetModelMetadataRequest, context) -> pb.GetModelMetadataResponse:
        if not request.HasField("model_spec"):
            raise InvalidInput("Missing ModelSpec")
        if not request.metadata_field:
            raise InvalidInput("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != "signature_def":
                raise InvalidInput(f"Metadata field {field} is not supported")
        loaded = self.service.metadata(codec.model_ref(request.model_spec))
        return codec.metadata_response(loaded.name, loaded.version, signature_def_map(loaded))

    async def classify(self, request: pb.ClassificationRequest, context) -> pb.ClassificationResponse:
        if not request.HasField("model_spec"):
            raise InvalidInput("Missing ModelSpec")
        loaded, signature_name, results = await self.service.classify(
            codec.model_ref(request.model_spec), examples.serialized(request.input)
        )
        response = pb.ClassificationResponse()
        codec.served_spec(response.model_spec, loaded.name, loaded.version, signature_name)
        codec.fill_classifications(response.result, results)
        self._identify(context, loaded)
        return response

    async def regress(self, request: pb.RegressionRequest, context) -> pb.RegressionResponse:
        if not request.HasField("model_spec"):
            raise InvalidInput("Missing ModelSpec")
        loaded, signature_name, values = await self.service.regress(
            codec.model_ref(request.model_spec), examples.serialized(request.input)
        )
        response = pb.RegressionResponse()
        codec.served_spec(response.model_spec, loaded.name, loaded.version, signature_name)
        codec.fill_regressions(response.result, values)
        self._identify(context, loaded)
        return response

    async def multi_inference(self, request: pb.MultiInferenceRequest, context) -> pb.MultiInferenceResponse:
        """Classify and regress tasks on one model and one input (TF Serving's MultiInference)."""
        loaded, results = await self.service.multi_inference(
            [(codec.model_ref(task.model_spec), task.method_name) for task in request.tasks],
            examples.serialized(request.input),
        )
        response = pb.MultiInferenceResponse()
        for result in results:
            entry = response.results.add()
            codec.served_spec(entry.model_spec, loaded.name, loaded.version, result.signature_name)
            if result.classifications is not None:
                codec.fill_classifications(entry.classification_result, result.classifications)
            else:
                assert result.regressions is not None  # a task result holds one or the other
                codec.fill_regressions(entry.regression_result, result.regressions)
        self._identify(context, loaded)
        return response

    async def get_model_status(self, request: pb.GetModelStatusRequest, context) -> pb.GetModelStatusResponse:
        if not request.HasField("model_spec"):
            raise InvalidInput("Missing ModelSpec")
        ref = codec.model_ref(request.model_spec)
        response = pb.GetModelStatusResponse()
        for loaded in self.service.status(ref.name, ref.version):
            response.model_version_status.append(version_status(loaded))
        return response

    async def handle_reload_config(self, request: pb.ReloadConfigRequest, context) -> pb.ReloadConfigResponse:
        """Serve exactly the models of ``request.config`` (models missing from it are unloaded).

        As TF Serving, failure is both the gRPC status and ``response.status``; the gRPC status is
        what a client sees, since an aborted call carries no response message.
        """
        self.admin.require(_RELOAD)  # administrative: refused unless enabled (deploykit.server.admin)
        if self.manager is None:
            raise FailedPrecondition("this server serves a fixed set of models; it cannot reload a config")
        models = model_config.from_proto(request.config, "ReloadConfigRequest")
        self.admin.check_models(_RELOAD, models)
        await self.manager.apply(models)
        response = pb.ReloadConfigResponse()
        response.status.error_code = error_codes_pb2.OK
        return response

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        """Generic handlers for every method in :data:`deploykit.protocol.grpc_paths.METHODS`."""
        implementations = {
            grpc_paths.PREDICT: self.predict,
            grpc_paths.CLASSIFY: self.classify,
            grpc_paths.REGRESS: self.regress,
            grpc_paths.MULTI_INFERENCE: self.multi_inference,
            grpc_paths.GET_MODEL_METADATA: self.get_model_metadata,
            grpc_paths.GET_MODEL_STATUS: self.get_model_status,
            grpc_paths.HANDLE_RELOAD_CONFIG: self.handle_reload_config,
        }
        by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
        for method, implementation in implementations.items():
            by_service.setdefault(method.service, {})[method.name] = grpc.unary_unary_rpc_method_handler(
                _guarded(method, implementation, self.admission),
                request_deserializer=None,  # raw bytes: parsed in _guarded
                response_serializer=method.response.SerializeToString,
            )
        return [grpc.method_handlers_generic_handler(s, m) for s, m in by_service.items()]


def version_status(loaded: LoadedVersion) -> pb.ModelVersionStatus:
    """A version's GetModelStatus entry: its state, and the load error of a version that failed (or,
    with code OK, why a serving version's files are out of reach, e.g. a deleted base path)."""
    entry = codec.version_status(loaded.version, loaded.state, loaded.error)
    if loaded.notice and not loaded.error:
        entry.status.error_message = loaded.notice
    return entry


def _guarded(method: Method, implementation: Callable[..., Awaitable], admission: Admission) -> Callable:
    """Admit, parse, run the handler, record the request's metrics; turn every failure into a status."""

    async def handler(raw: bytes, context: grpc.aio.ServicerContext):
        started = time.perf_counter()
        request = response = None
        code = grpc.StatusCode.OK
        details = ""
        try:
            if admission.holding:  # the gRPC port is about to close: answered once GOAWAY is out
                await admission.wait_while_held()
            with admission.request():
                # The native data plane hands in requests it decoded itself (no bytes to parse).
                size = len(raw) if isinstance(raw, bytes) else 0
                request = await offload.run(size, _parse, method, raw)
                response = await implementation(request, context)
                return response
        except DeployKitError as exc:
            # Aborted below, outside this block: an AbortError raised in here would carry ``exc``
            # as its context, whose traceback holds the frames (and the request) alive in a cycle
            # until the garbage collector runs.
            code, details = status.grpc_code(exc), status.message(exc)
        except grpc.aio.AbortError:
            raise
        except asyncio.CancelledError:
            # grpc cancels the handler when the deadline passes or the client goes away; a computation
            # still queued in the thread pool is dropped with it. The client's clock runs ahead of
            # ours by the request's transit time, so its deadline cancel can arrive a little early.
            remaining = context.time_remaining()
            expired = remaining is not None and remaining <= _DEADLINE_SLACK_S
            code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:  # a bug: answer INTERNAL, keep serving, keep the traceback in the log
            code, details = grpc.StatusCode.INTERNAL, status.message(exc)
            log.exception("%s failed", method.path)
        finally:
            model, version = _labels(request, response)
            metrics.observe_request(model, version, method.name, "GRPC", code.name, time.perf_counter() - started)
        request = None  # not kept alive by the abort below
        await context.abort(code, details)

    return handler


def _parse(method: Method, raw: bytes):
    """``raw`` as ``method``'s request message; a malformed message is INVALID_ARGUMENT."""
    try:
        return method.request.FromString(raw)
    except DecodeError as exc:
        raise InvalidInput(f"Could not parse {method.request.__name__}: {exc}") from None


def _labels(request, response) -> tuple[str, str]:
    """Model name and version for the metrics: the version served, else the one asked for, else ""."""
    requested = _model_spec(request)
    if requested is None:  # unparsable request, or a MultiInference without tasks
        return "", ""
    served = _model_spec(response)
    spec = served if served is not None and served.name else requested
    version = str(spec.version.value) if spec.WhichOneof("version_choice") == "version" else ""
    return requested.name, version


def _model_spec(message) -> pb.ModelSpec | None:
    """A message's ModelSpec; MultiInference messages have one per task (or result): the first counts."""
    if message is None:
        return None
    if hasattr(message, "model_spec"):
        return message.model_spec
    entries = getattr(message, "tasks", None) or getattr(message, "results", None)
    return entries[0].model_spec if entries else None
