"""The bench's generator-capacity, batching/--workers and perf_analyzer sections: how their numbers are read
and chosen (deterministic, from recorded outputs), that a section that does not run says why, and one real
sweep of ``deploykit loadtest`` against the native floor (report structure, never its numbers)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from deploykit.bench import crosscheck, extras, generator, models, servers
from deploykit.bench.run import Settings
from deploykit.cli import app

#: perf_analyzer 2.41.0's ``-f`` output, as written against deploykit serve on this machine.
PERF_ANALYZER_CSV = (
    "Concurrency,Inferences/Second,Client Send,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency\n"
    "1,1019.11,4,0,666,1148,2754,6357\n"
    "32,2095.49,4,0,13294,22748,27210,43027\n"
)


def test_perf_analyzer_csv_is_read_in_milliseconds(tmp_path: Path) -> None:
    path = tmp_path / "pa.csv"
    path.write_text(PERF_ANALYZER_CSV)
    assert crosscheck.parse_csv(path) == {
        "c1": {"p50_ms": 0.666, "p99_ms": 6.357, "rps": 1019.11},
        "c32": {"p50_ms": 13.294, "p99_ms": 43.027, "rps": 2095.49},
    }


def test_perf_analyzer_gets_one_raw_file_per_input_and_its_shape(tmp_path: Path) -> None:
    x = np.arange(64, dtype=np.float32).reshape(1, 64)
    directory, shapes = crosscheck.input_dir(SimpleNamespace(inputs={"x": x}), tmp_path)
    assert (directory / "x").read_bytes() == x.astype("<f4").tobytes()
    assert shapes == ["--shape", "x:1,64"]


def _level(rate: float, lag_p99: float | None, achieved: float, dropped: int = 0) -> dict:
    """A level as ``deploykit loadtest``'s JSON report has it (the fields the section reads)."""
    return {
        "level": rate,
        "achieved_rps": achieved,
        "send_lag_ms": {"p50": None if lag_p99 is None else lag_p99 / 4, "p99": lag_p99},
        "latency_ms": {"p50": 0.5},
        "count": {"ok": int(achieved), "error": 0, "dropped": dropped},
        "client_cpu": 0.5,
    }


def test_generator_capacity_is_the_highest_rate_meeting_every_condition() -> None:
    levels = [
        _level(1000, 0.4, 1000),
        _level(2000, 0.9, 1995),
        _level(3000, 0.8, 2000),  # achieved too little
        _level(5000, 0.5, 5000, dropped=3),  # dropped at the in-flight limit
        _level(8000, 4.0, 8000),  # sent late
    ]
    found = generator.summarize(levels)
    assert [r["sustained"] for r in found["levels"]] == [True, True, False, False, False]
    assert (found["highest_rps"], found["achieved_rps"], found["target_met"]) == (2000, 1995, False)
    assert generator.summarize([_level(6000, 0.9, 6000)])["target_met"] is True
    nothing = generator.summarize([_level(1000, None, 0)])
    assert nothing["highest_rps"] is None and "none of the rates" in "\n".join(generator.markdown(
        {**nothing, "command": "deploykit loadtest ...", "processes": 2}
    ))  # fmt: skip


def test_sections_that_do_not_run_say_why(tmp_path: Path) -> None:
    results: dict = {"not_run": {}}
    common = {"repo": tmp_path, "cases": [], "dataplane": "python", "floor_binary": None, "measure_point": None}
    extras.run(results, floor_reason="", settings=Settings(quick=True, work_dir=tmp_path), **common)
    assert list(results["not_run"].values()) == [
        "Not measured: quick mode (deploykit bench --section NAME runs it)"
    ] * len(extras.SECTIONS)
    results = {"not_run": {}}
    settings = Settings(sections=("generator",), work_dir=tmp_path)
    extras.run(results, floor_reason="needs g++", settings=settings, **common)
    assert results["not_run"] == {
        "generator capacity (deploykit loadtest vs native floor)": "Not measured: no native floor (needs g++)",
        "dynamic batching and --workers ratios": "Not measured: not selected",
        "perf_analyzer cross-check": "Not measured: not selected",
    }
    assert extras.markdown(results) == []


def test_an_unknown_section_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["bench", "--quick", "--section", "peers-and-more"])
    assert result.exit_code == 2
    assert "peers-and-more: not a section; choose from generator, scaling, crosscheck" in result.output


@pytest.mark.slow
def test_loadtest_sweeps_the_native_floor_with_npz_inputs_and_reports_send_lag(tmp_path: Path, monkeypatch) -> None:
    """The real load tester against the real C++ floor (which serves Predict only: no metadata, no status)."""
    binary, reason = servers.build_floor(tmp_path / "bin")
    if binary is None:
        pytest.skip(reason)
    repo = models.prepare(None, tmp_path / "models", quick=True)
    case = models.cases(repo, tmp_path, quick=True)[0]
    monkeypatch.setattr(generator, "RATES", (100, 200))
    monkeypatch.setattr(generator, "TIMER_CHECK_S", 0.5)
    found = generator.measure(binary, case, tmp_path, duration=0.5)
    assert [r["rate"] for r in found["levels"]] == [100, 200]
    for row in found["levels"]:
        assert row["errors"] == 0 and row["achieved_rps"] > 0 and row["send_lag_p99_ms"] is not None
    assert found["timer_lag"]["p99_ms"] >= found["timer_lag"]["p50_ms"] >= 0  # the machine's own share
    assert found["command"].startswith("deploykit loadtest grpc://127.0.0.1:PORT/mlp-synthetic --npz ")
    report = json.loads((tmp_path / "generator.json").read_text())
    assert report["notes"] == [] and report["engine"].startswith("not self-reported")
