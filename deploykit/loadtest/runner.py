"""Worker processes, levels (a concurrency or rate sweep), trials until stable, validity rules.

A run is **invalid** (never reported as valid, exit code 4) when the generator could not do its job:
its send lag p99 exceeded ``max_send_lag_ms`` (open loop: the schedule slipped), a worker process
used more than ``max_cpu`` of a core, more than ``max_drop_rate`` of the scheduled requests were
dropped at the in-flight limit, or the measurement never stabilised within ``max_trials`` trials
(stability: the last 3 windows agree within ``stability`` on throughput and mean latency).
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field

from deploykit.errors import UsageError
from deploykit.loadtest import stats
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
    stability: float = 0.10
    max_send_lag_ms: float = 10.0
    max_cpu: float = 0.95
    max_drop_rate: float = 0.01

    def check(self) -> None:
        if self.mode not in ("open", "closed"):
            raise UsageError(f"mode must be open or closed, got {self.mode!r}")
        if not self.levels or not all(math.isfinite(v) and v > 0 for v in self.levels):
            raise UsageError(f"--concurrency/--rate values must be positive, got {list(self.levels)}")
        if self.mode == "closed" and any(int(c) != c for c in self.levels):
            raise UsageError(f"--concurrency values must be integers, got {list(self.levels)}")
        if self.arrival not in ("constant", "poisson"):
            raise UsageError(f"--arrival must be constant or poisson, got {self.arrival!r}")
        if self.requests is None and self.duration_s <= 0:
            raise UsageError("--duration must be positive")
        if self.requests is not None and self.requests < max(1, self.processes):
            raise UsageError(f"--requests must be at least --processes ({self.processes}), got {self.requests}")
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


def _windows(results: list[WorkerResult], window_s: float) -> list[dict]:
    count = max((len(r.window_ok) for r in results), default=0)
    windows = []
    for w in range(count):
        hist = stats.merge([r.window_latency[w] for r in results if w < len(r.window_latency)])
        ok = sum(r.window_ok[w] for r in results if w < len(r.window_ok))
        errors = sum(r.window_errors[w] for r in results if w < len(r.window_errors))
        summary = stats.summary_ms(hist)
        windows.append(
            {
                "t_s": round(w * window_s, 3),
                "rps": (ok + errors) / window_s,
                "ok": ok,
                "errors": errors,
                "mean_ms": summary["mean"],
                "p50_ms": summary["p50"],
                "p99_ms": summary["p99"],
            }
        )
    return windows


def _stable(windows: list[dict], tolerance: float) -> bool | None:
    """None when there are too few full windows to judge."""
    full = [w for w in windows if w["mean_ms"] is not None]
    # The last window may be partial (a --requests run, or a duration that is not a multiple of the
    # window), so it is left out: 3 windows before it are needed.
    if len(full) < STABILITY_WINDOWS + 1:
        return None
    last = full[-STABILITY_WINDOWS - 1 : -1]
    return stats.within([w["rps"] for w in last], tolerance) and stats.within([w["mean_ms"] for w in last], tolerance)


def _merge_level(settings: RunSettings, level: float, results: list[WorkerResult], trials: int) -> LevelResult:
    latency = stats.merge([r.latency for r in results])
    service = stats.merge([r.service for r in results])
    lag = stats.merge([r.send_lag for r in results])
    codes: Counter = Counter()
    for r in results:
        codes.update(r.errors)
    ok = sum(r.ok for r in results)
    errors = sum(codes.values())
    dropped = sum(r.dropped for r in results)
    measured = max(r.measured_s for r in results)
    windows = _windows(results, settings.window_s)
    stable = _stable(windows, settings.stability)
    cpu = max(r.cpu_fraction for r in results)
    lag_summary = stats.summary_ms(lag)
    reasons = []
    if settings.mode == "open" and lag_summary["p99"] is not None and lag_summary["p99"] > settings.max_send_lag_ms:
        reasons.append(
            f"generator fell behind: send lag p99 {lag_summary['p99']:.1f} ms > {settings.max_send_lag_ms:g} ms"
        )
    if cpu > settings.max_cpu:
        reasons.append(f"client CPU saturated: a worker used {cpu:.0%} of a core (> {settings.max_cpu:.0%})")
    scheduled = ok + errors + dropped
    if scheduled and dropped / scheduled > settings.max_drop_rate:
        reasons.append(f"{dropped} of {scheduled} requests dropped at --max-inflight {settings.max_inflight}")
    if stable is False:
        reasons.append(
            f"never stabilised in {trials} trial(s): last {STABILITY_WINDOWS} windows differ by more "
            f"than {settings.stability:.0%}"
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


class Runner:
    """Runs levels on a pool of spawned worker processes (spawned, so no gRPC state is inherited)."""

    def __init__(self, settings: RunSettings) -> None:
        settings.check()
        self.settings = settings
        self.pool = ProcessPoolExecutor(settings.processes, mp_context=multiprocessing.get_context("spawn"))

    def run_level(self, payload: Payload, target: LoadTarget, level: float) -> LevelResult:
        s = self.settings
        shares = _split(level, s.processes, integer=s.mode == "closed")
        requests = _split(s.requests, len(shares), integer=True) if s.requests else [None] * len(shares)
        trial = 0
        while True:
            trial += 1
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
            results = list(self.pool.map(run_worker, plans))
            result = _merge_level(s, level, results, trial)
            if result.stable is not False or trial >= s.max_trials:
                return result

    def run(
        self, payload: Payload, target: LoadTarget, progress: Callable[[float, LevelResult | None], None] | None = None
    ) -> list[LevelResult]:
        results = []
        for level in self.settings.levels:
            if progress:
                progress(level, None)
            results.append(self.run_level(payload, target, level))
            if progress:
                progress(level, results[-1])
        return results

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
