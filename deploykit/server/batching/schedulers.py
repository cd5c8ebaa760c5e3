"""The batch schedulers of a server: one :class:`~deploykit.server.batching.scheduler.BatchScheduler`
per (model version, signature), created on demand, sharing one pool of batch threads (TF Serving also
shares one batch thread pool across models)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from deploykit.server.batching.options import BatchingOptions
from deploykit.server.batching.scheduler import BatchScheduler, batchable
from deploykit.server.version_loader import LoadedVersion
from deploykit.tensors import Signature

log = logging.getLogger(__name__)


class Batchers:
    """The batch schedulers of a server, one per (model version, signature), and their threads."""

    def __init__(self, options: BatchingOptions) -> None:
        self.options = options
        log.info(
            "dynamic batching on: max_batch_size=%d batch_timeout_micros=%d max_enqueued_batches=%d "
            "num_batch_threads=%d allowed_batch_sizes=%s",
            options.max_batch_size,
            options.batch_timeout_micros,
            options.max_enqueued_batches,
            options.num_batch_threads,
            list(options.allowed_batch_sizes) or "any",
        )
        if options.pad_variable_length_inputs:
            log.warning(
                "pad_variable_length_inputs: deploykit batches together only requests whose non-batch dimensions "
                "are equal (each request's outputs keep its own shapes) instead of padding them"
            )
        self._executor = ThreadPoolExecutor(options.num_batch_threads, thread_name_prefix=options.thread_pool_name)
        self._slots = asyncio.Semaphore(options.num_batch_threads)
        # Keyed by the LoadedVersion's id; each entry holds the object, so the id stays unique.
        self._schedulers: dict[tuple[int, str], tuple[LoadedVersion, BatchScheduler | None]] = {}

    def get(self, loaded: LoadedVersion, signature_name: str, signature: Signature) -> BatchScheduler | None:
        """The scheduler for a signature, or None when it cannot be batched (logged once)."""
        key = (id(loaded), signature_name)
        if key not in self._schedulers:
            scheduler = None
            if batchable(signature):
                scheduler = BatchScheduler(loaded, signature_name, signature, self.options, self._executor, self._slots)
            else:
                log.info(
                    "model %s version %d signature %s runs unbatched: batching needs a dynamic first dimension "
                    "on every input and output",
                    loaded.name,
                    loaded.version,
                    signature_name,
                )
            self._schedulers[key] = (loaded, scheduler)
        return self._schedulers[key][1]

    def close_version(self, loaded: LoadedVersion) -> None:
        """Retire ``loaded``'s schedulers: no new requests (UNAVAILABLE), but the batches already
        queued still run and running ones finish; await :meth:`wait_closed` for that.

        The entries stay, so that no new scheduler is created for a retired version.
        """
        for scheduler in self._of(loaded):
            scheduler.close()

    async def wait_closed(self, loaded: LoadedVersion) -> None:
        """After :meth:`close_version`: return once ``loaded``'s queued and running batches are answered."""
        await asyncio.gather(*(scheduler.wait_closed() for scheduler in self._of(loaded)))

    def _of(self, loaded: LoadedVersion) -> list[BatchScheduler]:
        return [s for owner, s in self._schedulers.values() if owner is loaded and s is not None]

    def close(self) -> None:
        """Stop every scheduler and the batch threads (after the front ends stopped)."""
        for _, scheduler in self._schedulers.values():
            if scheduler is not None:
                scheduler.abort()
        self._executor.shutdown(wait=True, cancel_futures=True)
