"""The load tester's numbers are true: checked against servers built for the purpose.

The servers are deploykit's real gRPC/REST server on loopback with a model whose behaviour is known
(a fixed service time, a stall, a failure every Nth request). The model is a test double by design:
its timing must be exact and known, which no real model gives.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
from typer.testing import CliRunner

from deploykit.cli import app
from deploykit.loadtest.api import loadtest
from deploykit.loadtest.runner import RunSettings
from deploykit.loadtest.target import parse_load_target
from deploykit.runtimes.base import Runtime
from deploykit.server import ServerConfig, ServerThread
from deploykit.server.version_loader import LoadedVersion
from deploykit.tensors import Signature, TensorSpec

pytestmark = pytest.mark.lean  # framework-free: runs in the lean environment too (scripts/test-lean.sh)
runner = CliRunner()


class KnownModel(Runtime):
    """Answers y = 2x, one request at a time, after at least ``service_s``; stalls once for ``stall_s``
    at request number ``stall_at``; fails every ``fail_every``-th request.

    ``durations_s`` records how long each computation really took (on a loaded machine, a busy wait
    of 5 ms can take longer): the truth the load tester's numbers are checked against."""

    def __init__(self, service_s: float = 0.0, stall_at: int = 0, stall_s: float = 0.0, fail_every: int = 0) -> None:
        self._signature = Signature((TensorSpec("x", "float32", (None, 4)),), (TensorSpec("y", "float32", (None, 4)),))
        self.service_s, self.stall_at, self.stall_s, self.fail_every = service_s, stall_at, stall_s, fail_every
        self.lock = threading.Lock()
        self.count = 0
        self.durations_s: list[float] = []

    @property
    def signatures(self):
        return {"serving_default": self._signature}

    def describe(self):
        return {"engine": "test-double", "version": "0"}

    def predict(self, inputs, signature_name=None):
        with self.lock:  # a single-threaded model: a stall freezes every request behind it
            started = time.perf_counter()
            self.count += 1
            if self.count == self.stall_at:
                time.sleep(self.stall_s)
            if self.service_s:
                deadline = time.perf_counter() + self.service_s
                while time.perf_counter() < deadline:  # exact, unlike time.sleep's scheduler slack
                    time.sleep(0.0002)
            if self.fail_every and self.count % self.fail_every == 0:
                raise RuntimeError(f"injected failure on request {self.count}")
            self.durations_s.append(time.perf_counter() - started)
            return {"y": inputs["x"] * 2}

    def close(self) -> None:
        pass


def serve(model: KnownModel) -> ServerThread:
    loaded = LoadedVersion("known", 1, Path("."), "test-double", model)
    return ServerThread(ServerConfig(preloaded=[loaded], grpc_port=0, rest_port=0, inference_threads=8)).start()


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_known_service_time_is_reported(transport: str) -> None:
    """Every assertion holds by construction, whatever the machine's load: a fixed request count (no
    rate-dependent count, no stability windows to judge), and bounds that follow from each request's
    computation lying inside its server compute time, which lies inside its client latency."""
    model = KnownModel(service_s=0.005)
    server = serve(model)
    try:
        endpoint = server.grpc_target if transport == "grpc" else server.rest_target
        target = parse_load_target(f"{endpoint}/known" if transport == "grpc" else f"{endpoint}/v1/models/known")
        settings = RunSettings(mode="closed", levels=(1,), requests=150, warmup_s=0.3, window_s=600)
        result = loadtest(target, settings)
    finally:
        server.stop()
    (level,) = result["levels"]
    assert level["valid"], level["invalid_reasons"]
    assert level["count"] == {"ok": 150, "error": 0, "dropped": 0}
    assert result["engine"].startswith("deploykit-serve/")
    truth_ms = sorted(d * 1000 for d in model.durations_s)  # every computation the model did
    assert truth_ms[0] >= 5.0
    latency, split = level["latency_ms"], level["breakdown_ms"]
    # Histogram resolution: values are recorded to 3 significant digits.
    slack = 0.01
    # Each latency contains its computation (>= 5 ms) ...
    assert latency["min"] >= 5.0 - slack
    assert latency["p50"] >= split["compute"]["p50"] - slack
    # ... the server's compute time is the model's time (its timer wraps the model call, nothing else) ...
    assert split["compute"]["min"] >= truth_ms[0] - slack
    assert split["compute"]["p50"] <= latency["p50"] + slack
    # ... and what is not the server's (client + network) is the latency minus at least the computation.
    assert split["client_network"]["p50"] <= latency["p50"] - 5.0 + slack
    # No request queues behind another at concurrency 1: the queue wait is a thread hand-off, not a computation.
    assert split["queue"]["p50"] < split["compute"]["p50"]


STALL_S = 1.0


@pytest.mark.slow
def test_open_loop_shows_a_stall_that_closed_loop_hides() -> None:
    """1 s stall mid-run. Open loop charges every request scheduled during the stall from its
    intended send time; closed loop sends nothing while waiting, so one slow sample is all it sees."""
    server = serve(KnownModel(service_s=0.01, stall_at=100, stall_s=STALL_S))
    try:
        target = parse_load_target(f"{server.grpc_target}/known")
        opened = loadtest(
            target, RunSettings(mode="open", levels=(40,), duration_s=5, warmup_s=0.5, window_s=1, max_trials=1)
        )["levels"][0]
    finally:
        server.stop()
    server = serve(KnownModel(service_s=0.02, stall_at=100, stall_s=STALL_S))  # ~ the same load: about 45 rps
    try:
        closed = loadtest(
            parse_load_target(f"{server.grpc_target}/known"),
            RunSettings(mode="closed", levels=(1,), duration_s=5, warmup_s=0.5, window_s=1, max_trials=1),
        )["levels"][0]
    finally:
        server.stop()
    # Open loop: about a quarter of the requests were scheduled during the stall or its backlog,
    # so the corrected p99 is of the stall's order.
    assert opened["latency_ms"]["p99"] > STALL_S * 1000 / 2, opened
    assert opened["service_time_ms"]["p50"] < 50, opened  # most requests were fast once sent
    # Closed loop: it did hit the stall (its max) ...
    assert closed["latency_ms"]["max"] > STALL_S * 1000 * 0.9, closed
    # ... and its p99 hides it: one sample in ~200, far below the stall (margin for a noisy machine).
    assert closed["latency_ms"]["p99"] < STALL_S * 1000 / 4, closed


def test_error_and_ok_counts_are_exact_by_status() -> None:
    model = KnownModel(fail_every=5)
    server = serve(model)
    try:
        target = parse_load_target(f"{server.rest_target}/v1/models/known")
        result = loadtest(target, RunSettings(mode="closed", levels=(1,), requests=100, warmup_s=0, window_s=0.5))
    finally:
        server.stop()
    (level,) = result["levels"]
    # Request 1 was the load tester's probe; the measured ones are 2..101.
    failures = sum(1 for n in range(2, 102) if n % 5 == 0)
    assert model.count == 101
    assert level["count"] == {"ok": 100 - failures, "error": failures, "dropped": 0}
    assert level["status_codes"] == {"OK": 100 - failures, "HTTP 500": failures}


def test_grpc_errors_are_counted_by_code() -> None:
    server = serve(KnownModel(fail_every=4))
    try:
        target = parse_load_target(f"{server.grpc_target}/known")
        result = loadtest(target, RunSettings(mode="closed", levels=(1,), requests=40, warmup_s=0, window_s=0.5))
    finally:
        server.stop()
    failures = sum(1 for n in range(2, 42) if n % 4 == 0)
    assert result["levels"][0]["status_codes"] == {"OK": 40 - failures, "INTERNAL": failures}


@pytest.fixture(scope="module")
def fast_server():
    server = serve(KnownModel())
    yield server
    server.stop()


def _cli(*args: str):
    return runner.invoke(app, ["loadtest", *args])


def test_overloaded_generator_makes_the_run_invalid(fast_server, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = _cli(
        f"{fast_server.grpc_target}/known",
        "--rate",
        "200000",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--max-inflight",
        "100000",
        "--max-trials",
        "1",
        "-o",
        str(out),
    )
    assert result.exit_code == 4, result.output
    level = json.loads(out.read_text())["levels"][0]
    assert not level["valid"]
    assert any("generator fell behind" in r or "CPU saturated" in r for r in level["invalid_reasons"])


@pytest.mark.slow
def test_thresholds_baselines_junit_and_html(fast_server, tmp_path: Path) -> None:
    target = f"{fast_server.grpc_target}/known"
    common = ["--concurrency", "1,2", "--duration", "1s", "--warmup", "0.2s", "--window", "0.5s"]
    base = tmp_path / "base.json"
    passed = _cli(
        target,
        *common,
        "--threshold",
        "p99<2s",
        "--threshold",
        "error_rate<0.01",
        "-o",
        str(base),
        "-o",
        str(tmp_path / "r.xml"),
        "-o",
        str(tmp_path / "r.html"),
        "-o",
        str(tmp_path / "r.csv"),
        "-o",
        str(tmp_path / "r.md"),
    )
    assert passed.exit_code == 0, passed.output
    failed = _cli(target, *common, "--threshold", "rps>=100000000", "-o", str(tmp_path / "f.xml"))
    assert failed.exit_code == 99, failed.output
    suite = ElementTree.parse(tmp_path / "f.xml").getroot()
    assert suite.tag == "testsuite" and int(suite.get("failures")) == 2  # rps failed at both levels

    suite = ElementTree.parse(tmp_path / "r.xml").getroot()
    assert int(suite.get("tests")) == 6 and suite.get("failures") == "0"  # 2 validity + 2 x 2 thresholds
    page = (tmp_path / "r.html").read_text()
    images = [chunk.split('"', 1)[0] for chunk in page.split('src="data:image/png;base64,')[1:]]
    assert len(images) == 3  # spectrum, throughput vs latency (a sweep), p99 per window
    import base64

    assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    assert (tmp_path / "r.csv").read_text().startswith("target,mode,level,")
    summary = (tmp_path / "r.md").read_text()
    assert "## deploykit loadtest: PASS" in summary and "Where the time went" in summary

    # Baselines: an impossible regression budget fails against a baseline that was much faster ...
    report = json.loads(base.read_text())
    for level in report["levels"]:
        level["latency_ms"]["p99"] = level["latency_ms"]["p99"] / 100
    faster = tmp_path / "faster.json"
    faster.write_text(json.dumps(report))
    regressed = _cli(target, *common, "--baseline", str(faster), "--max-regression", "p99=10%")
    assert regressed.exit_code == 99, regressed.output
    # ... and passes against a baseline that was much slower.
    for level in report["levels"]:
        level["latency_ms"]["p99"] = level["latency_ms"]["p99"] * 10000
    slower = tmp_path / "slower.json"
    slower.write_text(json.dumps(report))
    assert _cli(target, *common, "--baseline", str(slower), "--max-regression", "p99=10%").exit_code == 0


def test_report_histograms_reanalyse_exactly(fast_server, tmp_path: Path) -> None:
    from deploykit.loadtest.stats import from_blob, summary_ms

    out = tmp_path / "r.json"
    assert (
        _cli(f"{fast_server.grpc_target}/known", "--requests", "300", "--warmup", "0s", "-o", str(out)).exit_code == 0
    )
    level = json.loads(out.read_text())["levels"][0]
    histogram = from_blob(level["histograms"]["latency"])
    assert histogram.get_total_count() == 300
    assert summary_ms(histogram) == level["latency_ms"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["grpc://127.0.0.1:1/known", "--duration", "1s"], 3, "unreachable: cannot connect to 127.0.0.1:1"),
        (["ftp://x/known"], 2, "cannot parse target"),
        (["{grpc}/known", "--concurrency", "1", "--rate", "5"], 2, "not both"),
        (["{grpc}/known", "--threshold", "p42<3ms"], 2, "cannot parse threshold"),
        (["{grpc}/known", "--duration", "forever"], 2, "cannot parse duration"),
        (["{grpc}/known", "--rate", "5", "--pacing", "busy"], 2, "--pacing must be auto, timer, spin or sleep"),
        (["{grpc}/known", "-o", "report.pdf"], 2, "unknown report format"),
        (["{grpc}/nope"], 2, "Could not find any versions of model nope"),
    ],
)
def test_usage_and_unreachable_exit_codes(fast_server, args, code: int, message: str) -> None:
    args = [a.replace("{grpc}", fast_server.grpc_target) for a in args]
    result = _cli(*args)
    assert result.exit_code == code, result.output
    assert message in " ".join(result.output.split())


def test_compare_interleaves_and_ranks(fast_server, tmp_path: Path) -> None:
    out = tmp_path / "compare.json"
    result = runner.invoke(
        app,
        [
            "compare",
            f"{fast_server.grpc_target}/known",
            f"{fast_server.rest_target}/v1/models/known",
            "--concurrency",
            "1",
            "--duration",
            "0.6s",
            "--warmup",
            "0.2s",
            "--window",
            "0.2s",
            "--rounds",
            "2",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["kind"] == "compare" and report["rounds"] == 2
    assert [lv["rounds"] for lv in report["levels"]] == [2, 2]
    assert sorted(lv["ratio_p50_to_fastest"] for lv in report["levels"])[0] == 1.0
    assert all(lv["window_p50_ms_ci95"][1] >= 0 for lv in report["levels"])
    assert np.isclose(
        sum(lv["count"]["ok"] for lv in report["levels"]), sum(lv["status_codes"]["OK"] for lv in report["levels"])
    )
