"""SIGTERM with load running (issue 13 item 10): a real ``deploykit serve`` process, closed-loop gRPC
and REST clients hammering it, a long request in flight. Every answer must be OK / 200 (served),
UNAVAILABLE / 503 (refused while draining) or a refused connection (the server is gone): never
CANCELLED (gRPC's core kills calls it has not handed to the application when its shutdown starts:
deploykit holds them until GOAWAY is out), never a reset REST connection; the request in flight
finishes.

The moment is controlled: the long request is in flight (the server's in-flight gauge says so before
the load starts) and the load has been answered many times when SIGTERM is sent.
"""

from __future__ import annotations

import signal
import threading

import numpy as np
from lifecycle_helpers import build_slow, iterations_for, scrape, slow_expected, slow_inputs, start_serve
from shutdown_load import GONE, Load

from deploykit.client import Client
from deploykit.ports import free_ports

GRPC_CLIENTS, REST_CLIENTS = 6, 3


def test_a_stop_under_load_answers_every_request_cleanly(tmp_path, dataplane) -> None:
    model = build_slow(tmp_path)
    long_iterations = iterations_for(3.0, model)  # outlives the load's start: the drain waits for it
    grpc_port, rest_port = free_ports(2)
    process = start_serve(
        str(tmp_path), "--port", str(grpc_port), "--rest_api_port", str(rest_port), "--dataplane", dataplane
    )
    rest_target = f"http://127.0.0.1:{rest_port}"
    long_answer: dict = {}
    try:
        with Client(rest_target, timeout=60) as client:
            client.wait_until_ready("slow", timeout=60)

        def long_request() -> None:
            with Client(f"grpc://127.0.0.1:{grpc_port}", timeout=120) as client:
                long_answer.update(client.predict("slow", slow_inputs(long_iterations)))

        in_flight = threading.Thread(target=long_request)
        in_flight.start()
        while not _gauge(scrape(rest_target), "deploykit_requests_in_flight"):  # nothing else runs yet
            assert in_flight.is_alive(), "the long request ended before it was seen in flight"
        load = Load(grpc_port, rest_port, "slow", slow_inputs(1), GRPC_CLIENTS, REST_CLIENTS)
        load.wait_for_answers(100)
        process.send_signal(signal.SIGTERM)
        counts = load.finish(timeout=60)
        in_flight.join(timeout=120)
        process.wait(timeout=60)
        stderr = process.stderr.read()
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, stderr
    np.testing.assert_allclose(long_answer["y"], slow_expected(long_iterations), rtol=1e-5, atol=1e-6)
    assert set(counts["grpc"]) <= {"OK", "UNAVAILABLE", GONE}, (counts, load.details)
    # REST: every answer is 200 or 503, none reset (test_closing.py holds the window that used to reset
    # a few, python/cpython#109564, open by construction).
    assert set(counts["rest"]) <= {"200", "503", GONE}, (counts, load.details)
    assert counts["grpc"][GONE] == GRPC_CLIENTS and counts["rest"][GONE] == REST_CLIENTS, counts
    assert counts["grpc"]["OK"] + counts["rest"]["200"] >= 100, counts


def _gauge(samples: dict[tuple, float], name: str) -> float:
    return sum(value for (sample, _), value in samples.items() if sample == name)
