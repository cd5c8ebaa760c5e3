"""Request admission for graceful shutdown, and request deadlines.

Both front ends enter every request through one :class:`Admission`. Once :meth:`Admission.drain`
starts, new requests are refused with UNAVAILABLE / 503 (a client retries them on another
replica) while the requests already admitted run to completion, up to a grace period.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from deploykit.errors import DeadlineExceeded, ModelNotReady
from deploykit.server import metrics


class Admission:
    """Counts the requests in flight in one process and refuses new ones once draining.

    Requests enter from the server's event loop and, on the native data plane, from its threads
    (:mod:`deploykit.server.native_inline`): the counter is guarded by a lock, and the drain's
    wake-up is handed to the loop that waits for it.
    """

    def __init__(self) -> None:
        self.in_flight = 0
        self.draining = False
        self._idle: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @contextmanager
    def request(self) -> Iterator[None]:
        """Admit one request for the duration of the block; :class:`ModelNotReady` when draining."""
        self.enter()
        try:
            yield
        finally:
            self.leave()

    def enter(self) -> None:
        """Admit one request (:meth:`request` without a block, for a request that ends on another
        thread); :class:`ModelNotReady` when draining. Every admitted request calls :meth:`leave` once."""
        with self._lock:
            if self.draining:
                raise ModelNotReady("the server is shutting down and accepts no new requests; retry on another replica")
            self.in_flight += 1
            count = self.in_flight
        metrics.set_in_flight(count)

    def leave(self) -> None:
        """An admitted request has been answered."""
        with self._lock:
            self.in_flight -= 1
            count = self.in_flight
            idle = self._idle if count == 0 else None
        metrics.set_in_flight(count)
        if idle is not None and self._loop is not None:  # idle is only set once the loop is known
            self._loop.call_soon_threadsafe(idle.set)

    async def drain(self, grace: float) -> bool:
        """Refuse new requests from now on; wait until none is in flight. False when ``grace`` ran out."""
        with self._lock:
            self.draining = True
            if self.in_flight == 0:
                return True
            self._loop = asyncio.get_running_loop()
            self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            return False
        return True


def deadline_after(seconds: float | None) -> float | None:
    """The :func:`time.monotonic` instant ``seconds`` from now (None: no deadline)."""
    return None if seconds is None else time.monotonic() + seconds


def check_deadline(deadline: float | None, what: str) -> None:
    """Raise :class:`DeadlineExceeded` when ``deadline`` has passed: computing would be wasted work."""
    if deadline is not None and time.monotonic() >= deadline:
        late_ms = (time.monotonic() - deadline) * 1000
        raise DeadlineExceeded(f"deadline exceeded {late_ms:.0f} ms before {what} started; not computed")
