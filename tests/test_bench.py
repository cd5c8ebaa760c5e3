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
    assert text.count("Not measured: quick mode") == 4  # and the SavedModel row (TensorFlow)
    _assert_peer_rows(text, results)


def _assert_peer_rows(text: str, results: dict) -> None:
    """Each peer is measured beside deploykit's own v2 row, or "Not measured" says why (--quick uses a peer's
    environment only when it has been built: CI builds MLServer's and KServe's ahead, in the background; the
    SavedModel row needs TensorFlow and is left out of --quick)."""
    from deploykit.bench import savedmodel
    from deploykit.bench.peers import LABELS

    assert "## Peers (same model, same client; the protocol of each row)" in text
    assert results["not_run"][savedmodel.LABEL].startswith("Not measured: quick mode")
    measured = {row["server"] for row in results["peers"]}
    assert f"deploykit {results['dataplanes'][0]}" in measured
    for label in LABELS.values():
        assert (label in measured) != (f"peer {label}" in results["not_run"]), label
    for row in results["peers"]:
        assert "failed" not in row, row
        assert row["c1"]["errors"] == 0 and row["c1"]["p50_ms"] > 0 and row["c32"]["rps"] > 0


def test_quick_leaves_an_absent_peer_environment_unbuilt_and_says_so(tmp_path, monkeypatch) -> None:
    from deploykit.bench import peers
    from deploykit.bench.run import Settings

    monkeypatch.setenv("DEPLOYKIT_MLSERVER_VENV", str(tmp_path / "absent"))
    python, why = peers._peer_python("mlserver", Settings(quick=True, work_dir=tmp_path))
    assert python is None and not (tmp_path / "absent").exists()
    assert f"its environment {tmp_path / 'absent'} is absent and --quick does not build it" in why
    assert peers._peer_python("mlserver", Settings(peers=False, work_dir=tmp_path)) == (
        None,
        "Not measured: --no-peers",
    )
