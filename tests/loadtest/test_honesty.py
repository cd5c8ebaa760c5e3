"""The load tester hides nothing and never hangs (issue 13, items 14-18).

Servers are real (deploykit's server on loopback sockets, or a bare grpc server implementing only
Predict as a gateway would); the model is the known test double of ``test_measurements``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
import trustme
from conftest import free_port
from test_measurements import KnownModel, serve
from typer.testing import CliRunner

from deploykit.cli import app
from deploykit.errors import Unreachable, UsageError
from deploykit.loadtest import gate
from deploykit.loadtest.api import loadtest
from deploykit.loadtest.runner import RunSettings
from deploykit.loadtest.target import parse_load_target
from deploykit.protocol import grpc_paths
from deploykit.protocol.protos import serving_pb2 as pb
from deploykit.protocol.tensor_codec import from_ndarray, to_ndarray
from deploykit.server import ServerConfig, ServerThread
from deploykit.server.version_loader import LoadedVersion
from deploykit.tls import ServerTls

pytestmark = pytest.mark.lean
runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
STALL_S = 1.0


def test_a_stall_in_a_rerun_trial_stays_in_the_report() -> None:
    """Open loop, 100 rps, 0.5 s windows, 2 s per trial: the 1 s stall starts 0.3 s into trial 1, so it
    fills a whole judged window and trial 1 is unstable by construction; trial 2 is clean. Both
    trials' requests are reported: the stall shows in p99 and max and fails 'p99<100ms'."""
    server = serve(KnownModel(stall_at=1 + 30, stall_s=STALL_S))  # request 1 is the probe
    try:
        result = loadtest(
            parse_load_target(f"{server.grpc_target}/known"),
            RunSettings(mode="open", levels=(100,), duration_s=2, warmup_s=0, window_s=0.5, max_trials=2),
            thresholds=["p99<100ms"],
        )
    finally:
        server.stop()
    (level,) = result["levels"]
    assert level["trials"] == 2
    assert {w["trial"] for w in level["windows"]} == {1, 2}
    assert level["count"]["ok"] + level["count"]["error"] == 2 * 200  # every scheduled request of both trials
    assert level["latency_ms"]["max"] >= STALL_S * 1000 * 0.9, level["latency_ms"]
    assert level["latency_ms"]["p99"] > 100, level["latency_ms"]
    (check,) = result["checks"]
    assert not check["passed"] and check["observed"] > 100
    assert "every trial's requests count" in result["stability_rule"]


def test_progress_reaches_a_piped_stderr_and_the_report_states_the_rule(tmp_path: Path) -> None:
    server = serve(KnownModel())
    try:
        out = tmp_path / "r.md"
        completed = subprocess.run(
            [sys.executable, "-m", "deploykit", "loadtest", f"{server.grpc_target}/known", "--concurrency", "1,2"]
            + ["--duration", "1s", "--warmup", "0s", "--window", "0.25s", "--max-trials", "1", "-o", str(out)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    finally:
        server.stop()
    assert completed.returncode in (0, 4), completed.stderr
    lines = completed.stderr.splitlines()
    for level in (1, 2):
        (line,) = [ln for ln in lines if ln.startswith(f"concurrency {level}, trial 1/1:")]
        assert " rps, p50 " in line and " ms, p99 " in line, line
    assert "Stability: a level is stable when its last 3 complete 0.25 s windows agree" in out.read_text()


def _run_cli_process(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The CLI in its own process: a hang fails the test at ``timeout`` instead of stalling the suite."""
    return subprocess.run(
        [sys.executable, "-m", "deploykit", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.parametrize("rate", ["0.0001", "1e9"])
def test_absurd_rates_finish(rate: str, tmp_path: Path) -> None:
    server = serve(KnownModel())
    try:
        out = tmp_path / "r.json"
        done = _run_cli_process(
            "loadtest",
            f"{server.grpc_target}/known",
            "--rate",
            rate,
            "--duration",
            "2s",
            "--max-trials",
            "1",
            "-o",
            str(out),
        )
    finally:
        server.stop()
    assert done.returncode == 4, done.stderr  # invalid either way: nothing sent, or nearly everything dropped
    written = json.loads(out.read_text())
    assert written["settings"]["pacing"] == "timer" and written["pacing"].startswith("timer (a kernel timer")
    (level,) = written["levels"]
    if rate == "1e9":
        assert level["count"]["dropped"] > 10**8 and level["count"]["ok"] > 0
        assert any("dropped at --max-inflight" in r for r in level["invalid_reasons"])
    else:
        assert level["count"] == {"ok": 0, "error": 0, "dropped": 0}


def test_a_worker_ends_when_its_parent_is_killed() -> None:
    psutil = pytest.importorskip("psutil")
    server = serve(KnownModel())
    parent = subprocess.Popen(
        [sys.executable, "-m", "deploykit", "loadtest", f"{server.grpc_target}/known", "--rate", "50"]
        + ["--duration", "600s", "--max-trials", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        workers = []
        deadline = time.monotonic() + 120
        while not workers and time.monotonic() < deadline:  # wait for the spawned load worker
            children = psutil.Process(parent.pid).children()
            workers = [p for p in children if "spawn_main" in " ".join(p.cmdline())]
            time.sleep(0.2)
        assert workers, "the load worker never started"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        _, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive, f"worker(s) still running after the parent was killed: {[p.pid for p in alive]}"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        server.stop()


@pytest.mark.parametrize("text", ["p99<-5ms", "error_rate<-0.1", "rps>=-1", "p99<infms", "p99<nan"])
def test_negative_or_non_finite_limits_are_refused(text: str) -> None:
    with pytest.raises(UsageError):
        gate.parse_threshold(text)


# --------------------------------------------------------------------------- Predict-only endpoints


class PredictOnly:
    """A gateway-like gRPC server: PredictionService/Predict (y = 2x) and nothing else."""

    def __init__(self) -> None:
        self.server = grpc.server(futures.ThreadPoolExecutor(4))

        def predict(request: pb.PredictRequest, context) -> pb.PredictResponse:
            response = pb.PredictResponse()
            response.outputs["y"].CopyFrom(from_ndarray(to_ndarray(request.inputs["x"], "x") * 2))
            return response

        handler = grpc.method_handlers_generic_handler(
            grpc_paths.PREDICT.path.split("/")[1],
            {
                grpc_paths.PREDICT.path.split("/")[2]: grpc.unary_unary_rpc_method_handler(
                    predict, pb.PredictRequest.FromString, pb.PredictResponse.SerializeToString
                )
            },
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(0)


def test_predict_only_endpoint_with_npz(tmp_path: Path) -> None:
    gateway = PredictOnly()
    inputs = tmp_path / "x.npz"
    np.savez(inputs, x=np.ones((2, 4), np.float32))
    try:
        out = tmp_path / "r.json"
        result = runner.invoke(
            app,
            ["loadtest", f"grpc://127.0.0.1:{gateway.port}/anything", "--npz", str(inputs), "--requests", "50"]
            + ["--warmup", "0s", "-o", str(out)],
        )
    finally:
        gateway.stop()
    assert result.exit_code == 0, result.output
    (level,) = json.loads(out.read_text())["levels"]
    assert level["count"] == {"ok": 50, "error": 0, "dropped": 0}


def test_predict_only_endpoint_without_inputs_says_what_to_give() -> None:
    gateway = PredictOnly()
    try:
        result = runner.invoke(app, ["loadtest", f"grpc://127.0.0.1:{gateway.port}/anything", "--requests", "5"])
    finally:
        gateway.stop()
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "does not implement GetModelMetadata" in text and "--npz" in text


def test_unimplemented_status_is_skipped_with_one_note(tmp_path: Path) -> None:
    """A server without ModelService but with metadata: readiness skipped with a note."""
    from deploykit.loadtest import api as session

    gateway = PredictOnly()
    notes: list[str] = []
    try:
        target = parse_load_target(f"grpc://127.0.0.1:{gateway.port}/anything")
        with pytest.raises(UsageError, match="GetModelMetadata"):
            session.prepare(target, npz=None, request_json=None, batch_size=1, seed=0, timeout=5, notes=notes)
    finally:
        gateway.stop()
    assert notes == [f"{target} does not implement GetModelStatus: readiness check skipped"]


# --------------------------------------------------------------------------- reachability and TLS


def test_a_refused_port_is_unreachable_at_once() -> None:
    port = free_port()
    result = runner.invoke(app, ["loadtest", f"grpc://127.0.0.1:{port}/known"])  # default --timeout 30
    assert result.exit_code == 3, result.output
    text = " ".join(result.output.split())
    assert f"cannot connect to 127.0.0.1:{port}" in text and "--wait-ready" in text


def test_wait_ready_waits_for_a_server_that_starts_later(tmp_path: Path) -> None:
    port = free_port()
    holder: dict[str, ServerThread] = {}

    def start_later() -> None:
        time.sleep(1.0)
        model = KnownModel()
        loaded = LoadedVersion(
            "known", 1, Path("."), "test-double", model, signatures={"serving_default": model.signature}
        )
        holder["server"] = ServerThread(ServerConfig(preloaded=[loaded], grpc_port=port, rest_port=0)).start()

    starter = threading.Thread(target=start_later)
    starter.start()
    try:
        result = runner.invoke(
            app,
            ["loadtest", f"grpc://127.0.0.1:{port}/known", "--wait-ready", "60s", "--requests", "20", "--warmup", "0s"],
        )
    finally:
        starter.join()
        holder["server"].stop()
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("pki")
    server_ca, client_ca = trustme.CA(), trustme.CA()
    server_cert = server_ca.issue_cert("127.0.0.1")
    client_cert = client_ca.issue_cert("client@deploykit.test")
    blobs = {
        "server_ca": server_ca.cert_pem,
        "client_ca": client_ca.cert_pem,
        "server_cert": server_cert.cert_chain_pems[0],
        "server_key": server_cert.private_key_pem,
        "client_cert": client_cert.cert_chain_pems[0],
        "client_key": client_cert.private_key_pem,
    }
    files = {}
    for name, blob in blobs.items():
        files[name] = directory / f"{name}.pem"
        blob.write_to_path(str(files[name]))
    return files


def _tls_server(pki, mutual: bool) -> ServerThread:
    model = KnownModel()
    loaded = LoadedVersion("known", 1, Path("."), "test-double", model, signatures={"serving_default": model.signature})
    tls = ServerTls.from_files(pki["server_cert"], pki["server_key"], pki["client_ca"] if mutual else None)
    return ServerThread(ServerConfig(preloaded=[loaded], grpc_port=0, rest_port=0, tls=tls)).start()


def _url(endpoint: str, transport: str, secure: bool) -> str:
    plain, tls = ("grpc://", "grpcs://") if transport == "grpc" else ("http://", "https://")
    endpoint = endpoint.replace(tls, plain).replace(plain, tls if secure else plain)
    return endpoint + ("/known" if transport == "grpc" else "/v1/models/known")


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_tls_failures_are_named(pki, transport: str) -> None:
    from deploykit.loadtest import reach

    mutual, plain = _tls_server(pki, mutual=True), serve(KnownModel())
    endpoint = mutual.grpc_target if transport == "grpc" else mutual.rest_target
    plain_endpoint = plain.grpc_target if transport == "grpc" else plain.rest_target
    client = {"cert_file": pki["client_cert"], "key_file": pki["client_key"]}
    try:
        reach.check(parse_load_target(_url(endpoint, transport, True), ca_file=pki["server_ca"], **client))
        with pytest.raises(Unreachable, match="TLS handshake failed: the server requires a client certificate"):
            reach.check(parse_load_target(_url(endpoint, transport, True), ca_file=pki["server_ca"]))
        with pytest.raises(Unreachable, match="TLS handshake failed: the server's certificate is not trusted"):
            reach.check(parse_load_target(_url(endpoint, transport, True), ca_file=pki["client_ca"], **client))
        with pytest.raises(Unreachable, match="speaks TLS, the target is plaintext"):
            reach.check(parse_load_target(_url(endpoint, transport, False)))
        with pytest.raises(Unreachable, match="TLS handshake failed: the server does not speak TLS"):
            reach.check(parse_load_target(_url(plain_endpoint, transport, True), ca_file=pki["server_ca"]))
    finally:
        mutual.stop()
        plain.stop()


def test_loadtest_names_a_missing_client_certificate(pki) -> None:
    server = _tls_server(pki, mutual=True)
    try:
        result = runner.invoke(
            app, ["loadtest", _url(server.grpc_target, "grpc", True), "--ca-file", str(pki["server_ca"])]
        )
    finally:
        server.stop()
    assert result.exit_code == 3, result.output
    assert "requires a client certificate" in " ".join(result.output.split())


@pytest.mark.parametrize("require_stable", [False, True])
def test_an_unstable_level_is_a_warning_unless_stability_is_required(require_stable: bool) -> None:
    """A 0% tolerance cannot be met (window p50s and rates never agree exactly)."""
    server = serve(KnownModel())
    try:
        result = loadtest(
            parse_load_target(f"{server.grpc_target}/known"),
            RunSettings(
                levels=(1,),
                duration_s=1,
                warmup_s=0,
                window_s=0.2,
                max_trials=1,
                stability=0.0,
                require_stable=require_stable,
            ),
        )
    finally:
        server.stop()
    (level,) = result["levels"]
    assert level["stable"] is False
    where = level["invalid_reasons"] if require_stable else level["warnings"]
    assert any("never stabilised" in m for m in where), level
    assert level["valid"] is not require_stable
    assert result["verdict"]["exit_code"] == (4 if require_stable else 0)
