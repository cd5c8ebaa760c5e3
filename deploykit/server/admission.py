"""Request admission for graceful shutdown, and request deadlines.

Both front ends enter every request through one :class:`Admission`. Once :meth:`Admission.drain`
starts, new requests are refused with UNAVAILABLE / 503 (a client retries them on another
replica) while the requests already admitted run to completion, up to a grace period.

Just before the gRPC port closes, :meth:`Admission.hold` makes new gRPC requests wait instead
(:meth:`Admission.wait_while_held`): gRPC's core kills the calls it has not handed to the application
when its shutdown starts, and calls that reach it after that, with CANCELLED (grpc/grpc#41785), so
the server holds what arrives until gRPC has sent GOAWAY on every connection and only then answers
UNAVAILABLE (see :meth:`deploykit.server.server.Server.stop`).
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
        #: True between :meth:`hold` and :meth:`release`: gRPC handlers wait in :meth:`wait_while_held`.
        self.holding = False
        #: Requests that arrived while holding (the stop waits until they stop coming).
        self.held = 0
        self._released: asyncio.Event | None = None

    @contextmanager
    def request(self) -> Iterator[None]:
        """Admit one request for the duration of the block; :class:`ModelNotReady` when draining."""
        with self._lock:
            if self.draining:
                raise ModelNotReady("the server is shutting down and accepts no new requests; retry on another replica")
            self.in_flight += 1
            count = self.in_flight
        metrics.set_in_flight(count)
        try:
            yield
        finally:
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

    def hold(self) -> None:
        """From now on (on the event loop, while draining) new gRPC requests wait until :meth:`release`."""
        self._released = asyncio.Event()
        self.holding = True

    def release(self) -> None:
        """Let the held requests go on: being refused (the server is draining)."""
        self.holding = False
        if self._released is not None:
            self._released.set()

    async def wait_while_held(self) -> None:
        """Wait while the server holds gRPC requests (call it only when :attr:`holding`)."""
        assert self._released is not None  # holding is set only by hold()
        self.held += 1
        await self._released.wait()


def deadline_after(seconds: float | None) -> float | None:
    """The :func:`time.monotonic` instant ``seconds`` from now (None: no deadline)."""
    return None if seconds is None else time.monotonic() + seconds


def check_deadline(deadline: float | None, what: str) -> None:
    """Raise :class:`DeadlineExceeded` when ``deadline`` has passed: computing would be wasted work."""
    if deadline is not None and time.monotonic() >= deadline:
        late_ms = (time.monotonic() - deadline) * 1000
        raise DeadlineExceeded(f"deadline exceeded {late_ms:.0f} ms before {what} started; not computed")
