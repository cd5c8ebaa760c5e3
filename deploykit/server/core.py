"""The transport-free inference core: resolve a request to a model version, check it, compute it.

A front end (gRPC, REST, and later others) decodes its wire format into a
:class:`~deploykit.model_ref.ModelRef` and numpy tensors, calls :class:`InferenceService` and
encodes what it returns; errors are :mod:`deploykit.errors` classes that
:mod:`deploykit.protocol.status_codes` maps to codes. Inference runs in a thread pool or the dynamic
batcher, off the event loop (ONNX Runtime, torch and TensorFlow release the GIL while computing).
See :class:`InferenceService` for the methods a front end calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from deploykit.errors import DeployKitError, InvalidInput, ModelNotFound, RuntimeFailure, SignatureNotFound
from deploykit.model_ref import ModelRef
from deploykit.protocol.wire import server_timing
from deploykit.runtimes.base import DEFAULT_SIGNATURE
from deploykit.server import example_tasks, multi_inference, signature_defs
from deploykit.server.admission import check_deadline
from deploykit.server.batching.options import BatchingOptions
from deploykit.server.batching.schedulers import Batchers
from deploykit.server.input_checks import check_inputs, select_outputs
from deploykit.server.registry import VersionRegistry
from deploykit.server.version_loader import LoadedVersion
from deploykit.tensors import Signature, Tensors

log = logging.getLogger(__name__)


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


async def _until_idle(loaded: LoadedVersion, deadline: float) -> bool:
    """Wait until nothing holds or computes on ``loaded``; False when ``deadline`` passes first."""
    while loaded.inflight:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def _describer(loaded: LoadedVersion, signature_name: str):
    """The SignatureDef text of a signature, for the messages of TF Serving's signature checks (made
    only when one fails)."""
    return lambda: signature_defs.debug_string(signature_defs.definition(loaded, signature_name))


def _check_inputs(loaded: LoadedVersion, signature: Signature, inputs: Tensors) -> None:
    # Shapes are not checked where they are advisory (TF1 graphs, fed unchecked by TF Serving).
    assert loaded.runtime is not None  # resolved versions are loaded
    check_inputs(signature, inputs, check_shapes=not loaded.runtime.advisory_shapes)


class InferenceService:
    """Serves the loaded versions of a set of models, for any front end.

    A front end calls :meth:`predict`, :meth:`classify`, :meth:`regress`, :meth:`multi_inference`
    (the inference methods, awaited on the server's event loop), :meth:`metadata` and :meth:`status`
    (model and version state), :meth:`resolve` and :meth:`signature` (to decode a request against
    the signature it addresses) and :attr:`ready` (health). The version table is :attr:`registry`,
    changed by :class:`~deploykit.server.manager.ModelManager` (which also calls
    :meth:`release_version`); the server calls :meth:`close` once the front ends have stopped.

    With ``batching`` options, requests for batchable signatures go through the dynamic batcher
    (:mod:`deploykit.server.batching`) instead of the inference threads.
    """

    def __init__(
        self, versions: Iterable[LoadedVersion] = (), *, threads: int = 4, batching: BatchingOptions | None = None
    ) -> None:
        #: Which versions serve, and their labels.
        self.registry = VersionRegistry(versions)
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="deploykit-infer")
        # One token per inference thread, held by whatever computes (an inference thread, or a
        # native gRPC thread computing inline: native_inline.py), so that no more computations run
        # at once than --inference-threads allows. A SimpleQueue: taking a token is one C call.
        self._compute_tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(threads):
            self._compute_tokens.put(None)
        self.batchers = Batchers(batching) if batching is not None else None

    # ----------------------------------------------------------------------------- resolution

    def resolve(self, ref: ModelRef) -> LoadedVersion:
        """The available version a request addresses (latest when none is named)."""
        return self.registry.resolve(ref)

    def signature(self, loaded: LoadedVersion, name: str) -> tuple[str, Signature]:
        """(resolved name, signature) of signature ``name`` ("" = the default) of ``loaded``;
        :class:`SignatureNotFound` (Predict's FAILED_PRECONDITION) when it has none of that name."""
        resolved = name or DEFAULT_SIGNATURE
        if resolved not in loaded.signatures:
            raise SignatureNotFound(f'Serving signature key "{resolved}" not found.')
        return resolved, loaded.signatures[resolved]

    # ----------------------------------------------------------------------------- compute slots

    @contextlib.contextmanager
    def compute_slot(self):
        """Hold one of the ``threads`` compute slots while computing (waiting until one is free)."""
        self._compute_tokens.get()
        try:
            yield
        finally:
            self._compute_tokens.put(None)

    def try_compute_slot(self) -> bool:
        """Take a compute slot if one is free now; the caller gives it back with :meth:`release_compute_slot`."""
        try:
            self._compute_tokens.get_nowait()
        except queue.Empty:
            return False
        return True

    def release_compute_slot(self) -> None:
        self._compute_tokens.put(None)

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
        return await self.predict_on(loaded, ref.signature, inputs, output_filter, timing, deadline)

    async def predict_on(
        self,
        loaded: LoadedVersion,
        signature: str,
        inputs: Tensors,
        output_filter: list[str] | None = None,
        timing: Timing | None = None,
        deadline: float | None = None,
    ) -> tuple[LoadedVersion, str, Tensors]:
        """:meth:`predict` on a version already resolved, for a front end that needs the version
        before it can decode (REST JSON needs the signature) and holds it meanwhile (:meth:`hold`):
        resolving again by number would fail if the version retired in between."""
        signature_name, found = self.signature(loaded, signature)
        names = select_outputs(found, list(output_filter or []))
        _check_inputs(loaded, found, inputs)
        outputs = await self._compute(loaded, signature_name, inputs, timing, deadline)
        return loaded, signature_name, {name: outputs[name] for name in names}

    @contextlib.contextmanager
    def hold(self, loaded: LoadedVersion) -> Iterator[None]:
        """Keep ``loaded`` open while a request that resolved it is still being decoded, as TF
        Serving's servable handle does: a version that retires meanwhile waits for it
        (:meth:`release_version`) instead of the request failing with NOT_FOUND."""
        loaded.enter()
        try:
            yield
        finally:
            loaded.leave()

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

        The version is the one the first task addresses (no task: NOT_FOUND for a model named ""), as in TF Serving.
        Returns (version served, one result per task in task order).
        """
        if not tasks:  # TF Serving looks an empty task list up as model "" without the ModelSpec name check
            raise ModelNotFound("Servable not found for request: Latest()")
        loaded = self.resolve(tasks[0][0])
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
        _check_inputs(loaded, signature, inputs)
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
        submitted = time.perf_counter()

        def compute() -> tuple[Tensors, float, float]:
            with self.compute_slot():
                check_deadline(deadline, f"{loaded.name} version {loaded.version}")
                started = time.perf_counter()
                assert loaded.runtime is not None  # resolved versions are loaded
                return loaded.runtime.predict(inputs, signature_name), started, time.perf_counter()

        work = self.executor.submit(compute)
        # A retiring version is closed only once no thread uses it. Count the thread's work, not
        # this coroutine: a cancelled request (deadline, client gone) may still be computing.
        loaded.enter()
        work.add_done_callback(lambda _: loaded.leave())
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
        """The version whose metadata a request asks for (its signatures, runtime, SignatureDefs)."""
        return self.resolve(ref)

    def status(self, name: str, version: int | None) -> list[LoadedVersion]:
        """Every known version of ``name`` (or one), loaded or failed, for GetModelStatus."""
        return self.registry.status(name, version)

    @property
    def ready(self) -> bool:
        """True when at least one version of every model is available."""
        return self.registry.ready

    async def release_version(self, loaded: LoadedVersion, timeout: float) -> bool:
        """Wait until no request uses ``loaded`` (called when a version retires, after it stopped
        being resolved): its batch schedulers take no new requests, their queued and running
        batches complete, and computations on the inference threads finish. False on timeout."""
        deadline = time.monotonic() + timeout
        # Held requests (resolved, still decoding) may yet submit to the batcher: they go first.
        if not await _until_idle(loaded, deadline):
            return False
        if self.batchers is not None:
            self.batchers.close_version(loaded)
            try:
                await asyncio.wait_for(self.batchers.wait_closed(loaded), max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                return False
        return await _until_idle(loaded, deadline)

    def close(self) -> None:
        """Stop the batchers and inference threads, then close every runtime (front ends stopped)."""
        if self.batchers is not None:
            self.batchers.close()
        self.executor.shutdown(wait=True, cancel_futures=True)
        for loaded in self.registry:
            if loaded.runtime is not None:
                loaded.runtime.close()
