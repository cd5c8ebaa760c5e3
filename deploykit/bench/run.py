"""``deploykit bench``: starts the servers it needs on loopback, measures, returns the results.

Every ratio in the report comes from the same run and the same client (:mod:`deploykit.bench.probe`,
an independent process). The machine's load is recorded: on a shared machine, compare ratios.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.bench import extras, models, peers, servers
from deploykit.native import available as native_available

TENSOR_CONTENT = "x-deploykit-tensor-content=1"


@dataclass
class Settings:
    repo: Path | None = None
    duration: float = 5.0
    warmup: float = 1.0
    quick: bool = False
    #: Sections of :mod:`.extras` to run (None: all, none in quick mode).
    sections: tuple[str, ...] | None = None
    peers: bool = True  # MLServer and KServe's ModelServer over v2 (deploykit.bench.peers)
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="deploykit-bench-")))


def measure(
    target: str,
    request_file: Path,
    concurrency: int,
    settings: Settings,
    connections: int = 1,
    protocol: str = "tfserving",
) -> dict:
    """p50/p99 (ms) and requests/s of one closed-loop point, from the independent client process
    (``connections`` per client process). ``protocol``: ``tfserving`` (Predict, answers in tensor_content)
    or ``v2`` (ModelInfer, raw contents)."""
    processes = 1 if concurrency == 1 else 2
    command = [
        sys.executable, "-m", "deploykit.bench.probe", "--target", target, "--request", str(request_file),
        "--protocol", protocol, "--concurrency", str(concurrency), "--processes", str(processes),
        "--warmup", str(settings.warmup), "--duration", str(settings.duration), "--connections", str(connections),
        *(["--metadata", TENSOR_CONTENT] if protocol == "tfserving" else []),
    ]  # fmt: skip
    result = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    latencies = np.array(result["latencies_us"] or [0]) / 1000
    return {
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "rps": result["requests"] / result["seconds"],
        "errors": result["errors"],
        "concurrency": concurrency,
    }


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "cpu": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_start": os.getloadavg(),
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def run(settings: Settings) -> dict:
    """All rows; a row that cannot run here says why (``skipped``)."""
    work = settings.work_dir
    repo = models.prepare(settings.repo, work / "models", quick=settings.quick)
    cases = models.cases(repo, work, quick=settings.quick)
    results: dict = {"machine": machine(), "settings": {"duration_s": settings.duration, "quick": settings.quick}}
    _progress("building the native floor")
    floor_binary, floor_reason = servers.build_floor(work / "bin")
    planes = ["native", "python"] if native_available() else ["python"]
    results["dataplanes"] = planes
    _progress("transport floors")
    results["floors"] = _floors(floor_binary, floor_reason, cases[0], settings)
    _progress(f"serving overhead: {len(cases)} models x {len(planes)} data planes")
    results["serving"] = _serving(repo, cases, planes, floor_binary, settings)
    _progress("cold start and RSS")
    results["cold_start"] = _cold_start(repo, cases[0], planes, work)
    _progress("peers" if settings.peers else "peers: skipped (--no-peers)")
    results["peers"], results["not_run"] = peers.measure(repo, cases, planes, settings)
    _progress("generator capacity, batching and workers, cross-check (those selected)")
    extras.run(
        results, repo=repo, cases=cases, dataplane=planes[0], floor_binary=floor_binary, floor_reason=floor_reason,
        settings=settings, measure_point=functools.partial(measure, settings=settings),
    )  # fmt: skip
    results["machine"]["load_average_end"] = os.getloadavg()
    return results


def _progress(step: str) -> None:
    """One line per section on stderr: a full run takes 10-15 minutes."""
    print(f"bench: {step} ...", file=sys.stderr, flush=True)


def _floors(binary, reason: str, case, settings: Settings) -> dict:
    rows: dict[str, dict[str, Any]] = {}
    starters = {"python grpc.aio floor": lambda: servers.start_python_floor(case.response_bytes)}
    if binary is not None:
        starters["native C++ floor"] = lambda: servers.start_native_floor(binary, case.response_bytes)
    else:
        rows["native C++ floor"] = {"skipped": reason}
    for name, start in starters.items():
        proc = start()
        try:
            servers.wait_answer(proc, case.request)
            rows[name] = {f"c{c}": measure(proc.target, case.request_file, c, settings) for c in (1, 32)}
        finally:
            proc.stop()
    return rows


def _serving(repo: Path, cases, planes, floor_binary, settings: Settings) -> list[dict]:
    """Per model and data plane: p50 at c=1 against floor + compute, throughput at c=32 against the floor."""
    rows = []
    running = {plane: servers.start_serve(repo, plane) for plane in planes}
    try:
        for proc in running.values():
            servers.wait_answer(proc, cases[0].request)
        for case in cases:
            floor = {}
            if floor_binary is not None:
                proc = servers.start_native_floor(floor_binary, case.response_bytes)
                try:
                    servers.wait_answer(proc, case.request)
                    floor = {f"c{c}": measure(proc.target, case.request_file, c, settings) for c in case.levels}
                finally:
                    proc.stop()
            compute = models.compute_p50_ms(case)
            for plane, proc in running.items():
                points = {f"c{c}": measure(proc.target, case.request_file, c, settings) for c in case.levels}
                rows.append(
                    {"model": case.name, "dataplane": plane, "compute_p50_ms": compute, "floor": floor, **points}
                )
            for plane, proc in running.items():
                rows_for = [r for r in rows if r["dataplane"] == plane]
                rows_for[-1]["rss_mb"] = servers.rss_mb(proc.process.pid)
    finally:
        for proc in running.values():
            proc.stop()
    return rows


def _cold_start(repo: Path, case, planes, work: Path) -> list[dict]:
    """Process start to first answer, and RSS after 200 requests, serving one ONNX model."""
    single = work / "single"
    if not single.exists():
        single.mkdir(parents=True)
        (single / case.name).symlink_to((repo / case.name).resolve())
    rows = []
    for plane in planes:
        started = time.perf_counter()
        proc = servers.start_serve(single, plane)
        try:
            servers.wait_answer(proc, case.request)
            first = time.perf_counter() - started
            for _ in range(200):
                servers.wait_answer(proc, case.request)
            rows.append({"dataplane": plane, "model": case.name, "first_answer_s": first,
                         "rss_mb": servers.rss_mb(proc.process.pid)})  # fmt: skip
        finally:
            proc.stop()
    return rows
