"""The transport-free inference core: which model versions serve, input checks, predict.

gRPC and REST front ends decode their wire format into a :class:`~deploykit.model_ref.ModelRef`
and numpy tensors, call :class:`InferenceService`, and encode what it returns; errors are
:mod:`deploykit.errors` classes that :mod:`deploykit.protocol.status_codes` maps to codes.
Inference runs in a thread pool, off the event loop (ONNX Runtime, torch and TensorFlow release
the GIL while computing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from deploykit.errors import DeployKitError, InvalidInput, ModelNotFound, RuntimeFailure, SignatureNotFound
from deploykit.model_ref import ModelRef
from deploykit.protocol.wire import server_timing
from deploykit.server import example_tasks, multi_inference, signature_defs
from deploykit.server.batcher import Batchers
from deploykit.server.batching import BatchingOptions
from deploykit.server.lifecycle import check_deadline
from deploykit.server.models import LoadedVersion
from deploykit.tensors import Signature, Tensors, TensorSpec, dtype_name

log = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"


@dataclass
class Timing:
    """Where a request's time went inside the server (the front end fills decode and encode)."""

    decode_s: float = 0.0
    queue_s: float = 0.0
    compute_s: float = 0.0
    encode_s: float = 0.0

    def header(self) -> str:
        """As a W3C ``Server-Timing`` value (milliseconds), sent as a REST header and a gRPC trailer."""
        parts = {"decode": self.decode_s, "queue": self.queue_s, "compute": self.compute_s, "encode": self.encode_s}
        return server_timing(parts)


def _braces(names) -> str:
    return "{" + ", ".join(sorted(names)) + "}"


def _shape_text(shape) -> str:
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape) + "]"


def check_inputs(signature: Signature, inputs: Tensors, *, check_shapes: bool = True) -> None:
    """Names, dtypes and shapes of ``inputs`` against ``signature``; :class:`InvalidInput` otherwise.

    ``check_shapes=False`` is for models whose declared shapes are advisory (TF1 graphs, which TF
    Serving feeds without a shape check): names and dtypes are still checked.
    """
    expected = {t.name for t in signature.inputs}
    sent = set(inputs)
    if sent != expected:
        # TF Serving's wording (predict_util.cc), so existing clients' error handling keeps working.
        raise InvalidInput(
            f"input size does not match signature: {len(sent)}!={len(expected)} len({_braces(sent)}) != "
            f"len({_braces(expected)}). Sent extra: {_braces(sent - expected)}. "
            f"Missing but required: {_braces(expected - sent)}."
        )
    for index, spec in enumerate(signature.inputs):
        _check_dtype(index, spec, inputs[spec.name])
        if check_shapes:
            _check_shape(spec, inputs[spec.name])


#: TensorFlow's DataTypeString for the deploykit dtype names that differ from it.
_TF_DTYPE_NAMES = {"float32": "float", "float64": "double", "float16": "half"}


def _check_dtype(index: int, spec: TensorSpec, value: np.ndarray) -> None:
    got = dtype_name(value.dtype)
    if got != spec.dtype:
        # TensorFlow's own text first (FunctionCallFrame::SetArgs, what TF Serving answers), then the tensor by name.
        raise InvalidInput(
            f"Expects arg[{index}] to be {_TF_DTYPE_NAMES.get(spec.dtype, spec.dtype)} but "
            f"{_TF_DTYPE_NAMES.get(got, got)} is provided: input tensor '{spec.name}' has dtype {got}; "
            f"the signature expects {spec.dtype}"
        )


def _check_shape(spec: TensorSpec, value: np.ndarray) -> None:
    if spec.shape is None:  # unknown rank: any shape
        return
    if not spec.shape and value.ndim == 0:
        return
    fits = value.ndim == len(spec.shape) and all(
        d is None or d == n for d, n in zip(spec.shape, value.shape, strict=True)
    )
    if not fits:
        raise InvalidInput(
            f"input tensor '{spec.name}' has shape {_shape_text(value.shape)}; "
            f"the signature expects {_shape_text(spec.shape)} (-1 = any size)"
        )


def select_outputs(signature: Signature, output_filter: list[str]) -> list[str]:
    """Output names to return: all, or the filter after TF Serving's checks."""
    if not output_filter:
        return signature.output_names
    seen: set[str] = set()
    known = set(signature.output_names)
    for alias in output_filter:
        if alias in seen:
            raise InvalidInput(f"duplicate output tensor alias: {alias}")
        if alias not in known:
            raise InvalidInput(
                f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                f"{_braces(known)}."
            )
        seen.add(alias)
    return list(output_filter)


def _release(loaded: LoadedVersion) -> None:
    loaded.inflight -= 1


def _call_soon(loop: asyncio.AbstractEventLoop, callback, *args) -> None:
    """Schedule ``callback`` on ``loop`` from another thread; nothing to do once the loop is gone."""
    with contextlib.suppress(RuntimeError):  # the loop closed (server stopped) while the thread computed
        loop.call_soon_threadsafe(callback, *args)


def _describer(loaded: LoadedVersion, signature_name: str):
    """The SignatureDef text of a signature, for the messages of TF Serving's signature checks (made
    only when one fails)."""
    return lambda: signature_defs.debug_string(signature_defs.definition(loaded, signature_name))


def _advisory_shapes(loaded: LoadedVersion) -> bool:
    """Whether the version's declared shapes are advisory (TF1 graphs, fed unchecked by TF Serving)."""
    return getattr(loaded.runtime, "advisory_shapes", False)


class InferenceService:
    """Serves the loaded versions of a set of models.

    With ``batching`` options, requests for batchable signatures go through the dynamic batcher
    (:mod:`deploykit.server.batcher`) instead of the inference threads.
    """

    def __init__(
        self, versions: list[LoadedVersion] = (), *, threads: int = 4, batching: BatchingOptions | None = None
    ) -> None:
        #: model name -> version -> state. Changed only on the event loop (by the manager), where
        #: requests are resolved, so a request never sees a half-applied change.
        self.versions: dict[str, dict[int, LoadedVersion]] = {}
        #: model name -> version label -> version number.
        self.labels: dict[str, dict[str, int]] = {}
        for loaded in versions:
            self.versions.setdefault(loaded.name, {})[loaded.version] = loaded
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="deploykit-infer")
        self.batchers = Batchers(batching) if batching is not None else None

    # ----------------------------------------------------------------------------- resolution

    def resolve(self, ref: ModelRef) -> LoadedVersion:
        """The available version a request addresses (latest when none is named)."""
        versions = self.versions.get(ref.name, {})
        if ref.label is not None:
            version = self.labels.get(ref.name, {}).get(ref.label)
            if version is None:
                raise InvalidInput(f"Unrecognized servable version label: {ref.label}")
            ref = ModelRef(ref.name, version, None, ref.signature)
        if ref.version is not None:
            loaded = versions.get(ref.version)
            if loaded is None or not loaded.available:
                raise ModelNotFound(f"Servable not found for request: {ref.describe()}")
            return loaded
        available = [v for v in versions.values() if v.available]
        if not available:
            raise ModelNotFound(f"Servable not found for request: {ref.describe()}")
        return max(available, key=lambda v: v.version)

    def signature(self, loaded: LoadedVersion, name: str) -> tuple[str, Signature]:
        resolved = name or DEFAULT_SIGNATURE
        if resolved not in loaded.signatures:
            raise SignatureNotFound(f'Serving signature key "{resolved}" not found.')
        return resolved, loaded.signatures[resolved]

    # ----------------------------------------------------------------------------- calls

    async def predict(
        self,
        ref: ModelRef,
        inputs: Tensors,
        output_filter: list[str] | None = None,
        timing: Timing | None = None,
        deadline: float | None = None,
    ) -> tuple[LoadedVersion, str, Tensors]:
        """Check and run one request; returns (version served, signature name, outputs).

        ``timing``, when given, receives the queue wait and compute time (see :meth:`_compute`).
        ``deadline`` (:func:`time.monotonic`): a request still queued when it passes is not
        computed (:class:`~deploykit.errors.DeadlineExceeded`).
        """
        loaded = self.resolve(ref)
        signature_name, signature = self.signature(loaded, ref.signature)
        names = select_outputs(signature, list(output_filter or []))
        check_inputs(signature, inputs, check_shapes=not _advisory_shapes(loaded))
        outputs = await self._compute(loaded, signature_name, inputs, timing, deadline)
        return loaded, signature_name, {name: outputs[name] for name in names}

    async def classify(
        self, ref: ModelRef, examples: list[bytes], timing: Timing | None = None
    ) -> tuple[LoadedVersion, str, example_tasks.Classifications]:
        """Classify serialized ``tf.Example`` s; returns (version served, signature name, results)."""
        loaded, signature_name, signature = self._example_signature(ref)
        example_tasks.check_classify_signature(signature, _describer(loaded, signature_name))
        tensor = example_tasks.example_tensor(examples)
        outputs = await self._run_examples(loaded, signature_name, signature, tensor, timing)
        return loaded, signature_name, example_tasks.classifications(outputs, len(examples))

    async def regress(
        self, ref: ModelRef, examples: list[bytes], timing: Timing | None = None
    ) -> tuple[LoadedVersion, str, list[float]]:
        """Regress serialized ``tf.Example`` s; returns (version served, signature name, one value each)."""
        loaded, signature_name, signature = self._example_signature(ref)
        example_tasks.check_regress_signature(signature, _describer(loaded, signature_name))
        tensor = example_tasks.example_tensor(examples)
        outputs = await self._run_examples(loaded, signature_name, signature, tensor, timing)
        return loaded, signature_name, example_tasks.regressions(outputs, len(examples))

    async def multi_inference(
        self, tasks: list[tuple[ModelRef, str]], examples: list[bytes]
    ) -> tuple[LoadedVersion, list[multi_inference.TaskResult]]:
        """Run several classify/regress tasks (each a ModelRef and a method name) on the same examples.

        The version is the one the first task addresses (no task: a model named ""), as in TF Serving.
        Returns (version served, one result per task in task order).
        """
        loaded = self.resolve(tasks[0][0] if tasks else ModelRef(""))
        planned = multi_inference.plan(
            [multi_inference.Task(ref.name, ref.signature or DEFAULT_SIGNATURE, method) for ref, method in tasks],
            loaded,
        )
        tensor, count = example_tasks.example_tensor(examples), len(examples)
        outputs = await asyncio.gather(
            *(self._run_examples(loaded, task.signature_name, task.signature, tensor, None) for task in planned)
        )
        results = [
            multi_inference.TaskResult(task.signature_name, classifications=example_tasks.classifications(out, count))
            if task.classify
            else multi_inference.TaskResult(task.signature_name, regressions=example_tasks.regressions(out, count))
            for task, out in zip(planned, outputs, strict=True)
        ]
        return loaded, results

    def _example_signature(self, ref: ModelRef) -> tuple[LoadedVersion, str, Signature]:
        """Classify/Regress signature lookup: an unknown name is INVALID_ARGUMENT there (not Predict's
        FAILED_PRECONDITION)."""
        loaded = self.resolve(ref)
        name = ref.signature or DEFAULT_SIGNATURE
        if name not in loaded.signatures:
            raise InvalidInput(f"No signature was found with the name: {name}")
        return loaded, name, loaded.signatures[name]

    async def _run_examples(
        self,
        loaded: LoadedVersion,
        signature_name: str,
        signature: Signature,
        examples: np.ndarray,
        timing: Timing | None,
    ) -> Tensors:
        """Feed the serialized examples (:func:`example_tasks.example_tensor`) to the signature's input."""
        inputs = {signature.inputs[0].name: examples}
        check_inputs(signature, inputs, check_shapes=not _advisory_shapes(loaded))
        return await self._compute(loaded, signature_name, inputs, timing)

    async def _compute(
        self,
        loaded: LoadedVersion,
        signature_name: str,
        inputs: Tensors,
        timing: Timing | None,
        deadline: float | None = None,
    ) -> Tensors:
        """Run one checked request: in a batch when the signature is batched, else on the inference threads.

        ``timing``, when given, receives the queue wait (until a thread picks the request up, or its
        batch starts) and the model's (or the batch's) compute time.
        """
        signature = loaded.signatures[signature_name]
        batcher = self.batchers.get(loaded, signature_name, signature) if self.batchers is not None else None
        if batcher is None:
            return await self._compute_alone(loaded, signature_name, inputs, timing, deadline)
        check_deadline(deadline, f"{loaded.name} version {loaded.version}")
        outputs, queue_s, compute_s = await batcher.run(inputs)  # a retiring version awaits its batches
        if timing is not None:
            timing.queue_s, timing.compute_s = queue_s, compute_s
        return outputs

    async def _compute_alone(
        self,
        loaded: LoadedVersion,
        signature_name: str,
        inputs: Tensors,
        timing: Timing | None,
        deadline: float | None,
    ) -> Tensors:
        loop = asyncio.get_running_loop()
        submitted = time.perf_counter()

        def compute() -> tuple[Tensors, float, float]:
            check_deadline(deadline, f"{loaded.name} version {loaded.version}")
            started = time.perf_counter()
            return loaded.run(signature_name, inputs), started, time.perf_counter()

        work = self.executor.submit(compute)
        # A retiring version is closed only once no thread uses it. Count the thread's work, not
        # this coroutine: a cancelled request (deadline, client gone) may still be computing.
        loaded.inflight += 1
        work.add_done_callback(lambda _: _call_soon(loop, _release, loaded))
        try:
            outputs, started, finished = await asyncio.wrap_future(work)
        except DeployKitError:
            raise
        except Exception as exc:
            log.exception("model %s version %d failed on a request", loaded.name, loaded.version)
            raise RuntimeFailure(f"{loaded.name} version {loaded.version}: {type(exc).__name__}: {exc}") from exc
        if timing is not None:
            timing.queue_s, timing.compute_s = started - submitted, finished - started
        return outputs

    def metadata(self, ref: ModelRef) -> LoadedVersion:
        return self.resolve(ref)

    def status(self, name: str, version: int | None) -> list[LoadedVersion]:
        """Every known version of ``name`` (or one), loaded or failed, for GetModelStatus."""
        versions = self.versions.get(name, {})
        if not versions:
            raise ModelNotFound(f"Could not find any versions of model {name}")
        if version is not None:
            if version not in versions:
                raise ModelNotFound(f"Could not find version {version} of model {name}")
            return [versions[version]]
        return [versions[v] for v in sorted(versions)]

    @property
    def ready(self) -> bool:
        """True when at least one version of every model is available."""
        return all(any(v.available for v in vs.values()) for vs in self.versions.values())

    async def release_version(self, loaded: LoadedVersion, timeout: float) -> bool:
        """Wait until no request uses ``loaded`` (called when a version retires, after it stopped
        being resolved): its batch schedulers take no new requests, their queued and running
        batches complete, and computations on the inference threads finish. False on timeout."""
        deadline = time.monotonic() + timeout
        if self.batchers is not None:
            self.batchers.close_version(loaded)
            try:
                await asyncio.wait_for(self.batchers.wait_closed(loaded), timeout)
            except TimeoutError:
                return False
        while loaded.inflight:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def close(self) -> None:
        if self.batchers is not None:
            self.batchers.close()
        self.executor.shutdown(wait=True, cancel_futures=True)
        for versions in self.versions.values():
            for loaded in versions.values():
                if loaded.runtime is not None:
                    loaded.runtime.close()
