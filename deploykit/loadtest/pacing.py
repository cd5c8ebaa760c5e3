"""How an open-loop worker waits for a request's intended send time (``deploykit loadtest --pacing``).

- ``timer`` (the default on Linux): a kernel timer (timerfd) armed at the due time, watched by the
  event loop like a socket. It wakes the loop at the due time to the microsecond (plus the kernel's
  wake-up latency), costs no CPU while waiting, and in-flight answers are handled meanwhile.
- ``spin``: ``asyncio.sleep`` until within about a millisecond of the due time, then yield to the
  loop (``asyncio.sleep(0)``, so in-flight I/O still progresses) until it is due. On an idle core
  it is the most punctual, but it keeps a core busy: at 1,000 requests/s per process or more the
  gaps are under a millisecond and the worker never sleeps. Beside the server on the same cores it
  takes the server's CPU, and on a busy machine the scheduler ranks a process that never sleeps
  below the ones that do, so it wakes later, not sooner. For a dedicated load machine.
- ``sleep``: ``asyncio.sleep`` alone (portable; the default where there is no timerfd). CPython's
  selector rounds every timeout *up* to whole milliseconds, so a request leaves up to ~1 ms late by
  construction, whatever the rate.
"""

from __future__ import annotations

import asyncio
import ctypes
import math
import os
import sys
import time
from typing import Literal

from deploykit.errors import UsageError

PACINGS = ("timer", "spin", "sleep")
#: ``spin``: wake from the millisecond-granular sleep at least this long before the due time (the
#: kernel's timer slack, 50 µs by default, and the wake-up itself), then yield until it is due.
SPIN_MARGIN_S = 0.0002
#: A selector timeout is rounded up to whole milliseconds (selectors.py: ``math.ceil(timeout * 1e3)``).
SELECTOR_TICK_S = 0.001

Step = tuple[Literal["send", "sleep", "yield", "timer"], float]

DESCRIPTIONS = {
    "timer": "a kernel timer (timerfd) armed at each intended send time and watched by the event loop: "
    "no CPU spent waiting",
    "spin": f"asyncio sleep until {SELECTOR_TICK_S * 1e3:g}-{(SELECTOR_TICK_S + SPIN_MARGIN_S) * 1e3:g} ms before "
    "each intended send time, then yielding to the event loop until it is due: keeps a core busy",
    "sleep": "asyncio sleep alone: the event loop's timeouts are whole milliseconds, so up to ~1 ms of send lag "
    "comes from the timer itself",
}


def has_timer() -> bool:
    """timerfd is Linux's."""
    return sys.platform.startswith("linux")


def default() -> str:
    """``timer`` where the system has it, else ``sleep``."""
    return "timer" if has_timer() else "sleep"


def resolve(choice: str) -> str:
    """``auto`` -> :func:`default`; anything else is checked and returned."""
    if choice == "auto":
        return default()
    check(choice)
    return choice


def check(choice: str) -> None:
    """A precise error for an unknown pacing or a timer where the system has none."""
    if choice not in PACINGS:
        raise UsageError(f"--pacing must be auto, {', '.join(PACINGS[:-1])} or {PACINGS[-1]}, got {choice!r}")
    if choice == "timer" and not has_timer():
        raise UsageError(f"--pacing timer needs Linux's timerfd ({sys.platform} has none): use spin or sleep")


def describe(choice: str) -> str:
    """The pacing in words, for reports."""
    return f"{choice} ({DESCRIPTIONS[choice]})"


def decide(pacing: str, now: float, due: float) -> Step:
    """The next step of a wait for ``due`` at ``now`` (both ``time.perf_counter()`` seconds): send,
    sleep this many seconds, yield to the loop once, or arm the timer at this time."""
    left = due - now
    if left <= 0:
        return "send", 0.0
    if pacing == "sleep":
        return "sleep", left
    if pacing == "timer":
        return "timer", due
    # spin: the longest whole-millisecond sleep that still wakes SPIN_MARGIN_S before the due time
    # (asked a hair short of the whole millisecond, or float error could make the selector round up)
    ticks = math.floor((left - SPIN_MARGIN_S) / SELECTOR_TICK_S)
    return ("sleep", ticks * SELECTOR_TICK_S - 1e-7) if ticks >= 1 else ("yield", 0.0)


class Pacer:
    """Waits until a ``time.perf_counter()`` instant by ``pacing`` (inside a running event loop)."""

    def __init__(self, pacing: str) -> None:
        check(pacing)
        self.pacing = pacing
        self.timer = _Timer(asyncio.get_running_loop()) if pacing == "timer" else None

    async def wait_until(self, due: float) -> None:
        while True:
            step, value = decide(self.pacing, time.perf_counter(), due)
            if step == "send":
                return
            if step == "timer":
                assert self.timer is not None
                await self.timer.wait(value)
            else:
                await asyncio.sleep(value)  # "yield": sleep(0) runs one loop iteration

    def close(self) -> None:
        if self.timer is not None:
            self.timer.close()


_CLOCK_MONOTONIC, _TFD_NONBLOCK, _TFD_CLOEXEC, _TFD_TIMER_ABSTIME = 1, os.O_NONBLOCK, os.O_CLOEXEC, 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _Timer:
    """A one-shot timerfd on CLOCK_MONOTONIC (``time.perf_counter``'s clock on Linux) in the event loop.

    Through libc with ctypes: ``os.timerfd_create`` only exists from Python 3.13 on."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self.loop = loop
        self.waiter: asyncio.Future[None] | None = None
        loop.add_reader(self.fd, self._fired)

    async def wait(self, due: float) -> None:
        nanoseconds = max(1, round(due * 1e9))  # 0 would disarm the timer
        spec = _Itimerspec(_Timespec(0, 0), _Timespec(nanoseconds // 1_000_000_000, nanoseconds % 1_000_000_000))
        self.waiter = self.loop.create_future()
        if self.libc.timerfd_settime(self.fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")
        try:
            await self.waiter
        finally:
            self.waiter = None

    def _fired(self) -> None:
        try:
            os.read(self.fd, 8)  # the expiration count; reading it re-arms readiness
        except BlockingIOError:
            return
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def close(self) -> None:
        self.loop.remove_reader(self.fd)
        os.close(self.fd)
