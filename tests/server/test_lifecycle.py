"""Production lifecycle: graceful shutdown of a real ``deploykit serve`` process, deadlines, message limits.

The model is a real ONNX model whose service time the request chooses (an ONNX Loop of ``n``
iterations), served by ONNX Runtime. The deadline tests hold its computation behind a gate
(:class:`runtime_doubles.Gate`) instead of sizing it against the wall clock, so which request is
still queued when a deadline passes is fixed by construction.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from lifecycle_helpers import (
    WIDTH,
    build_slow,
    build_wide,
    iterations_for,
    request_count,
    scrape,
    slow_expected,
    slow_inputs,
    start_serve,
)
from runtime_doubles import Gate

from deploykit.client import Client
from deploykit.errors import ResourceExhausted, Unreachable
from deploykit.ports import free_ports
from deploykit.protocol import grpc_paths, tfserving_grpc
from deploykit.server import ServerConfig, ServerThread

GRACE_S = 60  # generous: the machine is shared; the test checks the exit happens within it


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _in_flight(rest_target: str) -> float:
    return scrape(rest_target)[("deploykit_requests_in_flight", ())]


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests_refuses_new_ones_and_exits_zero(tmp_path) -> None:
    model = build_slow(tmp_path)
    iterations = iterations_for(1.0, model)  # ~1 s each; one inference thread: they run one after another
    grpc_port, rest_port = free_ports(2)
    process = start_serve(
        str(tmp_path),
        *("--port", str(grpc_port), "--rest_api_port", str(rest_port)),
        *("--inference-threads", "1", "--grace_period_seconds", str(GRACE_S)),
    )
    grpc_target, rest_target = f"grpc://127.0.0.1:{grpc_port}", f"http://127.0.0.1:{rest_port}"
    try:
        with Client(grpc_target, timeout=60) as client:
            client.wait_until_ready("slow", timeout=60)

        clients = [Client(t, timeout=GRACE_S) for t in (grpc_target, grpc_target, grpc_target, rest_target)]
        clients[-1].metadata("slow")  # the REST client reads the signature first: not while draining

        def predict(client: Client) -> np.ndarray:
            with client:
                return client.predict("slow", slow_inputs(iterations))["y"]

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(predict, c) for c in clients]
            _wait_for(lambda: _in_flight(rest_target) == 4, 30, "4 requests in flight")
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()

            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
                _wait_for(lambda: health.Check(health_pb2.HealthCheckRequest()).status == not_serving, 10, "health")
                # New requests are refused while the old ones still run.
                predict_call = channel.unary_unary(
                    grpc_paths.PREDICT.path,
                    request_serializer=grpc_paths.PREDICT.request.SerializeToString,
                    response_deserializer=grpc_paths.PREDICT.response.FromString,
                )
                with pytest.raises(grpc.RpcError) as refused:
                    predict_call(tfserving_grpc.predict_request("slow", slow_inputs(10)), timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "shutting down" in refused.value.details()
            body = {"inputs": {"x": [[0.5] * 64], "n": [10]}}
            response = httpx.post(f"{rest_target}/v1/models/slow:predict", json=body, timeout=10)
            assert response.status_code == 503 and "shutting down" in response.json()["error"]
            # Refused while the others were still queued (one at a time, ~1 s each), not after them.
            assert sum(not f.done() for f in futures) >= 3

            results = [f.result(timeout=GRACE_S) for f in futures]  # none lost
        for got in results:
            np.testing.assert_allclose(got, slow_expected(iterations), rtol=1e-5, atol=1e-6)
        process.wait(timeout=max(GRACE_S - (time.monotonic() - signalled), 1))
        stderr = process.stderr.read()
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, stderr
    assert "shutting down" in stderr


def _gate(server: ServerThread, name: str) -> Gate:
    """Put the real runtime of ``name`` version 1 behind a :class:`Gate` the test opens."""
    loaded = server.server.service.registry.get(name, 1)
    loaded.runtime = Gate(loaded.runtime)
    return loaded.runtime


def _runs(gate: Gate) -> list[int]:
    """``n`` of each computation the model completed, in order."""
    return [int(inputs["n"].max()) for inputs in gate.finished]


def test_expired_grpc_deadline_is_not_computed(tmp_path, dataplane) -> None:
    build_slow(tmp_path)
    config = ServerConfig(model_path=tmp_path, grpc_port=0, rest_port=0, inference_threads=1, dataplane=dataplane)
    with ServerThread(config) as server:
        gate = _gate(server, "slow")
        before = scrape(server.rest_target)
        with ThreadPoolExecutor(1) as pool, Client(server.grpc_target, timeout=60) as client:
            gate.hold()  # the first request occupies the only inference thread until released
            first = pool.submit(client.predict, "slow", slow_inputs(20))
            assert gate.entered.wait(30), "the first request never reached the model"
            # Queued behind the held computation with a 0.2 s deadline: it expires in the queue.
            with pytest.raises(Exception, match="deadline exceeded"):
                client.predict("slow", slow_inputs(21), timeout=0.2)
            gate.release()
            np.testing.assert_allclose(first.result(timeout=60)["y"], slow_expected(20), rtol=1e-5, atol=1e-6)
            client.predict("slow", slow_inputs(10))  # the inference thread's queue is empty again
        after = scrape(server.rest_target)
    assert _runs(gate) == [20, 10]
    labels = {"model": "slow", "api": "Predict", "entrypoint": "GRPC"}
    assert request_count(after, status="OK", **labels) - request_count(before, status="OK", **labels) == 2
    expired = request_count(after, status="DEADLINE_EXCEEDED", **labels)
    assert expired - request_count(before, status="DEADLINE_EXCEEDED", **labels) == 1  # skipped, not computed


def test_rest_timeout_answers_504_and_skips_what_is_still_queued(tmp_path) -> None:
    build_slow(tmp_path)
    config = ServerConfig(model_path=tmp_path, grpc_port=None, rest_port=0, rest_timeout_s=0.3, inference_threads=1)
    with ServerThread(config) as server:
        gate = _gate(server, "slow")
        url = f"{server.rest_target}/v1/models/slow:predict"

        def post(n: int) -> httpx.Response:
            return httpx.post(url, json={"inputs": {"x": [[0.5] * 64], "n": [n]}}, timeout=60)

        gate.hold()  # the first computation runs only once both requests have been answered
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(post, 20)
            assert gate.entered.wait(30), "the first request never reached the model"
            second = pool.submit(post, 21)  # queued behind the first on the only thread: expires there
            responses = [first.result(), second.result()]
        gate.release()
        for response in responses:
            assert response.status_code == 504
            assert response.json()["error"] == "slow version 1 did not answer within 300 ms (--rest_api_timeout_in_ms)"
        _wait_for(lambda: _runs(gate) == [20], 30, "the first computation to finish")
        assert post(10).status_code == 200
    assert _runs(gate) == [20, 10]


@pytest.mark.slow
def test_64_mib_request_is_served(tmp_path, dataplane) -> None:
    build_wide(tmp_path)
    x = np.random.default_rng(0).random((4096, WIDTH), dtype=np.float32)  # 64 MiB
    assert x.nbytes == 64 * 2**20
    config = ServerConfig(model_path=tmp_path, grpc_port=0, rest_port=None, dataplane=dataplane)
    with ServerThread(config) as server, Client(server.grpc_target, timeout=120) as client:
        got = client.predict("wide", {"x": x})["s"]
    np.testing.assert_allclose(got, x.sum(axis=1), rtol=1e-4)


def test_over_the_limit_is_resource_exhausted_and_the_server_keeps_serving(tmp_path, dataplane) -> None:
    build_wide(tmp_path)
    limit = 2**20
    big = np.ones((128, WIDTH), np.float32)  # 2 MiB
    small = np.ones((2, WIDTH), np.float32)
    config = ServerConfig(model_path=tmp_path, grpc_port=0, rest_port=0, max_message_bytes=limit, dataplane=dataplane)
    with ServerThread(config) as server:
        with Client(server.grpc_target, timeout=30) as client:
            with pytest.raises(ResourceExhausted, match=r"larger than max \(\d+ vs\. 1048576\)"):
                client.predict("wide", {"x": big})
            np.testing.assert_allclose(client.predict("wide", {"x": small})["s"], [WIDTH, WIDTH])
        url = f"{server.rest_target}/v1/models/wide:predict"
        response = httpx.post(url, json={"inputs": {"x": big.tolist()}}, timeout=30)
        assert response.status_code == 429
        size = int(response.request.headers["content-length"])
        assert response.json()["error"] == (
            f"request body of {size} bytes is larger than the server's limit of 1048576 bytes (--max_request_bytes)"
        )
        response = httpx.post(url, json={"inputs": {"x": small.tolist()}}, timeout=30)
        assert response.status_code == 200 and response.json()["outputs"] == [WIDTH, WIDTH]


def test_serve_rejects_bad_lifecycle_flags(tmp_path) -> None:
    build_slow(tmp_path)
    exe = str(Path(sys.executable).with_name("deploykit"))
    for flag, value, message in (
        ("--workers", "0", "--workers must be positive"),
        ("--grace_period_seconds", "-1", "--grace_period_seconds must be positive"),
        ("--max_request_bytes", "0", "--max_request_bytes must be positive"),
        ("--max_request_bytes", str(2**31), "--max_request_bytes must be at most 2147483647"),
        ("--ssl_cert_file", str(tmp_path / "missing.pem"), "TLS needs both --ssl_cert_file and --ssl_key_file"),
    ):
        done = subprocess.run([exe, "serve", str(tmp_path), flag, value], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and message in done.stderr, (flag, done.stderr)


@pytest.mark.slow
def test_a_request_longer_than_the_grace_period_does_not_keep_the_process_alive(tmp_path) -> None:
    model = build_slow(tmp_path)
    iterations = iterations_for(30.0, model)
    grpc_port, rest_port = free_ports(2)
    process = start_serve(
        str(tmp_path), "--port", str(grpc_port), "--rest_api_port", str(rest_port), "--grace_period_seconds", "1"
    )
    rest_target = f"http://127.0.0.1:{rest_port}"
    try:
        # The client retries UNAVAILABLE until its deadline: after the server is gone, that is its answer.
        with Client(f"grpc://127.0.0.1:{grpc_port}", timeout=20) as client:
            client.wait_until_ready("slow", timeout=60)
            with ThreadPoolExecutor(1) as pool:
                stuck = pool.submit(client.predict, "slow", slow_inputs(iterations))
                _wait_for(lambda: _in_flight(rest_target) == 1, 15, "the ~30 s request in flight")
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=15)  # grace 1 s + the 2 s exit margin, far less than the computation
                with pytest.raises(Unreachable):
                    stuck.result(timeout=60)
        stderr = process.stderr.read()
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 1, stderr
    assert "still running 2 s after the 1 s grace period: exiting without them" in stderr
