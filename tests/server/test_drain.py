"""Graceful drain (issue 13 item 10): while :meth:`Server.stop` waits for a request in flight, new
gRPC requests get UNAVAILABLE (retryable; never CANCELLED) and REST requests 503 with
``Connection: close`` (so no keep-alive connection is reset later); the request in flight finishes.

The request in flight is held by a :class:`runtime_doubles.Gate` on the real ONNX runtime, so it is
in flight exactly when ``stop()`` starts, by construction.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import numpy as np
from lifecycle_helpers import build_slow, slow_expected, slow_inputs
from runtime_doubles import Gate

from deploykit.client import Client
from deploykit.protocol import grpc_paths, tfserving_grpc
from deploykit.server import ServerConfig, ServerThread


def test_requests_arriving_during_the_drain_are_refused_cleanly_and_the_one_in_flight_finishes(
    tmp_path, dataplane
) -> None:
    build_slow(tmp_path)
    config = ServerConfig(model_path=tmp_path, grpc_port=0, rest_port=0, inference_threads=1, dataplane=dataplane)
    server = ServerThread(config).start()
    loaded = server.server.service.registry.get("slow", 1)
    gate = loaded.runtime = Gate(loaded.runtime)
    grpc_address = f"127.0.0.1:{server.server.grpc_port}"
    body = {"inputs": {"x": [[0.5] * 64], "n": [10]}}
    with (
        ThreadPoolExecutor(2) as pool,
        Client(server.grpc_target, timeout=60) as client,
        httpx.Client(base_url=server.rest_target, timeout=30) as rest,
    ):
        assert rest.post("/v1/models/slow:predict", json=body).status_code == 200  # a keep-alive connection
        gate.hold()
        in_flight = pool.submit(client.predict, "slow", slow_inputs(20))
        assert gate.entered.wait(30), "the first request never reached the model"
        stopping = pool.submit(server.stop, 60)
        while not server.server.admission.draining:  # stop() has begun draining
            assert not stopping.done(), stopping.exception()
            asyncio.run(asyncio.sleep(0.01))

        with grpc.insecure_channel(grpc_address) as channel:
            predict = channel.unary_unary(
                grpc_paths.PREDICT.path,
                request_serializer=grpc_paths.PREDICT.request.SerializeToString,
                response_deserializer=grpc_paths.PREDICT.response.FromString,
            )
            for _ in range(3):
                try:
                    predict(tfserving_grpc.predict_request("slow", slow_inputs(10)), timeout=30)
                    raise AssertionError("a request during the drain was served")
                except grpc.RpcError as refused:
                    assert refused.code() == grpc.StatusCode.UNAVAILABLE, refused
                    assert "shutting down" in refused.details()
        for _ in range(3):  # each on the kept-alive connection or a new one: never a reset
            response = rest.post("/v1/models/slow:predict", json=body)
            assert response.status_code == 503 and "shutting down" in response.json()["error"]
            assert response.headers["Connection"] == "close"
        assert not stopping.done()

        gate.release()
        np.testing.assert_allclose(in_flight.result(timeout=60)["y"], slow_expected(20), rtol=1e-5, atol=1e-6)
        stopping.result(timeout=90)
        try:  # after the stop: refused at connect, not reset mid-request
            rest.post("/v1/models/slow:predict", json=body)
            raise AssertionError("served after stop")
        except httpx.ConnectError:
            pass


def test_a_busy_rest_port_fails_the_start_with_its_reason(tmp_path) -> None:
    """A REST bind that fails leaves a site without a listener: stopping must not trip over it."""
    import socket

    import pytest

    from deploykit.errors import DeployKitError

    build_slow(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        config = ServerConfig(model_path=tmp_path, grpc_port=0, rest_port=busy.getsockname()[1])
        with pytest.raises((DeployKitError, OSError)) as caught:
            ServerThread(config).start()
    assert "address" in str(caught.value).lower() or "in use" in str(caught.value).lower(), caught.value
