"""An independent cross-check: Triton's C++ ``perf_analyzer`` (``--service-kind=tfserving``) against the
same ``deploykit serve`` as the bench's probe and ``deploykit loadtest``, at concurrency 1 and 32.

``perf_analyzer`` ships as a binary in the ``tritonclient==2.41.0`` wheel (later wheels dropped it). It
is installed in a prefix of its own under ``~/.cache/deploykit`` (never beside deploykit: the project
pins a newer tritonclient), needs ``libcudart.so.12`` (from ``nvidia-cuda-runtime-cu12``, put on
``LD_LIBRARY_PATH``) and Debian's ``libb64-0d`` (installed with apt when missing and allowed).

Inputs: a directory with one raw file per input (``--input-data DIR``). perf_analyzer 2.41.0 accepts
a JSON data file in tfserving mode but then sends empty ``float_val`` fields (the server answers
"float_val holds 0 value(s)"), so the raw form is the one that works. perf_analyzer sends the
tensor as ``float_val`` and reads typed answers; the probe sends ``tensor_content`` and asks for
``tensor_content`` answers; ``deploykit loadtest`` sends ``tensor_content`` and reads typed answers.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from deploykit.bench import generator, peer_envs, servers

PINS = ["tritonclient==2.41.0", "nvidia-cuda-runtime-cu12==12.9.79"]
#: An installation prefix of its own (``pip install --prefix``): bin/perf_analyzer, lib/.../libcudart.so.12.
PREFIX = Path(
    os.environ.get("DEPLOYKIT_PERF_ANALYZER_PREFIX", Path.home() / ".cache" / "deploykit" / "perf-analyzer-2.41.0")
)
LEVELS = (1, 32)


class Unavailable(Exception):
    """perf_analyzer cannot run here; the message says precisely why."""


def _cudart_dir(prefix: Path) -> Path:
    return next(prefix.glob("lib/python3*/site-packages/nvidia/cuda_runtime/lib"), prefix / "missing-cudart")


def ensure_env(timeout_s: float = 600) -> tuple[Path, dict[str, str]]:
    """The perf_analyzer binary and the environment it runs in, building its directory (once per
    machine; built beside its place and renamed, so a failed install leaves nothing)."""
    binary = PREFIX / "bin" / "perf_analyzer"
    if not binary.exists():

        def install(building: Path) -> None:
            # only the two wheels (the binary and libcudart): nothing of tritonclient is imported;
            # --ignore-installed: what deploykit's own environment holds does not count
            result = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--ignore-installed", "--prefix",
                 str(building), *PINS],
                capture_output=True, text=True, timeout=timeout_s,
            )  # fmt: skip
            if result.returncode != 0:
                raise Unavailable(f"pip install {' '.join(PINS)} failed: {result.stderr.strip()[-400:]}")

        peer_envs.build_beside(PREFIX, install)
    _ensure_libb64()
    library_path = [str(_cudart_dir(PREFIX)), *filter(None, [os.environ.get("LD_LIBRARY_PATH")])]
    env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(library_path)}
    missing = [
        line.split()[0]
        for line in subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env).stdout.splitlines()
        if "not found" in line
    ]
    if missing:
        raise Unavailable(f"{binary} needs {', '.join(missing)}, not found (apt-get install libb64-0d; libcudart "
                          f"from {PINS[1]})")  # fmt: skip
    return binary, env


def _ensure_libb64() -> None:
    if Path("/lib/x86_64-linux-gnu/libb64.so.0d").exists() or Path("/usr/lib/x86_64-linux-gnu/libb64.so.0d").exists():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Unavailable("perf_analyzer needs Debian's libb64-0d (libb64.so.0d): run apt-get install -y libb64-0d")
    result = subprocess.run(["apt-get", "install", "-y", "libb64-0d"], capture_output=True, text=True)
    if result.returncode != 0:
        raise Unavailable(f"apt-get install -y libb64-0d failed: {result.stderr.strip()[-300:]}")


def input_dir(case, work: Path) -> tuple[Path, list[str]]:
    """One raw little-endian file per input, and the ``--shape name:dims`` flags that go with it."""
    directory = work / "perf-analyzer-inputs"
    directory.mkdir(parents=True, exist_ok=True)
    shapes = []
    for name, value in case.inputs.items():
        np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<")).tofile(directory / name)
        shapes += ["--shape", f"{name}:{','.join(str(d) for d in value.shape)}"]
    return directory, shapes


def perf_analyzer_command(binary: Path, target: str, case, work: Path, interval_ms: int, out: Path) -> list[str]:
    """perf_analyzer at concurrency 1 and 32, sync mode, CSV to ``out``. ``-s 50``: a measurement is
    stable when 3 windows agree within 50% (the default 10% rarely holds on a shared machine)."""
    directory, shapes = input_dir(case, work)
    return [
        str(binary), "--service-kind=tfserving", "-i", "grpc", "-u", target, "-m", case.model, *shapes,
        "--input-data", str(directory), "--concurrency-range", f"{LEVELS[0]}:{LEVELS[1]}:{LEVELS[1] - LEVELS[0]}",
        "-p", str(interval_ms), "-s", "50", "-f", str(out),
    ]  # fmt: skip


def parse_csv(path: Path) -> dict[str, dict]:
    """perf_analyzer's ``-f`` CSV (latencies in microseconds) -> ``{"c1": {"p50_ms", "p99_ms", "rps"}, ...}``."""
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    return {
        f"c{int(row['Concurrency'])}": {
            "p50_ms": float(row["p50 latency"]) / 1000,
            "p99_ms": float(row["p99 latency"]) / 1000,
            "rps": float(row["Inferences/Second"]),
        }
        for row in rows
    }


def run_perf_analyzer(target: str, case, work: Path, duration: float) -> dict:
    binary, env = ensure_env()
    out = work / "perf_analyzer.csv"
    command = perf_analyzer_command(binary, target, case, work, int(duration * 1000), out)
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if result.returncode != 0 or not out.exists():
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        raise Unavailable(f"perf_analyzer exited {result.returncode}: {' / '.join(lines[-3:])}")
    shown = ["perf_analyzer", *command[1:]]
    shown[shown.index("-u") + 1] = "127.0.0.1:PORT"
    return {"command": " ".join(shown), **parse_csv(out)}


def run_loadtest(target: str, case, work: Path, duration: float) -> dict:
    """``deploykit loadtest`` closed loop at concurrency 1 and 32 against the same server."""
    npz = work / "crosscheck-inputs.npz"
    np.savez(npz, **case.inputs)
    command = [
        "deploykit", "loadtest", f"grpc://{target}/{case.model}", "--npz", str(npz),
        "--concurrency", ",".join(str(c) for c in LEVELS), "--duration", f"{duration:g}s", "--warmup", "1s",
        "--max-trials", "1", "--processes", "2", "-o", str(work / "crosscheck-loadtest.json"),
    ]  # fmt: skip
    report = generator.run_loadtest(command)
    points = {
        f"c{lv['level']:g}": {
            "p50_ms": lv["latency_ms"]["p50"],
            "p99_ms": lv["latency_ms"]["p99"],
            "rps": lv["achieved_rps"],
        }
        for lv in report["levels"]
    }
    command[2] = f"grpc://127.0.0.1:PORT/{case.model}"
    return {"command": " ".join(command), **points}


def measure(repo: Path, case, dataplane: str, work: Path, duration: float, measure_point: Callable[..., dict]) -> dict:
    """The three clients, one after the other, against one ``deploykit serve``. perf_analyzer failing
    to run is a result (``perf_analyzer: {"skipped": why}``), not an error."""
    proc = servers.start_serve(repo, dataplane)
    try:
        servers.wait_answer(proc, case.request)
        clients: dict[str, dict] = {
            "bench probe": {f"c{c}": measure_point(proc.target, case.request_file, c) for c in LEVELS},
            "deploykit loadtest": run_loadtest(proc.target, case, work, duration),
        }
        try:
            clients["perf_analyzer"] = run_perf_analyzer(proc.target, case, work, duration)
        except (Unavailable, OSError, subprocess.SubprocessError) as exc:
            clients["perf_analyzer"] = {"skipped": str(exc)}
    finally:
        proc.stop()
    return {"model": case.name, "dataplane": dataplane, "clients": clients}


def markdown(result: dict) -> list[str]:
    """The report's section."""
    lines = [
        f"## Cross-check: three clients against one `deploykit serve` ({result['model']}, {result['dataplane']} "
        "data plane)",
        "",
        "The same server, measured one client after the other: the bench's probe (Python grpc.aio, "
        "`tensor_content` both ways), `deploykit loadtest` (closed loop, 2 processes, `tensor_content` requests, "
        "typed answers) and Triton's C++ `perf_analyzer` 2.41.0 (`--service-kind=tfserving`, sync, `float_val` "
        "requests, typed answers). Every client shares the cores with the server.",
        "",
        "| client | p50 c=1 (ms) | req/s c=1 | p50 c=32 (ms) | req/s c=32 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, row in result["clients"].items():
        if "skipped" in row:
            lines.append(f"| {name} | not run: {row['skipped']} | | | |")
            continue
        c1, c32 = row["c1"], row["c32"]
        lines.append(f"| {name} | {c1['p50_ms']:.3f} | {c1['rps']:.0f} | {c32['p50_ms']:.3f} | {c32['rps']:.0f} |")
    lines += [""] + [f"- {name}: `{row['command']}`" for name, row in result["clients"].items() if "command" in row]
    return lines
