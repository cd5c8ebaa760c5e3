"""``deploykit serve --workers 2``: two processes share the ports, a killed worker is restarted, the
metrics count every worker's requests, SIGTERM drains them all."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import numpy as np
import pytest
from lifecycle_helpers import build_slow, request_count, scrape, slow_expected, slow_inputs, start_serve, stop_serve

from deploykit.client import Client
from deploykit.ports import free_ports
from deploykit.protocol import grpc_paths, tfserving_grpc
from deploykit.protocol.wire import WORKER_KEY


@pytest.mark.slow
def test_two_workers_share_the_ports_survive_a_kill_and_sum_their_metrics(tmp_path) -> None:
    build_slow(tmp_path)
    grpc_port, rest_port = free_ports(2)
    process = start_serve(str(tmp_path), "--workers", "2", "--port", str(grpc_port), "--rest_api_port", str(rest_port))
    rest_target = f"http://127.0.0.1:{rest_port}"
    url = f"{rest_target}/v1/models/slow:predict"
    body = {"inputs": {"x": [[0.5] * 64], "n": [3]}}
    answered = 0

    def predict_pid() -> str:
        """One predict on a new connection (the kernel picks the worker per connection)."""
        nonlocal answered
        response = httpx.post(url, json=body, timeout=30, headers={"Connection": "close"})
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(response.json()["outputs"], slow_expected(3), rtol=1e-5)
        answered += 1
        return response.headers[WORKER_KEY]

    try:
        with Client(rest_target, timeout=120) as client:
            client.wait_until_ready("slow", timeout=120)
        pids: set[str] = set()
        deadline = time.monotonic() + 120
        while len(pids) < 2 and time.monotonic() < deadline:  # the second worker may still be loading
            pids.add(predict_pid())
        assert len(pids) == 2, pids
        assert str(process.pid) not in pids  # the supervisor serves nothing itself

        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            call = channel.unary_unary(
                grpc_paths.PREDICT.path,
                request_serializer=grpc_paths.PREDICT.request.SerializeToString,
                response_deserializer=grpc_paths.PREDICT.response.FromString,
            )
            _, grpc_call = call.with_call(tfserving_grpc.predict_request("slow", slow_inputs(3)), timeout=30)
            assert dict(grpc_call.trailing_metadata())[WORKER_KEY] in pids

        victim = sorted(pids)[0]
        os.kill(int(victim), signal.SIGKILL)
        # Connections made before the kernel has torn the victim down land in its backlog and die with
        # it; from the moment it is gone (the supervisor reaped it) every request must succeed.
        _wait_until_gone(int(victim))
        seen_after_kill: set[str] = set()
        deadline = time.monotonic() + 120
        while len(seen_after_kill - pids) < 1 and time.monotonic() < deadline:  # until the replacement answers
            seen_after_kill.add(predict_pid())  # every request succeeds meanwhile
        assert victim not in seen_after_kill
        assert len(seen_after_kill - pids) == 1, seen_after_kill  # the restarted worker

        samples = scrape(rest_target)
        ok = {"model": "slow", "api": "Predict", "entrypoint": "REST", "status": "OK"}
        assert request_count(samples, **ok) == answered  # summed over all workers, the killed one included
        assert request_count(samples, model="slow", api="Predict", entrypoint="GRPC", status="OK") == 1

        stderr = stop_serve(process)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, stderr
    assert f"(pid {victim}) died (exit code -9); restarting it" in stderr, stderr
    assert "ready on gRPC" in stderr and "workers: " in stderr and "shutting down" in stderr


def _wait_until_gone(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    raise AssertionError(f"pid {pid} still exists {timeout:g} s after SIGKILL")


@pytest.mark.slow
def test_connections_waiting_for_a_killed_worker_are_answered_by_another(tmp_path) -> None:
    """REST connections in the accept queue when a worker is killed are not reset: the workers share
    the supervisor's listening socket (one queue), so the survivor accepts them. Both workers are
    stopped (SIGSTOP) while the connections arrive, so they are all still waiting, by construction,
    when one worker is killed."""
    build_slow(tmp_path)
    grpc_port, rest_port = free_ports(2)
    process = start_serve(str(tmp_path), "--workers", "2", "--port", str(grpc_port), "--rest_api_port", str(rest_port))
    url = f"http://127.0.0.1:{rest_port}/v1/models/slow:predict"
    body = {"inputs": {"x": [[0.5] * 64], "n": [3]}}
    try:
        with Client(f"http://127.0.0.1:{rest_port}", timeout=120) as client:
            client.wait_until_ready("slow", timeout=120)
        pids: set[str] = set()
        deadline = time.monotonic() + 120
        while len(pids) < 2 and time.monotonic() < deadline:  # the second worker may still be loading
            response = httpx.post(url, json=body, timeout=30, headers={"Connection": "close"})
            assert response.status_code == 200, response.text
            pids.add(response.headers[WORKER_KEY])
        assert len(pids) == 2, pids
        victim, survivor = (int(pid) for pid in sorted(pids))
        for pid in (victim, survivor):
            os.kill(pid, signal.SIGSTOP)
        with ThreadPoolExecutor(12) as pool:  # 12 connections: with one queue per worker, some would be the victim's
            sockets = [socket.create_connection(("127.0.0.1", rest_port), timeout=60) for _ in range(12)]
            answers = [pool.submit(_post_on, sock, body) for sock in sockets]
            os.kill(victim, signal.SIGKILL)
            _wait_until_gone(victim)
            os.kill(survivor, signal.SIGCONT)
            for answer in answers:  # by the survivor (or by the victim's replacement, once it serves)
                status, worker = answer.result(timeout=90)
                assert status == 200 and worker != str(victim), (status, worker)
        deadline = time.monotonic() + 120
        while len(pids) < 3 and time.monotonic() < deadline:  # the supervisor replaced the victim
            response = httpx.post(url, json=body, timeout=30, headers={"Connection": "close"})
            assert response.status_code == 200, response.text
            pids.add(response.headers[WORKER_KEY])
        assert len(pids) == 3, pids
        stderr = stop_serve(process)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, stderr


def _post_on(sock: socket.socket, body: dict) -> tuple[int, str]:
    """One HTTP/1.1 predict on an already connected socket: (status, answering worker)."""
    payload = json.dumps(body).encode()
    head = "POST /v1/models/slow:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    sock.sendall(f"{head}Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
    with sock, sock.makefile("rb") as answer:
        status = int(answer.readline().split()[1])
        headers = dict(line.decode().split(":", 1) for line in iter(answer.readline, b"\r\n"))
    return status, {k.lower(): v.strip() for k, v in headers.items()}[WORKER_KEY.lower()]
