"""One load-generating process: an asyncio event loop sending pre-serialised requests.

Open loop (``mode="open"``): requests are *scheduled* at ``start + i/rate`` (or Poisson gaps), and the
schedule is never pushed back by slow answers. The worker waits for each intended send time as
``plan.pacing`` says (:mod:`.pacing`) and issues the due requests from that same loop. Latency is
measured from the **intended** send time (coordinated-omission corrected, as wrk2); service time from
the moment the request was handed to the client library; send lag, between the two, is how late the
generator itself was. A request that would exceed ``max_inflight`` is counted as dropped.

Closed loop (``mode="closed"``): ``concurrency`` users each send the next request when the previous
one is answered; latency = service time.

Everything is recorded in HDR histograms (1 µs .. 60 s, 3 significant digits) per measurement window
and returned encoded, so the parent merges processes losslessly.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field

import numpy as np
from hdrh.histogram import HdrHistogram

from deploykit.loadtest import pacing
from deploykit.protocol.wire import SERVER_TIMING_KEY, grpc_message_limits, parse_server_timing
from deploykit.tls import ClientTls

LOWEST_US, HIGHEST_US, DIGITS = 1, 60_000_000, 3


#: Parts of a request's time, from the server's Server-Timing answer: queue wait, model compute,
#: tensor decode+encode, and the rest (client + network + RPC framework) = service time - server time.
SERVER_PARTS = ("queue", "compute", "codec", "client_network")


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def _us(seconds: float) -> int:
    return min(max(int(seconds * 1e6), LOWEST_US), HIGHEST_US)


@dataclass(frozen=True)
class WorkerPlan:
    """What one process sends (picklable: it crosses the process boundary)."""

    endpoint: str  # grpc(s)://host:port or http(s)://host:port
    path: str
    body: bytes
    mode: str  # "open" or "closed"
    concurrency: int = 1
    rate: float = 0.0
    arrival: str = "constant"  # or "poisson"
    start_at: float = 0.0  # time.time() at which all processes start together
    warmup_s: float = 0.0
    duration_s: float = 10.0
    window_s: float = 1.0
    requests: int | None = None  # measured requests to send (instead of a duration)
    max_inflight: int = 1000
    connections: int = 1
    timeout_s: float = 30.0
    seed: int = 0
    tls: ClientTls | None = None  # grpcs:// and https:// endpoints
    headers: tuple[tuple[str, str], ...] = ()  # REST request headers of the payload (v2 binary extension)
    pacing: str = field(default_factory=pacing.default)  # open loop: how intended send times are waited for


@dataclass
class WorkerResult:
    """Encoded histograms and counts of one process."""

    latency: bytes = b""
    service: bytes = b""
    send_lag: bytes = b""
    window_latency: list[bytes] = field(default_factory=list)
    window_ok: list[int] = field(default_factory=list)
    window_errors: list[int] = field(default_factory=list)
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    measured_s: float = 0.0
    cpu_fraction: float = 0.0
    server: dict[str, bytes] = field(default_factory=dict)


class _Recorder:
    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.latency, self.service, self.send_lag = new_histogram(), new_histogram(), new_histogram()
        #: Server-reported split (deploykit serve sends a Server-Timing header/trailer; TF Serving does not).
        self.server = {part: new_histogram() for part in SERVER_PARTS}
        self.windows: dict[int, HdrHistogram] = {}
        self.window_ok: Counter = Counter()
        self.window_errors: Counter = Counter()
        self.errors: Counter = Counter()
        self.ok = 0
        self.dropped = 0

    def record(
        self,
        since_start: float,
        latency: float,
        service: float,
        lag: float,
        error: str | None,
        server: dict[str, float] | None = None,
    ) -> None:
        window = int(since_start // self.window_s)
        self.send_lag.record_value(_us(lag))
        if error is not None:
            self.errors[error] += 1
            self.window_errors[window] += 1
            return
        self.ok += 1
        self.window_ok[window] += 1
        self.latency.record_value(_us(latency))
        self.service.record_value(_us(service))
        if server:
            inside = (
                server.get("decode", 0.0)
                + server.get("queue", 0.0)
                + server.get("compute", 0.0)
                + server.get("encode", 0.0)
            )
            self.server["queue"].record_value(_us(server.get("queue", 0.0)))
            self.server["compute"].record_value(_us(server.get("compute", 0.0)))
            self.server["codec"].record_value(_us(server.get("decode", 0.0) + server.get("encode", 0.0)))
            self.server["client_network"].record_value(_us(max(service - inside, 0.0)))
        self.windows.setdefault(window, new_histogram()).record_value(_us(latency))

    def result(self, measured_s: float, cpu_fraction: float) -> WorkerResult:
        count = max([*self.windows, *self.window_ok, *self.window_errors], default=-1) + 1
        return WorkerResult(
            latency=self.latency.encode(),
            service=self.service.encode(),
            send_lag=self.send_lag.encode(),
            window_latency=[self.windows.get(w, new_histogram()).encode() for w in range(count)],
            window_ok=[self.window_ok[w] for w in range(count)],
            window_errors=[self.window_errors[w] for w in range(count)],
            ok=self.ok,
            errors=dict(self.errors),
            dropped=self.dropped,
            measured_s=measured_s,
            cpu_fraction=cpu_fraction,
            server={part: h.encode() for part, h in self.server.items() if h.get_total_count()},
        )


class _GrpcSender:
    """Raw-bytes unary calls over ``connections`` channels (no per-request serialisation)."""

    def __init__(self, plan: WorkerPlan) -> None:
        import grpc

        self.grpc = grpc
        address = plan.endpoint.split("://", 1)[1]
        options = [*grpc_message_limits(), ("grpc.use_local_subchannel_pool", 1)]  # a real connection per channel
        if plan.tls is None:
            self.channels = [grpc.aio.insecure_channel(address, options=options) for _ in range(plan.connections)]
        else:
            credentials = plan.tls.grpc_credentials()
            self.channels = [
                grpc.aio.secure_channel(address, credentials, options=options) for _ in range(plan.connections)
            ]
        self.calls = [channel.unary_unary(plan.path) for channel in self.channels]
        self.body, self.timeout, self.turn = plan.body, plan.timeout_s, 0

    def issue(self) -> Awaitable[tuple[str | None, dict[str, float] | None]]:
        """Start a call now (gRPC queues it before this returns); the returned awaitable answers it."""
        self.turn += 1
        return self._answer(self.calls[self.turn % len(self.calls)](self.body, timeout=self.timeout))

    async def send(self) -> tuple[str | None, dict[str, float] | None]:
        return await self.issue()

    async def _answer(self, call) -> tuple[str | None, dict[str, float] | None]:
        try:
            await call
        except self.grpc.RpcError as err:
            return err.code().name, None
        trailers = await call.trailing_metadata()
        return None, parse_server_timing(trailers.get(SERVER_TIMING_KEY) if trailers else None)

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


class _RestSender:
    """POSTs of a pre-encoded JSON body over a keep-alive connection pool."""

    def __init__(self, plan: WorkerPlan) -> None:
        import aiohttp

        self.aiohttp = aiohttp
        self.session = aiohttp.ClientSession(
            # one keep-alive connection per concurrent request
            connector=aiohttp.TCPConnector(limit=0, ssl=plan.tls.ssl_context() if plan.tls else True),
            timeout=aiohttp.ClientTimeout(total=plan.timeout_s),
        )
        self.url = plan.endpoint + plan.path
        self.body = plan.body
        self.headers = {"Content-Type": "application/json", **dict(plan.headers)}

    def issue(self) -> Awaitable[tuple[str | None, dict[str, float] | None]]:
        """The POST, started when awaited (aiohttp has no synchronous start)."""
        return self.send()

    async def send(self) -> tuple[str | None, dict[str, float] | None]:
        try:
            async with self.session.post(self.url, data=self.body, headers=self.headers) as response:
                await response.read()
                if response.status != 200:
                    return f"HTTP {response.status}", None
                return None, parse_server_timing(response.headers.get(SERVER_TIMING_KEY))
        except TimeoutError:
            return "DEADLINE_EXCEEDED", None
        except self.aiohttp.ClientError:
            return "UNAVAILABLE", None

    async def close(self) -> None:
        await self.session.close()


async def _run(plan: WorkerPlan) -> WorkerResult:
    sender = _RestSender(plan) if plan.endpoint.startswith("http") else _GrpcSender(plan)
    recorder = _Recorder(plan.window_s)
    await asyncio.sleep(max(0.0, plan.start_at - time.time()))
    start = time.perf_counter()
    measure_from = start + plan.warmup_s
    end = measure_from + plan.duration_s if plan.requests is None else float("inf")
    cpu_start = time.process_time()
    try:
        if plan.mode == "open":
            await _open_loop(plan, sender, recorder, start, measure_from, end)
        else:
            await _closed_loop(plan, sender, recorder, measure_from, end)
    finally:
        await sender.close()
    stop = time.perf_counter()
    measured = max(stop - measure_from, 1e-9) if plan.requests is not None else plan.duration_s
    cpu = (time.process_time() - cpu_start) / max(stop - start, 1e-9)
    return recorder.result(measured, cpu)


async def _open_loop(
    plan: WorkerPlan, sender, recorder: _Recorder, start: float, measure_from: float, end: float
) -> None:
    schedule = _Schedule(plan, start, end)
    inflight: set[asyncio.Task] = set()
    answered = asyncio.Event()  # a request in flight was answered: room under max_inflight

    def settled(task: asyncio.Task) -> None:
        inflight.discard(task)
        answered.set()

    async def one(intended: float, actual: float, answer: Awaitable) -> None:
        error, server = await answer
        done = time.perf_counter()
        if intended >= measure_from:
            recorder.record(intended - measure_from, done - intended, done - actual, actual - intended, error, server)

    pacer = pacing.Pacer(plan.pacing)
    try:
        while not schedule.finished:
            # Everything due by now: as many as the in-flight limit allows are sent, the rest counted as
            # dropped in one step (at an absurd rate a request-by-request loop would never catch up).
            due, dropped = schedule.due(time.perf_counter(), plan.max_inflight - len(inflight), measure_from)
            recorder.dropped += dropped
            for intended in due:
                # Issued here, not in the task (which first runs one loop iteration later): send lag
                # is the pacing's lateness, the client library's own scheduling is service time.
                actual = time.perf_counter()
                task = asyncio.create_task(one(intended, actual, sender.issue()))
                inflight.add(task)
                task.add_done_callback(settled)
            if len(inflight) >= plan.max_inflight and not schedule.finished:
                # Full: nothing can leave before an answer comes (what falls due meanwhile is counted as
                # dropped on waking), so wait for one instead of waking at every due time for nothing.
                answered.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(answered.wait(), None if end == math.inf else end - time.perf_counter())
                continue
            # Never wait past the end of the run (a rate of 0.0001/s schedules its next request hours away).
            await pacer.wait_until(min(schedule.next_at, end))
    finally:
        pacer.close()
    if inflight:
        await asyncio.wait(inflight, timeout=plan.timeout_s + 1)


class _Schedule:
    """Intended send times of an open-loop plan: constant gaps or Poisson arrivals, from ``start``
    until ``end`` (or until the warm-up plus ``plan.requests`` requests were scheduled)."""

    def __init__(self, plan: WorkerPlan, start: float, end: float) -> None:
        self.rng = np.random.default_rng(plan.seed)
        self.interval = 1.0 / plan.rate
        self.poisson = plan.arrival == "poisson"
        self.end = end
        self.remaining = float("inf") if plan.requests is None else int(plan.warmup_s * plan.rate) + plan.requests
        self.start, self.index = start, 0  # constant gaps: start + index * interval (no drift from summing)
        self.next_at = start

    @property
    def finished(self) -> bool:
        return self.remaining <= 0 or self.next_at >= self.end

    def _advance(self, count: int = 1) -> None:
        self.remaining -= count
        self.index += count
        if self.poisson:
            self.next_at += self.rng.exponential(self.interval)
        else:
            self.next_at = self.start + self.index * self.interval

    def due(self, now: float, capacity: int, measure_from: float) -> tuple[list[float], int]:
        """Intended times due by ``now`` that may be sent (at most ``capacity``), and how many more were
        due and are dropped (counted only when they fall in the measured part)."""
        horizon = min(now, self.end)
        send: list[float] = []
        while len(send) < max(capacity, 0) and self.next_at <= horizon and not self.finished:
            send.append(self.next_at)
            self._advance()
        if self.next_at > horizon or self.finished:
            return send, 0
        # Over the in-flight limit: count the requests due in [next_at, horizon] without a loop.
        if self.poisson:  # a Poisson process: counts in disjoint spans are independent Poisson draws
            before = max(0.0, min(measure_from, horizon) - self.next_at)
            after = horizon - self.next_at - before
            n_before = self.rng.poisson(before / self.interval) + (1 if self.next_at < measure_from else 0)
            n_after = self.rng.poisson(after / self.interval) + (0 if self.next_at < measure_from else 1)
            skipped = min(n_before + n_after, self.remaining)
            self.remaining -= skipped
            self.next_at = horizon + self.rng.exponential(self.interval)
        else:
            total = math.floor((horizon - self.next_at) / self.interval) + 1
            n_before = min(total, max(0, math.ceil((measure_from - self.next_at) / self.interval)))
            n_after = total - n_before
            skipped = int(min(total, self.remaining))  # remaining may be inf; total is finite
            self._advance(skipped)
        measured = min(n_after, max(0, skipped - n_before))
        return send, int(measured)


async def _closed_loop(plan: WorkerPlan, sender, recorder: _Recorder, measure_from: float, end: float) -> None:
    budget = [plan.requests] if plan.requests is not None else None

    async def user() -> None:
        while time.perf_counter() < end:
            started = time.perf_counter()
            measured = started >= measure_from
            if measured and budget is not None:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
            error, server = await sender.send()
            done = time.perf_counter()
            if measured:
                recorder.record(started - measure_from, done - started, done - started, 0.0, error, server)

    await asyncio.gather(*(user() for _ in range(plan.concurrency)))


def run_worker(plan: WorkerPlan) -> WorkerResult:
    """Process entry point (module-level so a spawned process can import it)."""
    return asyncio.run(_run(plan))
