"""Generator capacity: the highest open-loop rate ``deploykit loadtest`` sustains against the native
floor with send-lag p99 under 1 ms.

The floor answers Predict with canned bytes in C++, so the generator is what runs out first. The load
tester is run as users run it (its own processes, ``--npz`` inputs: the floor serves no model
metadata) over a rate sweep, and its own report says how late each request left (send lag, from
the intended send time). On this machine the generator and the floor share the same cores.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from deploykit.bench import servers
from deploykit.loadtest import pacing

#: The issue's target: >= 5,000 requests/s open loop with send-lag p99 < 1 ms.
TARGET_RPS = 5000
MAX_SEND_LAG_MS = 1.0
RATES = (1000, 2000, 3000, 5000, 8000, 12000)
#: A level counts as sustained when it achieved this share of the asked rate with no drops.
ACHIEVED_SHARE = 0.95
PROCESSES = 2
TIMER_CHECK_S = 3.0  # how long the bare-loop timer check keeps its schedule


def timer_lag_ms(rate: float = 1000, seconds: float | None = None, pace: str | None = None) -> dict:
    """How late a bare asyncio loop (no I/O, no gRPC) wakes for a constant-rate schedule, paced as the
    load tester paces (``pace``, default: the load tester's default): the send lag the machine alone
    imposes, so that a late generator can be told from a busy machine."""
    pace = pace or pacing.default()

    async def keep_schedule() -> list[float]:
        interval, count, lags = 1.0 / rate, int(rate * (seconds or TIMER_CHECK_S)), []
        pacer = pacing.Pacer(pace)
        start = time.perf_counter()
        for index in range(count):
            await pacer.wait_until(start + index * interval)
            lags.append(time.perf_counter() - (start + index * interval))
        pacer.close()
        return lags

    lags = np.array(asyncio.run(keep_schedule())) * 1000
    return {
        "rate": rate,
        "pacing": pace,
        "p50_ms": float(np.percentile(lags, 50)),
        "p99_ms": float(np.percentile(lags, 99)),
    }


def loadtest_command(target: str, npz: Path, rates, duration: float, out: Path) -> list[str]:
    """The exact ``deploykit loadtest`` sweep (printed in the report)."""
    return [
        "deploykit", "loadtest", target, "--npz", str(npz), "--rate", ",".join(f"{r:g}" for r in rates),
        "--duration", f"{duration:g}s", "--warmup", "1s", "--max-trials", "1", "--processes", str(PROCESSES),
        "--max-send-lag", f"{MAX_SEND_LAG_MS:g}ms", "--pacing", pacing.default(), "-o", str(out),
    ]  # fmt: skip


def run_loadtest(command: list[str]) -> dict:
    """Run a ``deploykit loadtest`` command (this tree's) and return its JSON report. Exit 4 (a level
    invalid: the generator fell behind) is an answer here, not a failure."""
    argv = [sys.executable, "-c", "from deploykit.cli import main; main()", *command[1:]]
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode not in (0, 4):
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: {result.stderr.strip()[-500:]}")
    return json.loads(Path(command[command.index("-o") + 1]).read_text())


def sustained(level: dict) -> bool:
    """Send-lag p99 under the limit, the asked rate achieved, nothing dropped, nothing failed."""
    lag = level["send_lag_ms"]["p99"]
    return (
        lag is not None
        and lag < MAX_SEND_LAG_MS
        and level["achieved_rps"] >= ACHIEVED_SHARE * level["level"]
        and level["count"]["dropped"] == 0
        and level["count"]["error"] == 0
    )


def summarize(levels: list[dict]) -> dict:
    """Per-level rows and the highest sustained rate (None when not even the lowest rate was)."""
    rows = [
        {
            "rate": lv["level"],
            "achieved_rps": lv["achieved_rps"],
            "send_lag_p50_ms": lv["send_lag_ms"]["p50"],
            "send_lag_p99_ms": lv["send_lag_ms"]["p99"],
            "latency_p50_ms": lv["latency_ms"]["p50"],
            "dropped": lv["count"]["dropped"],
            "errors": lv["count"]["error"],
            "client_cpu": lv["client_cpu"],
            "sustained": sustained(lv),
        }
        for lv in levels
    ]
    best = max((r for r in rows if r["sustained"]), key=lambda r: r["rate"], default=None)
    return {
        "levels": rows,
        "highest_rps": None if best is None else best["rate"],
        "achieved_rps": None if best is None else best["achieved_rps"],
        "target_met": best is not None and best["rate"] >= TARGET_RPS,
    }


def measure(floor_binary: Path, case, work: Path, duration: float) -> dict:
    """The rate sweep against a fresh native floor answering ``case``'s response size."""
    npz = work / "generator-inputs.npz"
    np.savez(npz, **case.inputs)
    proc = servers.start_native_floor(floor_binary, case.response_bytes)
    try:
        servers.wait_answer(proc, case.request)
        command = loadtest_command(f"grpc://{proc.target}/{case.model}", npz, RATES, duration, work / "generator.json")
        load = os.getloadavg()[0]
        baseline = timer_lag_ms()
        report = run_loadtest(command)
    finally:
        proc.stop()
    printable = [*command[:2], "grpc://127.0.0.1:PORT/" + case.model, *command[3:]]
    return {
        "command": " ".join(printable),
        "processes": PROCESSES,
        "load_average": [load, os.getloadavg()[0]],
        "timer_lag": baseline,
        **summarize(report["levels"]),
    }


def markdown(row: dict) -> list[str]:
    """The report's section."""
    lines = [
        "## Generator capacity (`deploykit loadtest` open loop against the native floor)",
        "",
        f"Target: >= {TARGET_RPS:,} req/s with send-lag p99 < {MAX_SEND_LAG_MS:g} ms (send lag: how late each request "
        "left against its intended send time, from the load tester's own report). A rate is sustained when its "
        f"send-lag p99 is under the limit, >= {ACHIEVED_SHARE:.0%} of it was achieved and nothing was dropped. The "
        f"generator ({row['processes']} processes) shares the machine's cores with the floor and with everything "
        f"else running (1-minute load average {_load(row)}; send lag is the first thing a busy "
        f"machine moves). Command: `{row['command']}`.",
        "",
        "| rate asked | achieved req/s | send lag p50 (ms) | send lag p99 (ms) | latency p50 (ms) | dropped | "
        "client CPU | sustained |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in row["levels"]:
        lines.append(
            f"| {r['rate']:,.0f} | {r['achieved_rps']:,.0f} | {_ms(r['send_lag_p50_ms'])} | "
            f"{_ms(r['send_lag_p99_ms'])} | {_ms(r['latency_p50_ms'])} | {r['dropped']} | {r['client_cpu']:.0%} | "
            f"{'yes' if r['sustained'] else 'no'} |"
        )
    best = "none of the rates" if row["highest_rps"] is None else f"{row['highest_rps']:,.0f} req/s"
    verdict = "met" if row["target_met"] else "**missed**"
    lines += ["", f"Highest sustained rate: {best} (target {TARGET_RPS:,} req/s: {verdict})."]
    if "timer_lag" in row:
        lag = row["timer_lag"]
        lines[-1] += (
            f" The machine's own share, measured just before: a bare asyncio loop keeping a {lag['rate']:,.0f}/s "
            f"schedule (no I/O; {lag.get('pacing', 'sleep')} pacing, as the load tester's) woke {lag['p50_ms']:.3f} "
            f"ms late at p50 and {lag['p99_ms']:.3f} ms at p99"
            + (
                ": on this machine in this run even a generator doing nothing else misses the 1 ms limit; what "
                "the load tester shows beyond that is its own cost (gRPC's event loop, sharing the cores with the "
                "floor)." if lag["p99_ms"] >= MAX_SEND_LAG_MS else "."
            )
        )  # fmt: skip
    return lines


def _load(row: dict) -> str:
    before, after = row.get("load_average") or (None, None)
    return "unknown" if before is None else f"{before:.1f} at the start of the sweep, {after:.1f} at its end"


def _ms(value) -> str:
    return "-" if value is None else f"{value:.3f}"
