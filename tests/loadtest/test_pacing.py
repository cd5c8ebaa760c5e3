"""Open-loop pacing (``deploykit loadtest --pacing timer|spin|sleep``): the decision is checked with a fake
clock; waits only for what holds by construction (never early, the loop keeps running); no timing asserts."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from deploykit.errors import UsageError
from deploykit.loadtest import pacing
from deploykit.loadtest.runner import RunSettings, _merge_level
from deploykit.loadtest.worker import WorkerPlan, _open_loop, _Recorder
from deploykit.report import loadtest as report

pytestmark = pytest.mark.lean
MS = 0.001


@pytest.mark.parametrize("method", pacing.PACINGS)
def test_a_due_or_late_request_is_sent_at_once(method: str) -> None:
    assert pacing.decide(method, now=10.0, due=10.0) == ("send", 0.0)
    assert pacing.decide(method, now=10.5, due=10.0) == ("send", 0.0)


def test_sleep_and_timer_wait_the_whole_gap_in_one_step() -> None:
    assert pacing.decide("sleep", now=10.0, due=10.0 + 3.5 * MS) == ("sleep", pytest.approx(3.5 * MS))
    assert pacing.decide("timer", now=10.0, due=10.0 + 0.02 * MS) == ("timer", 10.0 + 0.02 * MS)


@pytest.mark.parametrize(
    ("left_ms", "step", "sleep_ms"),
    [(3.5, "sleep", 3), (1.3, "sleep", 1), (1.1, "yield", 0), (0.9, "yield", 0), (0.001, "yield", 0)],
)
def test_spin_sleeps_whole_milliseconds_then_yields(left_ms: float, step: str, sleep_ms: int) -> None:
    found, value = pacing.decide("spin", now=100.0, due=100.0 + left_ms * MS)
    assert found == step
    if step == "sleep":
        assert math.ceil(value * 1e3) == sleep_ms  # what the selector makes of it


def test_spin_never_sleeps_past_the_margin_before_the_due_time() -> None:
    """Whatever the gap, the selector's rounding up to whole milliseconds still wakes the loop at least
    SPIN_MARGIN_S before the due time, so the last stretch is always yielded, never slept."""
    now = 12345.678
    for micros in range(1, 20_000, 7):
        left = micros * 1e-6
        step, value = pacing.decide("spin", now=now, due=now + left)
        if step == "sleep":
            assert math.ceil(value * 1e3) * 1e-3 <= left - pacing.SPIN_MARGIN_S + 1e-9, left
        else:
            assert step == "yield" and left < pacing.SELECTOR_TICK_S + pacing.SPIN_MARGIN_S, left


@pytest.mark.parametrize("method", pacing.PACINGS)
def test_a_wait_never_ends_early_and_the_loop_keeps_running(method: str) -> None:
    async def wait() -> tuple[float, float, bool]:
        ran = asyncio.Event()
        asyncio.get_running_loop().call_soon(ran.set)  # stands for an answer arriving during the wait
        pacer = pacing.Pacer(method)
        try:
            due = time.perf_counter() + 3 * MS
            await pacer.wait_until(due)
            await pacer.wait_until(due + 0.5 * MS)  # the timer is re-armed
            return time.perf_counter(), due + 0.5 * MS, ran.is_set()
        finally:
            pacer.close()

    woke, due, ran = asyncio.run(wait())
    assert woke >= due
    assert ran


def test_unknown_pacing_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--pacing must be auto, timer, spin or sleep, got 'busy'"):
        RunSettings(mode="open", levels=(10,), pacing="busy").check()
    assert pacing.resolve("auto") == pacing.default() == "timer"  # Linux: the kernel timer
    assert RunSettings().pacing == "timer"


class _IssueRecorder:
    """A sender standing in for gRPC's: records which task issued each request."""

    def __init__(self) -> None:
        self.issued_by: list[asyncio.Task | None] = []

    def issue(self):
        self.issued_by.append(asyncio.current_task())

        async def answer() -> tuple[None, None]:
            return None, None

        return answer()


def test_due_requests_are_issued_by_the_pacing_loop_itself() -> None:
    """Not by a per-request task that first runs one loop iteration later (its wait would count as send lag)."""
    plan = WorkerPlan(endpoint="grpc://unused", path="/p", body=b"", mode="open", rate=2000, requests=20)
    sender, recorder = _IssueRecorder(), _Recorder(1.0)

    async def run() -> asyncio.Task | None:
        start = time.perf_counter()
        await _open_loop(plan, sender, recorder, start, start, float("inf"))
        return asyncio.current_task()

    pacing_task = asyncio.run(run())
    assert len(sender.issued_by) == 20 and set(sender.issued_by) == {pacing_task}
    assert recorder.ok == 20


def _level(method: str, cpu: float):
    recorder = _Recorder(1.0)
    recorder.record(0.1, 0.002, 0.001, 0.0001, None)
    settings = RunSettings(mode="open", levels=(100,), pacing=method)
    return _merge_level(settings, 100, [[recorder.result(1.0, cpu)]])


def test_spin_is_not_judged_by_its_cpu_and_says_so() -> None:
    spin = _level("spin", 0.99)
    assert spin.valid and "client CPU not judged: --pacing spin keeps a core busy" in spin.warnings[0]
    timer = _level("timer", 0.99)
    assert not timer.valid and "client CPU saturated" in timer.invalid_reasons[0]


@pytest.mark.parametrize("method", pacing.PACINGS)
def test_the_report_names_the_pacing_of_an_open_loop(method: str) -> None:
    level = {**_level(method, 0.1).to_dict(), "target": "grpc://h:1/m"}
    settings = {"mode": "open", "pacing": method, "window_s": 1, "stability": 0.2, "max_trials": 1}
    built = report.build("grpc://h:1/m", "engine", {"bytes": 1}, {**settings, "require_stable": False}, [level], [])
    assert built["pacing"] == pacing.describe(method)
    assert f"Open-loop pacing: {method} (" in report.to_markdown(built)
    closed = report.build("t", "e", {}, {**settings, "mode": "closed", "require_stable": False}, [level], [])
    assert closed["pacing"] is None and "pacing" not in report.to_markdown(closed)
