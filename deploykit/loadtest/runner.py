"""Worker processes, levels (a concurrency or rate sweep), trials until stable, validity rules.

A run is **invalid** (never reported as valid, exit code 4) when the generator could not do its job:
its send lag p99 exceeded ``max_send_lag_ms`` (open loop: the schedule slipped), a worker process
used more than ``max_cpu`` of a core (not judged with ``spin`` pacing, which fills a core by design),
more than ``max_drop_rate`` of the scheduled requests were dropped at the in-flight limit, or the
measurement never stabilised within ``max_trials`` trials (see :func:`stability_rule`; only with
``require_stable``: on a shared machine it is a warning).

Stability may ask for more data; it never chooses which data counts: a level that is re-run reports
the requests of **every** trial (a stall in an unstable first trial stays in p99 and max).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field

from deploykit.errors import UsageError
from deploykit.loadtest import pacing, stats
from deploykit.loadtest.payload import Payload
from deploykit.loadtest.target import LoadTarget
from deploykit.loadtest.worker import SERVER_PARTS, WorkerPlan, WorkerResult, run_worker

STABILITY_WINDOWS = 3


@dataclass(frozen=True)
class RunSettings:
    """How to load a target. ``levels`` are concurrencies (closed loop) or rates in rps (open loop)."""

    mode: str = "closed"
    levels: tuple[float, ...] = (1,)
    arrival: str = "constant"
    #: Open loop: how a worker waits for each intended send time (timer, spin or sleep; see :mod:`.pacing`).
    pacing: str = field(default_factory=pacing.default)
    duration_s: float = 10.0
    requests: int | None = None
    warmup_s: float = 1.0
    window_s: float = 2.0
    processes: int = 1
    connections: int = 1
    max_inflight: int = 1000
    timeout_s: float = 30.0
    seed: int = 0
    max_trials: int = 3
    stability: float = 0.20
    max_send_lag_ms: float = 10.0
    max_cpu: float = 0.95
    max_drop_rate: float = 0.01
    #: Seconds to wait for a target that refuses connections (0: unreachable at once, exit 3).
    wait_ready_s: float = 0.0
    #: A level still unstable after ``max_trials`` makes the run invalid (else it is a warning: on a
    #: shared machine neighbours move the windows, and every trial's requests are reported anyway).
    require_stable: bool = False

    def check(self) -> None:
        if self.mode not in ("open", "closed"):
            raise UsageError(f"mode must be open or closed, got {self.mode!r}")
        if not self.levels or not all(math.isfinite(v) and v > 0 for v in self.levels):
            raise UsageError(f"--concurrency/--rate values must be positive, got {list(self.levels)}")
        if self.mode == "closed" and any(int(c) != c for c in self.levels):
            raise UsageError(f"--concurrency values must be integers, got {list(self.levels)}")
        if self.arrival not in ("constant", "poisson"):
            raise UsageError(f"--arrival must be constant or poisson, got {self.arrival!r}")
        pacing.check(self.pacing)
        if self.requests is None and self.duration_s <= 0:
            raise UsageError("--duration must be positive")
        if self.requests is not None and self.requests < max(1, self.processes):
            raise UsageError(f"--requests must be at least --processes ({self.processes}), got {self.requests}")
        if self.wait_ready_s < 0:
            raise UsageError(f"--wait-ready must be >= 0, got {self.wait_ready_s:g} s")
        if self.window_s <= 0 or self.warmup_s < 0 or self.processes < 1 or self.connections < 1:
            raise UsageError("--window must be positive, --warmup >= 0, --processes and --connections >= 1")


@dataclass
class LevelResult:
    """Merged measurements of one concurrency or rate."""

    mode: str
    level: float
    target_rps: float | None
    achieved_rps: float
    count: dict[str, int]
    status_codes: dict[str, int]
    latency_ms: dict[str, float | None]
    service_time_ms: dict[str, float | None]
    send_lag_ms: dict[str, float | None]
    windows: list[dict]
    stable: bool | None
    valid: bool
    invalid_reasons: list[str]
    trials: int
    client_cpu: float
    measured_s: float
    #: What the reader should know but does not invalidate the run (e.g. never stabilised).
    warnings: list[str] = field(default_factory=list)
    histograms: dict[str, str] = field(default_factory=dict)
    spectrum_ms: list[tuple[float, float]] = field(default_factory=list)
    #: Per-request split reported by the server (queue, compute, codec) and the remainder
    #: (client + network + RPC framework); empty when the server reports no timing (TF Serving).
    breakdown_ms: dict[str, dict[str, float | None]] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        total = self.count["ok"] + self.count["error"]
        return self.count["error"] / total if total else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "error_rate": self.error_rate}


def _split(total: float, parts: int, integer: bool) -> list[float]:
    if integer:
        base, extra = divmod(int(total), parts)
        return [base + (1 if i < extra else 0) for i in range(parts) if base + (1 if i < extra else 0) > 0]
    return [total / parts] * parts


def _windows(results: list[WorkerResult], window_s: float, trial: int, offset_s: float) -> list[dict]:
    count = max((len(r.window_ok) for r in results), default=0)
    windows = []
    for w in range(count):
        hist = stats.merge([r.window_latency[w] for r in results if w < len(r.window_latency)])
        ok = sum(r.window_ok[w] for r in results if w < len(r.window_ok))
        errors = sum(r.window_errors[w] for r in results if w < len(r.window_errors))
        summary = stats.summary_ms(hist)
        windows.append(
            {
                "trial": trial,
                "t_s": round(offset_s + w * window_s, 3),
                "rps": (ok + errors) / window_s,
                "ok": ok,
                "errors": errors,
                "mean_ms": summary["mean"],
                "p50_ms": summary["p50"],
                "p99_ms": summary["p99"],
            }
        )
    return windows


def stability_rule(settings: RunSettings | dict) -> str:
    """The stability rule in words, for reports (``settings`` or its dict form)."""
    get = settings.get if isinstance(settings, dict) else lambda k: getattr(settings, k)
    return (
        f"a level is stable when its last {STABILITY_WINDOWS} complete {get('window_s'):g} s windows agree within "
        f"±{get('stability'):.0%} of their mean on throughput and on p50 latency; an unstable level is re-run, "
        f"up to {get('max_trials')} trials, and every trial's requests count in the reported numbers; a level "
        f"that never stabilises {'makes the run invalid' if get('require_stable') else 'is reported with a warning'}"
    )


def _stable(windows: list[dict], tolerance: float) -> bool | None:
    """None when there are too few full windows to judge.

    The median, not the mean, is compared: on a shared machine one scheduler hiccup moves a window's
    mean by far more than 20 % and would make almost every level "unstable". Tails are not lost: every
    trial's requests are in the reported percentiles.
    """
    full = [w for w in windows if w["p50_ms"] is not None]
    # The last window may be partial (a --requests run, or a duration that is not a multiple of the
    # window), so it is left out: 3 windows before it are needed.
    if len(full) < STABILITY_WINDOWS + 1:
        return None
    last = full[-STABILITY_WINDOWS - 1 : -1]
    return stats.within([w["rps"] for w in last], tolerance) and stats.within([w["p50_ms"] for w in last], tolerance)


def _merge_level(settings: RunSettings, level: float, trial_results: list[list[WorkerResult]]) -> LevelResult:
    """Every trial's requests merged; stability judged on the last trial's windows."""
    results = [r for trial in trial_results for r in trial]
    trials = len(trial_results)
    latency = stats.merge([r.latency for r in results])
    service = stats.merge([r.service for r in results])
    lag = stats.merge([r.send_lag for r in results])
    codes: Counter = Counter()
    for r in results:
        codes.update(r.errors)
    ok = sum(r.ok for r in results)
    errors = sum(codes.values())
    dropped = sum(r.dropped for r in results)
    windows: list[dict] = []
    measured = 0.0
    for number, trial in enumerate(trial_results, start=1):
        windows += _windows(trial, settings.window_s, number, measured)
        measured += max(r.measured_s for r in trial)
    stable = _stable([w for w in windows if w["trial"] == trials], settings.stability)
    cpu = max(r.cpu_fraction for r in results)
    lag_summary = stats.summary_ms(lag)
    reasons = []
    if settings.mode == "open" and lag_summary["p99"] is not None and lag_summary["p99"] > settings.max_send_lag_ms:
        reasons.append(
            f"generator fell behind: send lag p99 {lag_summary['p99']:.1f} ms > {settings.max_send_lag_ms:g} ms"
        )
    warnings: list[str] = []
    if cpu > settings.max_cpu and settings.mode == "open" and settings.pacing == "spin":
        # Spinning fills a core by design; whether the worker kept up shows in its send lag.
        warnings.append(f"client CPU not judged: --pacing spin keeps a core busy (a worker used {cpu:.0%})")
    elif cpu > settings.max_cpu:
        reasons.append(f"client CPU saturated: a worker used {cpu:.0%} of a core (> {settings.max_cpu:.0%})")
    scheduled = ok + errors + dropped
    if scheduled and dropped / scheduled > settings.max_drop_rate:
        reasons.append(f"{dropped} of {scheduled} requests dropped at --max-inflight {settings.max_inflight}")
    if stable is False:
        (reasons if settings.require_stable else warnings).append(
            f"never stabilised in {trials} trial(s): the last {STABILITY_WINDOWS} windows' throughput or "
            f"p50 differ by more than {settings.stability:.0%}"
        )
    if ok + errors == 0:
        reasons.append("no request completed")
    return LevelResult(
        mode=settings.mode,
        level=level,
        target_rps=level if settings.mode == "open" else None,
        achieved_rps=round((ok + errors) / measured, 3) if measured else 0.0,
        count={"ok": ok, "error": errors, "dropped": dropped},
        status_codes={"OK": ok, **dict(codes)},
        latency_ms=stats.summary_ms(latency),
        service_time_ms=stats.summary_ms(service),
        send_lag_ms=lag_summary,
        windows=windows,
        stable=stable,
        valid=not reasons,
        invalid_reasons=reasons,
        warnings=warnings,
        trials=trials,
        client_cpu=round(cpu, 3),
        measured_s=round(measured, 3),
        histograms={"latency": stats.blob(latency), "service_time": stats.blob(service), "send_lag": stats.blob(lag)},
        spectrum_ms=stats.spectrum_ms(latency),
        breakdown_ms={
            part: stats.summary_ms(stats.merge([r.server[part] for r in results if part in r.server]))
            for part in SERVER_PARTS
            if any(part in r.server for r in results)
        },
    )


#: How often a worker process checks that the process that started it still exists.
PARENT_POLL_S = 0.5


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: end this process as soon as its parent (pid ``parent``, passed in: the
    parent may already be gone when this runs) is gone, killed with SIGKILL say, instead of sending
    load for the rest of the level to nobody."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


@dataclass(frozen=True)
class TrialDone:
    """Progress: one trial of a level finished; ``result`` merges every trial of the level so far."""

    level: float
    trial: int
    max_trials: int
    result: LevelResult

    def line(self, mode: str) -> str:
        """One progress line, e.g. ``concurrency 4, trial 1/3: 812.5 rps, p50 1.21 ms, p99 3.4 ms``."""
        r = self.result
        what = f"rate {self.level:g} rps" if mode == "open" else f"concurrency {self.level:g}"
        p50, p99 = r.latency_ms["p50"], r.latency_ms["p99"]
        verdict = "stable" if r.stable else "too short to judge stability" if r.stable is None else "not stable yet"
        return (
            f"{what}, trial {self.trial}/{self.max_trials}: {r.achieved_rps:.1f} rps, "
            f"p50 {'-' if p50 is None else f'{p50:.3g} ms'}, p99 {'-' if p99 is None else f'{p99:.3g} ms'} so far "
            f"({r.count['ok']} ok, {r.count['error']} errors, {r.count['dropped']} dropped; {verdict})"
        )


class Runner:
    """Runs levels on a pool of spawned worker processes (spawned, so no gRPC state is inherited)."""

    def __init__(self, settings: RunSettings) -> None:
        settings.check()
        self.settings = settings
        self.pool = ProcessPoolExecutor(
            settings.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        )

    def run_level(
        self, payload: Payload, target: LoadTarget, level: float, progress: Callable[[TrialDone], None] | None = None
    ) -> LevelResult:
        """Run ``level`` until stable (at most ``max_trials`` trials); every trial's requests count."""
        s = self.settings
        shares = _split(level, s.processes, integer=s.mode == "closed")
        requests = _split(s.requests, len(shares), integer=True) if s.requests else [None] * len(shares)
        trials: list[list[WorkerResult]] = []
        while True:
            trial = len(trials) + 1
            start_at = time.time() + 0.3 + 0.05 * len(shares)  # every process starts the plan together
            plans = [
                WorkerPlan(
                    endpoint=target.endpoint,
                    tls=target.tls,
                    path=payload.path,
                    body=payload.body,
                    headers=payload.metadata if target.is_rest else (),
                    mode=s.mode,
                    concurrency=int(share) if s.mode == "closed" else 1,
                    rate=share if s.mode == "open" else 0.0,
                    arrival=s.arrival,
                    pacing=s.pacing,
                    start_at=start_at,
                    warmup_s=s.warmup_s,
                    duration_s=s.duration_s,
                    window_s=s.window_s,
                    requests=int(n) if n else None,
                    max_inflight=max(1, math.ceil(s.max_inflight / len(shares))),
                    connections=s.connections,
                    timeout_s=s.timeout_s,
                    seed=s.seed * 1000 + i + trial * 7919,
                )
                for i, (share, n) in enumerate(zip(shares, requests, strict=True))
            ]
            trials.append(list(self.pool.map(run_worker, plans)))
            result = _merge_level(s, level, trials)
            if progress:
                progress(TrialDone(level, trial, s.max_trials, result))
            if result.stable is not False or trial >= s.max_trials:
                return result

    def run(
        self, payload: Payload, target: LoadTarget, progress: Callable[[TrialDone], None] | None = None
    ) -> list[LevelResult]:
        return [self.run_level(payload, target, level, progress) for level in self.settings.levels]

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
