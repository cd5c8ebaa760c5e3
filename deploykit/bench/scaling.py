"""Dynamic batching and ``--workers`` in one run: every model measured at concurrency 32 served with and
without ``--enable_batching``, the first one with ``--workers 1`` and ``2``, each driven by the
benchmark's probe and reported as a ratio to its plain counterpart.

Batching uses TF Serving's CPU advice (``num_batch_threads`` = cores, ``batch_timeout_micros`` 0:
batches form from what is queued, nobody waits for a fuller batch). ``--workers 2`` is two server
processes sharing the port (SO_REUSEPORT spreads *connections*), so the probe opens several
connections per process. On a 2-core machine the probe shares the cores with the server: the rows
say how the cores were split as much as how the server scales.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from deploykit.bench import servers

CONCURRENCY = 32
CONNECTIONS = 4  # per probe process: with 2 processes, 8 connections for SO_REUSEPORT to spread


def batching_file(work: Path) -> Path:
    """TF Serving's text-format BatchingParameters: CPU advice, queue deep enough for concurrency 32."""
    path = work / "batching.pbtxt"
    path.write_text(
        f"max_batch_size {{ value: {CONCURRENCY} }}\nbatch_timeout_micros {{ value: 0 }}\n"
        f"max_enqueued_batches {{ value: {2 * CONCURRENCY} }}\nnum_batch_threads {{ value: {os.cpu_count() or 1} }}\n"
    )
    return path


PLAIN, BATCHED, ONE, TWO = "plain (no batching)", "--enable_batching", "--workers 1", "--workers 2"
BASES = {BATCHED: PLAIN, TWO: ONE}  # what each variant's ratio is against


def variants(work: Path) -> dict[str, list[str]]:
    """Row label -> extra ``deploykit serve`` flags."""
    return {
        PLAIN: [],
        BATCHED: ["--enable_batching", "--batching_parameters_file", str(batching_file(work))],
        ONE: ["--workers", "1"],
        TWO: ["--workers", "2"],
    }


def measure(repo: Path, cases, dataplane: str, work: Path, measure_point: Callable[..., dict]) -> dict:
    """Batching on and off for every model measured at concurrency 32, ``--workers 1`` and ``2`` for the
    first; each server started alone (nothing else served meanwhile) and measured with
    ``measure_point(target, request_file, concurrency, connections=...)`` (the bench's probe)."""
    flags = variants(work)
    models = [case for case in cases if CONCURRENCY in case.levels]
    plan = [(case, label) for case in models for label in (PLAIN, BATCHED)] + [(models[0], ONE), (models[0], TWO)]
    rows = []
    for case, label in plan:
        proc = servers.start_serve(repo, dataplane, flags[label])
        try:
            servers.wait_answer(proc, case.request)
            point = measure_point(proc.target, case.request_file, CONCURRENCY, connections=CONNECTIONS)
        finally:
            proc.stop()
        rows.append({"model": case.name, "variant": label, "flags": " ".join(flags[label]), **point})
    for row in rows:
        base = _base(rows, row)
        row["rps_ratio"] = row["rps"] / base["rps"] if base is not None and base["rps"] else None
    return {"dataplane": dataplane, "rows": rows}


def _base(rows: list[dict], row: dict) -> dict | None:
    """The row ``row`` is compared with: plain for batching, one worker for two."""
    against = BASES.get(row["variant"])
    return next((r for r in rows if r["model"] == row["model"] and r["variant"] == against), None)


def markdown(result: dict) -> list[str]:
    """The report's section."""
    lines = [
        f"## Dynamic batching and `--workers` ({result['dataplane']} data plane, concurrency {CONCURRENCY})",
        "",
        f"Each server started alone and measured by the same probe (2 processes x {CONNECTIONS} connections; "
        "SO_REUSEPORT spreads connections over workers). Batching: `num_batch_threads` = cores, "
        f"`batch_timeout_micros` 0, `max_batch_size` {CONCURRENCY}. The probe shares the 2 cores with the server, "
        "so a second worker mostly competes with the client for CPU: read the ratios as this machine's, not as "
        "scaling.",
        "",
        "| model | variant | req/s | p50 (ms) | p99 (ms) | errors | req/s ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        against = BASES.get(r["variant"])
        ratio = "-" if r["rps_ratio"] is None else f"{r['rps_ratio']:.2f}x vs {against}"
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['rps']:.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
            f"{r['errors']} | {ratio} |"
        )
    return lines
