"""Dynamic batching: merge concurrent requests for one signature into one model call.

One :class:`BatchScheduler` per (model version, signature) whose inputs and outputs all have a
dynamic first dimension; :class:`~deploykit.server.batching.schedulers.Batchers` creates them on
demand and owns the batch threads they share (TF Serving also shares one batch thread pool across
models). Semantics follow TF Serving's
``SharedBatchScheduler`` + ``BatchingSession``:

- requests queue (on the event loop) into batches of at most ``max_batch_size`` rows; only
  requests whose non-batch dimensions are equal share a batch;
- when a batch thread is free, the oldest ready batch runs; a batch is ready when it is full, when
  a newer batch of its shape was started, or when its first request has waited
  ``batch_timeout_micros`` (0: at once, so batches form only while every thread is busy);
- a batch is padded up to the next ``allowed_batch_sizes`` entry with copies of its last row; the
  outputs are split back per request and the padding rows are dropped;
- a request larger than ``max_batch_size`` is rejected (``Task size N is larger than maximum input
  batch size M``); with ``enable_large_batch_splitting`` a request may be split across batches of
  at most ``max_execution_batch_size`` rows and its outputs are joined again;
- starting a new batch when ``max_enqueued_batches`` already wait is refused with
  :class:`ResourceExhausted`;
- a caller that gives up (deadline, cancellation) takes its rows out of the batches still waiting,
  so dead requests neither fill open batches nor hold queue places that live requests need;
- a batch whose computation raises fails each of its requests; the scheduler keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from deploykit.errors import DeployKitError, InvalidInput, ModelNotReady, ResourceExhausted, RuntimeFailure
from deploykit.server import metrics
from deploykit.server.batching.options import BatchingOptions
from deploykit.server.version_loader import LoadedVersion
from deploykit.tensors import Signature, Tensors

log = logging.getLogger(__name__)


def batchable(signature: Signature) -> bool:
    """True when every input and output of ``signature`` has a known rank and a dynamic first dimension."""
    return all(spec.shape and spec.shape[0] is None for spec in (*signature.inputs, *signature.outputs))


@dataclass(eq=False)
class _Task:
    """One request: its rows may be computed in one piece or, with splitting, in several."""

    inputs: Tensors
    rows: int
    future: asyncio.Future
    enqueued: float
    pieces_left: int = 0
    parts: dict[int, Tensors] = field(default_factory=dict)  # outputs by first row of the piece
    batches: list[_Batch] = field(default_factory=list)  # the batches holding its pieces
    started: float = math.inf
    finished: float = 0.0


@dataclass(eq=False)
class _Piece:
    task: _Task
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass(eq=False)
class _Batch:
    key: tuple
    created: float
    pieces: list[_Piece] = field(default_factory=list)
    rows: int = 0
    queued: bool = True  # False once a batch thread took it (or the scheduler stopped)

    def add(self, piece: _Piece) -> None:
        self.pieces.append(piece)
        self.rows += piece.rows
        piece.task.pieces_left += 1
        piece.task.batches.append(self)

    def withdraw(self, task: _Task) -> None:
        """Drop ``task``'s pieces (its caller gave up)."""
        self.rows -= sum(p.rows for p in self.pieces if p.task is task)
        self.pieces = [p for p in self.pieces if p.task is not task]


@dataclass
class _Outcome:
    """What a batch thread hands back: per-piece outputs, or the error every piece gets."""

    outputs: list[Tensors] | None
    error: DeployKitError | None
    started: float
    finished: float
    size: int


class BatchScheduler:
    """Batches the requests for one signature of one model version (create on the event loop)."""

    def __init__(
        self,
        loaded: LoadedVersion,
        signature_name: str,
        signature: Signature,
        options: BatchingOptions,
        executor: ThreadPoolExecutor,
        slots: asyncio.Semaphore,
    ) -> None:
        self.loaded = loaded
        self.signature_name = signature_name
        self.options = options
        self._input_names = signature.input_names
        self._output_names = signature.output_names
        self._executor = executor
        self._slots = slots  # one per batch thread, shared by every scheduler
        self._queue: deque[_Batch] = deque()  # batches waiting for a thread, oldest first
        self._open: dict[tuple, _Batch] = {}  # per input shape, the batch new requests join
        self._changed = asyncio.Event()
        self._running: set[asyncio.Future] = set()
        self._closing = False
        self._drain = asyncio.get_running_loop().create_task(self._drain_loop(), name=f"batcher-{loaded.name}")

    # ----------------------------------------------------------------------------- requests

    @property
    def queued_rows(self) -> int:
        """Rows waiting for a batch thread (before padding)."""
        return sum(batch.rows for batch in self._queue)

    async def run(self, inputs: Tensors) -> tuple[Tensors, float, float]:
        """Compute one checked request in a batch; returns (outputs, queue seconds, compute seconds)."""
        if self._closing:
            raise ModelNotReady(f"{self.loaded.name} version {self.loaded.version} is being unloaded; retry")
        rows = self._rows(inputs)
        if rows > self.options.max_batch_size:
            limit = self.options.max_batch_size
            raise InvalidInput(f"Task size {rows} is larger than maximum input batch size {limit}")
        loop = asyncio.get_running_loop()
        task = _Task(inputs, rows, loop.create_future(), time.perf_counter())
        self._enqueue(task)
        # Cancelling this coroutine (deadline, client gone) cancels the future it awaits.
        task.future.add_done_callback(lambda future: self._withdraw(task) if future.cancelled() else None)
        self._changed.set()
        outputs = await task.future
        return outputs, task.started - task.enqueued, task.finished - task.started

    def _rows(self, inputs: Tensors) -> int:
        if any(value.ndim == 0 for value in inputs.values()):
            raise InvalidInput("Batching Run() input tensors must have at least one dimension")
        sizes = {value.shape[0] for value in inputs.values()}
        if len(sizes) != 1:
            raise InvalidInput(
                "Batching Run() input tensors must have equal 0th-dimension size; got "
                + ", ".join(f"{name}: {inputs[name].shape[0]}" for name in self._input_names)
            )
        return sizes.pop()

    def _enqueue(self, task: _Task) -> None:
        """Place ``task`` in the open batch of its shape and new batches, or refuse it whole."""
        key = tuple(task.inputs[name].shape[1:] for name in self._input_names)
        limit = self.options.batch_limit
        splitting = self.options.enable_large_batch_splitting
        current = self._open.get(key)
        room = limit - current.rows if current is not None else 0
        joins = current is not None and (task.rows <= room or splitting)
        rest = task.rows - min(room, task.rows) if joins else task.rows
        new_batches = math.ceil(rest / limit) if joins else max(1, math.ceil(rest / limit))
        if len(self._queue) + new_batches > self.options.max_enqueued_batches:
            raise ResourceExhausted(
                "The batch scheduling queue to which this task was submitted is full "
                f"({len(self._queue)} batches of up to {limit} rows waiting, max_enqueued_batches="
                f"{self.options.max_enqueued_batches}); retry later or raise max_enqueued_batches"
            )
        start = 0
        if joins:
            start = min(room, task.rows)
            current.add(_Piece(task, 0, start))
            self._close_if_full(current)
        for _ in range(new_batches):
            batch = _Batch(key, time.perf_counter())
            stop = min(start + limit, task.rows)
            batch.add(_Piece(task, start, stop))
            start = stop
            self._queue.append(batch)
            self._open[key] = batch
            self._close_if_full(batch)

    def _close_if_full(self, batch: _Batch) -> None:
        if batch.rows >= self.options.batch_limit and self._open.get(batch.key) is batch:
            del self._open[batch.key]

    def _withdraw(self, task: _Task) -> None:
        """Take a cancelled request's rows out of the batches still waiting; drop batches left empty,
        so that they no longer count toward ``max_enqueued_batches``."""
        for batch in task.batches:
            if not batch.queued:  # running or answered: its pieces are skipped on delivery
                continue
            batch.withdraw(task)
            if not batch.pieces:
                batch.queued = False
                self._queue.remove(batch)
                if self._open.get(batch.key) is batch:
                    del self._open[batch.key]
        self._changed.set()

    # ----------------------------------------------------------------------------- draining

    def _ready(self, batch: _Batch, now: float) -> bool:
        return (
            self._closing
            or self._open.get(batch.key) is not batch
            or now - batch.created >= self.options.batch_timeout_micros / 1e6
        )

    async def _next_ready(self) -> _Batch | None:
        """The oldest batch that may run now (waiting as needed); None once closing and drained."""
        while True:
            self._changed.clear()
            now = time.perf_counter()
            wait: float | None = None
            for batch in self._queue:
                if self._ready(batch, now):
                    return batch
                left = self.options.batch_timeout_micros / 1e6 - (now - batch.created)
                wait = left if wait is None else min(wait, left)
            if self._closing:
                return None
            with contextlib.suppress(TimeoutError):  # a batch's timeout came: look again
                await asyncio.wait_for(self._changed.wait(), wait)

    async def _drain_loop(self) -> None:
        try:
            await self._drain_batches()
        except Exception:  # a bug here must not leave callers waiting forever
            log.exception("batch scheduler of %s version %d stopped", self.loaded.name, self.loaded.version)
            self._closing = True
            self._fail_queued(RuntimeFailure(f"the batch scheduler of {self.loaded.name} stopped; see the server log"))

    async def _drain_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while (batch := await self._next_ready()) is not None:
            # Wait for a free batch thread with the batch still open: requests arriving meanwhile
            # join it, which is what makes batches grow under load.
            await self._slots.acquire()
            if not batch.queued:  # every caller in it gave up while it waited for the thread
                self._slots.release()
                continue
            batch.queued = False
            self._queue.remove(batch)
            if self._open.get(batch.key) is batch:
                del self._open[batch.key]
            pieces = [p for p in batch.pieces if not p.task.future.done()]  # callers that gave up
            if not pieces:
                self._slots.release()
                continue
            future = loop.run_in_executor(self._executor, self._compute, pieces)
            self._running.add(future)
            future.add_done_callback(lambda f, pieces=pieces: self._deliver(pieces, f))

    def _compute(self, pieces: list[_Piece]) -> _Outcome:
        """Merge, pad, run and split one batch (on a batch thread)."""
        started = time.perf_counter()
        rows = sum(p.rows for p in pieces)
        size = self.options.padded_size(rows) if rows else 0
        try:
            merged = {}
            for name in self._input_names:
                parts = [p.task.inputs[name][p.start : p.stop] for p in pieces]
                if size > rows:  # padding: copies of the last real row (a valid input for any model)
                    last = next(part for part in reversed(parts) if len(part))
                    parts.append(np.repeat(last[-1:], size - rows, axis=0))
                merged[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
            outputs = self.loaded.runtime.predict(merged, self.signature_name)
            split = self._split(outputs, pieces, size)
        except DeployKitError as exc:
            return _Outcome(None, exc, started, time.perf_counter(), size)
        except Exception as exc:
            log.exception(
                "model %s version %d failed on a batch of %d requests",
                self.loaded.name,
                self.loaded.version,
                len({id(p.task) for p in pieces}),
            )
            # The same text as an unbatched request's failure (core.InferenceService._compute).
            failure = RuntimeFailure(f"{self.loaded.name} version {self.loaded.version}: {type(exc).__name__}: {exc}")
            return _Outcome(None, failure, started, time.perf_counter(), size)
        return _Outcome(split, None, started, time.perf_counter(), size)

    def _split(self, outputs: Tensors, pieces: list[_Piece], size: int) -> list[Tensors]:
        for name in self._output_names:
            value = outputs.get(name)
            if value is None or value.ndim == 0 or value.shape[0] != size:
                got = "missing" if value is None else f"shape {list(value.shape)}"
                raise RuntimeFailure(
                    f"{self.loaded.name} version {self.loaded.version}: batched output '{name}' is {got}; its 0th "
                    f"dimension must equal the batch size {size} for the batch to be split back per request"
                )
        split, offset = [], 0
        for piece in pieces:
            split.append({name: outputs[name][offset : offset + piece.rows] for name in self._output_names})
            offset += piece.rows
        return split

    def _deliver(self, pieces: list[_Piece], future: asyncio.Future) -> None:
        """Back on the event loop: free the thread, record metrics, answer the requests."""
        self._running.discard(future)
        self._slots.release()
        self._changed.set()
        if future.cancelled():  # the batch threads were shut down before it ran
            outcome = _Outcome(None, ModelNotReady("the server is shutting down"), math.inf, 0.0, 0)
        else:
            outcome = future.result()
            padding = outcome.size - sum(p.rows for p in pieces)
            metrics.observe_batch(self.loaded.name, self.loaded.version, self.signature_name, outcome.size, padding)
        for i, piece in enumerate(pieces):
            task = piece.task
            if task.future.done():
                continue
            task.started = min(task.started, outcome.started)
            task.finished = max(task.finished, outcome.finished)
            if outcome.error is not None:
                # A fresh exception per request: one instance raised in many coroutines shares a traceback.
                task.future.set_exception(type(outcome.error)(str(outcome.error)))
                continue
            task.parts[piece.start] = outcome.outputs[i]
            task.pieces_left -= 1
            if task.pieces_left == 0:
                metrics.observe_queue(self.loaded.name, self.loaded.version, task.started - task.enqueued)
                task.future.set_result(self._join(task))

    def _join(self, task: _Task) -> Tensors:
        if len(task.parts) == 1:
            return next(iter(task.parts.values()))
        ordered = [task.parts[start] for start in sorted(task.parts)]
        return {name: np.concatenate([part[name] for part in ordered]) for name in self._output_names}

    # ----------------------------------------------------------------------------- closing

    def close(self) -> None:
        """Stop taking requests (they get UNAVAILABLE); queued batches still run, running ones finish."""
        self._closing = True
        self._changed.set()

    async def wait_closed(self) -> None:
        """After :meth:`close`: return once every queued and running batch has been answered."""
        await asyncio.wait([self._drain])
        if self._running:
            await asyncio.wait(set(self._running))

    def abort(self) -> None:
        """Stop at once (server shutdown): requests still queued fail with UNAVAILABLE."""
        self._closing = True
        self._drain.cancel()
        self._fail_queued(ModelNotReady("the server is shutting down"))

    def _fail_queued(self, error: DeployKitError) -> None:
        for batch in self._queue:
            batch.queued = False
            for piece in batch.pieces:
                if not piece.task.future.done():
                    piece.task.future.set_exception(type(error)(str(error)))
        self._queue.clear()
        self._open.clear()
