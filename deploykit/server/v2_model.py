"""The Open Inference Protocol (KServe v2) over deploykit's inference core, transport-free.

gRPC (:mod:`deploykit.server.v2_grpc`) and REST (:mod:`deploykit.server.v2_rest`) decode requests
into :class:`~deploykit.protocol.v2_tensors.WireTensor` s and call :class:`V2Service`, which checks
them in Triton's order and with Triton's messages (core ``infer_request.cc``), then runs them
through the same :class:`~deploykit.server.core.InferenceService` as TF Serving's API: same
versions, batching, deadlines and runtimes. A v2 model is a deploykit model's ``serving_default``
signature; ``model_version`` is a version number, or one of the model's version labels (a
deploykit extension: Triton has no labels).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from deploykit.errors import InvalidInput, ModelNotFound, ModelNotReady
from deploykit.model_ref import ModelRef
from deploykit.protocol import v2_model_config, v2_tensors
from deploykit.protocol.protos import v2_model_config_pb2 as mc
from deploykit.protocol.protos import v2_service_pb2 as pb
from deploykit.protocol.v2_tensors import WireTensor
from deploykit.runtimes.base import DEFAULT_SIGNATURE
from deploykit.server.admin import AdminPolicy
from deploykit.server.batching.scheduler import batchable
from deploykit.server.core import InferenceService, Timing
from deploykit.server.version_loader import LoadedVersion
from deploykit.tensors import Signature, Tensors

#: ModelInfer answers also name the engine in this parameter (gRPC and REST), beside the
#: x-deploykit-engine trailer/header, for clients that see only the message.
ENGINE_PARAMETER = "x-deploykit-engine"


def request_prefix(request_id: str) -> str:
    """Triton's ``LogRequest()`` prefix of request errors."""
    return f"[request id: {request_id or '<id_unknown>'}] "


@dataclass
class _Duration:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.ns += int(seconds * 1e9)


@dataclass
class VersionStats:
    """Triton's per-version statistics, counted by this server (v2 requests only)."""

    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: _Duration = field(default_factory=_Duration)
    fail: _Duration = field(default_factory=_Duration)
    queue: _Duration = field(default_factory=_Duration)
    compute_input: _Duration = field(default_factory=_Duration)
    compute_infer: _Duration = field(default_factory=_Duration)
    compute_output: _Duration = field(default_factory=_Duration)
    #: Requests are counted from the event loop and from the native data plane's threads.
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def succeeded(self, rows: int, timing: Timing, seconds: float) -> None:
        """Count one request of ``rows`` rows that took ``seconds`` (``timing``: where they went)."""
        with self._lock:
            self.last_inference_ms = int(time.time() * 1000)
            self.inference_count += rows
            self.execution_count += 1
            self.success.add(seconds)
            self.queue.add(timing.queue_s)
            self.compute_input.add(timing.decode_s)
            self.compute_infer.add(timing.compute_s)

    def failed(self, seconds: float) -> None:
        """Count one request that failed after ``seconds``."""
        with self._lock:
            self.fail.add(seconds)

    def encoded(self, seconds: float) -> None:
        """Count the time spent encoding one answer (Triton's compute_output)."""
        with self._lock:
            self.compute_output.add(seconds)


class V2Service:
    """v2 semantics (resolution, checks, metadata, config, statistics, repository) over one core.

    RepositoryModelLoad/Unload are administrative: ``admin`` (the server's
    :class:`~deploykit.server.admin.AdminPolicy`) allows them or not; ``manager`` applies them.
    """

    def __init__(self, service: InferenceService, manager=None, *, admin: AdminPolicy | None = None) -> None:
        self.service = service
        self.manager = manager
        self.admin = admin or AdminPolicy()
        self.stats: dict[tuple[str, int], VersionStats] = {}
        #: Models unloaded through RepositoryModelUnload, kept so RepositoryModelLoad can bring them back.
        self._parked: dict = {}

    # ----------------------------------------------------------------------------- resolution

    def resolve(self, name: str, version: str = "") -> LoadedVersion:
        """The available version a request addresses, with Triton's messages (NOT_FOUND / UNAVAILABLE)."""
        versions = self.service.registry.versions(name)
        if not versions:
            raise ModelNotFound(f"Request for unknown model: '{name}' is not found")
        if not version:
            available = [v for v in versions.values() if v.available]
            if not available:
                raise ModelNotFound(f"Request for unknown model: '{name}' has no available versions")
            return max(available, key=lambda v: v.version)
        number = self._version_number(name, version)
        loaded = versions.get(number)
        if loaded is None:
            raise ModelNotFound(f"Request for unknown model: '{name}' version {number} is not found")
        if not loaded.available:
            raise ModelNotReady(f"Request for unknown model: '{name}' version {number} is not at ready state")
        return loaded

    def _version_number(self, name: str, version: str) -> int:
        if version.isascii() and version.isdigit():
            return int(version)
        label = self.service.registry.labels(name).get(version)
        if label is None:
            raise InvalidInput(
                f"failed to get model version from specified version string '{version}' (details: not an integer "
                f"and not a version label of model '{name}'), version should be an integral value > 0"
            )
        return label

    def ready(self, name: str, version: str = "") -> bool:
        """ModelReady: false for an unknown or unavailable model/version (never an error)."""
        try:
            self.resolve(name, version)
        except (ModelNotFound, ModelNotReady, InvalidInput):
            return False
        return True

    # ----------------------------------------------------------------------------- descriptions

    def signature(self, loaded: LoadedVersion) -> Signature:
        return loaded.signatures[DEFAULT_SIGNATURE]

    def metadata(self, loaded: LoadedVersion) -> pb.ModelMetadataResponse:
        """ModelMetadata: every available version, the platform, tensors with full shapes (-1 = any)."""
        response = pb.ModelMetadataResponse(name=loaded.name, platform=platform(loaded))
        versions = self.service.registry.versions(loaded.name)
        response.versions.extend(str(v) for v in sorted(versions) if versions[v].available)
        signature = self.signature(loaded)
        for specs, target in ((signature.inputs, response.inputs), (signature.outputs, response.outputs)):
            for spec in specs:
                target.add(
                    name=spec.name,
                    datatype=v2_tensors.DATATYPES[spec.dtype],
                    shape=[-1 if d is None else d for d in (spec.shape or (-1,))],
                )
        return response

    def config(self, loaded: LoadedVersion) -> mc.ModelConfig:
        """ModelConfig generated from the served signature and the server's batching."""
        signature = self.signature(loaded)
        config = v2_model_config.model_config(loaded.name, platform(loaded), signature, self._batching(signature))
        config.version_policy.specific.versions.extend(sorted(self.service.registry.versions(loaded.name)))
        return config

    def _batching(self, signature: Signature) -> v2_model_config.Batching | None:
        batchers = self.service.batchers
        if batchers is None or not batchable(signature) or not v2_model_config.batch_dimension(signature):
            return None
        options = batchers.options
        return v2_model_config.Batching(
            options.max_batch_size, tuple(options.allowed_batch_sizes), options.batch_timeout_micros
        )

    # ----------------------------------------------------------------------------- inference

    async def infer(
        self,
        name: str,
        version: str,
        inputs: list[WireTensor],
        requested: list[str],
        request_id: str = "",
        timing: Timing | None = None,
        deadline: float | None = None,
    ) -> tuple[LoadedVersion, Tensors]:
        """Check a request as Triton does, run it through the core; returns (version served, outputs).

        ``requested`` empty means every output, in the signature's order.
        """
        timing = timing or Timing()
        loaded = self.resolve(name, version)
        started = time.perf_counter()
        stats = self.stats_of(loaded)
        try:
            arrays = self.decode(loaded, inputs, requested, request_id, timing)
            ref = ModelRef(loaded.name, loaded.version, None, DEFAULT_SIGNATURE)
            _, _, outputs = await self.service.predict(ref, arrays, requested, timing, deadline=deadline)
        except Exception:
            stats.failed(time.perf_counter() - started)
            raise
        stats.succeeded(batch_rows(arrays), timing, time.perf_counter() - started + timing.encode_s)
        return loaded, outputs

    def decode(
        self, loaded: LoadedVersion, inputs: list[WireTensor], requested: list[str], request_id: str, timing: Timing
    ) -> Tensors:
        """:meth:`infer`'s checks (as Triton's) and decoding of ``inputs`` for ``loaded``; adds its time
        to ``timing.decode_s``."""
        started = time.perf_counter()
        arrays = self._check_and_decode(loaded, inputs, requested, request_id)
        timing.decode_s += time.perf_counter() - started
        return arrays

    def stats_of(self, loaded: LoadedVersion) -> VersionStats:
        """The statistics ``loaded``'s requests count in."""
        return self.stats.setdefault((loaded.name, loaded.version), VersionStats())

    def record_encode(self, loaded: LoadedVersion, seconds: float) -> None:
        """Front ends report the time they spent encoding an answer (Triton's compute_output)."""
        stats = self.stats.get((loaded.name, loaded.version))
        if stats is not None:
            stats.encoded(seconds)

    def _check_and_decode(
        self, loaded: LoadedVersion, inputs: list[WireTensor], requested: list[str], request_id: str
    ) -> Tensors:
        signature = self.signature(loaded)
        model, prefix = loaded.name, request_prefix(request_id)
        outputs = set(signature.output_names)
        for output in requested:
            if output not in outputs:
                raise InvalidInput(f"unexpected inference output '{output}' for model '{model}'")
        sent: dict[str, WireTensor] = {}
        for tensor in inputs:
            sent.setdefault(tensor.name, tensor)
        expected = signature.input_names
        if len(sent) != len(expected):
            missing = ",".join(f"'{n}'" for n in expected if n not in sent)
            got = ",".join(f"'{n}'" for n in sent)
            raise InvalidInput(
                f"{prefix}expected {len(expected)} inputs but got {len(sent)} inputs for model '{model}'. "
                f"Got input(s) [{got}], but missing required input(s) [{missing}]. "
                "Please provide all required input(s)."
            )
        specs = {spec.name: spec for spec in signature.inputs}
        for tensor in sent.values():
            if tensor.name not in specs:
                raise InvalidInput(f"unexpected inference input '{tensor.name}' for model '{model}'")
        arrays = {}
        for tensor in sent.values():
            spec = specs[tensor.name]
            wanted = v2_tensors.DATATYPES[spec.dtype]
            if tensor.datatype != wanted:
                raise InvalidInput(
                    f"{prefix}inference input '{tensor.name}' data-type is '{tensor.datatype}', but model "
                    f"'{model}' expects '{wanted}'"
                )
            if spec.shape is not None and not _fits(spec.shape, tensor.shape):
                expected_dims = ",".join("-1" if d is None else str(d) for d in spec.shape)
                raise InvalidInput(
                    f"{prefix}unexpected shape for input '{tensor.name}' for model '{model}'. Expected "
                    f"[{expected_dims}], got [{','.join(str(d) for d in tensor.shape)}]. "
                )
            try:
                arrays[tensor.name] = tensor.decode(f"input '{tensor.name}' for model '{model}'")
            except InvalidInput as exc:
                raise InvalidInput(prefix + str(exc)) from None
        self._check_batch(loaded, signature, arrays, prefix)
        return arrays

    def _check_batch(self, loaded: LoadedVersion, signature: Signature, arrays: Tensors, prefix: str) -> None:
        batching = self._batching(signature)
        if batching is None:
            return
        sizes = {name: array.shape[0] for name, array in arrays.items()}
        first = next(iter(sizes.values()))
        for name, size in sizes.items():
            if size != first:
                raise InvalidInput(f"{prefix}input '{name}' batch size does not match other inputs for '{loaded.name}'")
        if first > batching.max_batch_size:
            raise InvalidInput(
                f"{prefix}inference request batch-size must be <= {batching.max_batch_size} for '{loaded.name}'"
            )

    # ----------------------------------------------------------------------------- statistics, repository

    def statistics(self, name: str, version: str) -> pb.ModelStatisticsResponse:
        """ModelStatistics of one model (all its versions, or one) or, with ``name`` "", of every model."""
        if name:
            selected = [self.resolve(name, version)] if version else self._versions_of(name)
        else:
            selected = [v for v in self.service.registry if v.available]
        response = pb.ModelStatisticsResponse()
        for loaded in sorted(selected, key=lambda v: (v.name, v.version)):
            stats = self.stats.get((loaded.name, loaded.version), VersionStats())
            entry = response.model_stats.add(
                name=loaded.name,
                version=str(loaded.version),
                last_inference=stats.last_inference_ms,
                inference_count=stats.inference_count,
                execution_count=stats.execution_count,
            )
            for key in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output"):
                duration = getattr(stats, key)
                target = getattr(entry.inference_stats, key)
                target.count, target.ns = duration.count, duration.ns
        return response

    def _versions_of(self, name: str) -> list[LoadedVersion]:
        versions = self.service.registry.versions(name)
        if not versions:
            raise ModelNotFound(f"Request for unknown model: '{name}' is not found")
        return [v for v in versions.values() if v.available]

    def repository_index(self, ready_only: bool) -> pb.RepositoryIndexResponse:
        """Every known model version with Triton's state names (READY, LOADING, UNLOADING, UNAVAILABLE)."""
        response = pb.RepositoryIndexResponse()
        for name in sorted(self.service.registry.model_names()):
            for number, loaded in sorted(self.service.registry.versions(name).items()):
                state = _TRITON_STATES.get(loaded.state, "UNAVAILABLE")
                if ready_only and state != "READY":
                    continue
                response.models.add(name=name, version=str(number), state=state, reason=loaded.error or "")
        return response

    async def load(self, name: str) -> None:
        """RepositoryModelLoad (administrative): load a model this API unloaded, or reload a served one."""
        self.admin.require("RepositoryModelLoad")
        served = dict(self.manager.models) if self.manager is not None else {}
        model = self._parked.pop(name, None) or served.get(name)
        if model is None:
            known = ", ".join(sorted({*served, *self._parked})) or "none"
            raise ModelNotFound(f"failed to load '{name}', no version is available (known models: {known})")
        served[name] = model
        self.admin.check_models("RepositoryModelLoad", served.values())  # inside the model roots
        await self.manager.apply(list(served.values()))

    async def unload(self, name: str) -> None:
        """RepositoryModelUnload (administrative): stop serving a model until it is loaded again."""
        self.admin.require("RepositoryModelUnload")
        served = dict(self.manager.models) if self.manager is not None else {}
        model = served.pop(name, None)
        if model is None:
            raise ModelNotFound(f"failed to unload '{name}', no version is available")
        self.admin.check_models("RepositoryModelUnload", served.values())  # the last model needs the opt-in
        self._parked[name] = model
        await self.manager.apply(list(served.values()))


#: deploykit lifecycle state -> Triton's repository index state.
_TRITON_STATES = {"AVAILABLE": "READY", "LOADING": "LOADING", "UNLOADING": "UNLOADING", "END": "UNAVAILABLE"}


def platform(loaded: LoadedVersion) -> str:
    return v2_model_config.PLATFORMS.get(loaded.format, loaded.format)


def _fits(declared, shape: list[int]) -> bool:
    return len(declared) == len(shape) and all(d is None or d == n for d, n in zip(declared, shape, strict=True))


def batch_rows(arrays: Tensors) -> int:
    """How many rows a request's inputs hold (Triton's inference_count: 1 without a batch dimension)."""
    first = next(iter(arrays.values()), None)
    return int(first.shape[0]) if isinstance(first, np.ndarray) and first.ndim else 1
