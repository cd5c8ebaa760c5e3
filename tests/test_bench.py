"""`deploykit bench --quick`: a smoke test of the report's structure, never of its numbers."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from deploykit.cli import app


@pytest.mark.slow
def test_quick_bench_writes_the_report_and_its_json(tmp_path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    result = CliRunner().invoke(app, ["bench", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    for heading in ("## Transport floors", "## Serving overhead per model and data plane", "## Cold start and RSS"):
        assert heading in text
    assert "python grpc.aio floor" in text and "mlp-synthetic" in text and "image 1x3x224x224" in text
    results = json.loads(out.with_suffix(".json").read_text())
    assert set(results) >= {"machine", "floors", "serving", "cold_start", "not_run", "dataplanes"}
    for row in results["serving"]:
        assert row["c1"]["errors"] == 0 and row["c1"]["p50_ms"] > 0
    assert {row["dataplane"] for row in results["cold_start"]} == set(results["dataplanes"])
    # the longer sections are skipped in quick mode, and the report says so (never silently)
    for name in ("generator capacity", "dynamic batching and --workers ratios", "perf_analyzer cross-check"):
        assert any(
            k.startswith(name) and v.startswith("Not measured: quick mode") for k, v in results["not_run"].items()
        )
    assert text.count("Not measured: quick mode") == 3
