"""Closed-loop load for stop tests: gRPC and REST clients that hammer a server until it is gone and
record every answer, so a test can assert that a stop under load answers each request cleanly.

Each gRPC client has its own channel (its own connection: ``grpc.use_local_subchannel_pool``), each
REST client its own keep-alive connection. A client sends its next request as soon as it has the
answer to the last one, and stops once the server refuses connections (it is gone).
"""

from __future__ import annotations

import collections
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx

from deploykit.protocol import grpc_paths, tfserving_grpc

#: Answers that say the server is gone (no connection): the client stops.
GONE = "refused"


class Load:
    """``grpc_clients`` + ``rest_clients`` closed-loop clients sending ``inputs`` to ``model``."""

    def __init__(self, grpc_port: int, rest_port: int, model: str, inputs: dict, grpc_clients: int, rest_clients: int):
        self.grpc_port, self.rest_port = grpc_port, rest_port
        self.request = tfserving_grpc.predict_request(model, inputs)
        self.url = f"http://127.0.0.1:{rest_port}/v1/models/{model}:predict"
        self.body = {"inputs": {name: value.tolist() for name, value in inputs.items()}}
        self.counts = {"grpc": collections.Counter(), "rest": collections.Counter()}
        self.details: list[str] = []  # what an unexpected answer said
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._answered = threading.Semaphore(0)
        self._pool = ThreadPoolExecutor(grpc_clients + rest_clients)
        self._futures = [self._pool.submit(self._grpc_client) for _ in range(grpc_clients)]
        self._futures += [self._pool.submit(self._rest_client) for _ in range(rest_clients)]

    def _record(self, kind: str, outcome: str, detail: str = "") -> None:
        with self._lock:
            self.counts[kind][outcome] += 1
            if detail:
                self.details.append(f"{kind} {outcome}: {detail}")
        self._answered.release()

    def wait_for_answers(self, count: int, timeout: float = 60) -> None:
        """Return once ``count`` more answers (of any kind) arrived."""
        for _ in range(count):
            assert self._answered.acquire(timeout=timeout), f"no answer within {timeout} s: {self.counts}"

    def _grpc_client(self) -> None:
        options = [("grpc.use_local_subchannel_pool", 1)]  # a connection of its own
        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}", options=options) as channel:
            predict = channel.unary_unary(
                grpc_paths.PREDICT.path,
                request_serializer=grpc_paths.PREDICT.request.SerializeToString,
                response_deserializer=grpc_paths.PREDICT.response.FromString,
            )
            while not self._stop.is_set():
                try:
                    predict(self.request, timeout=30)
                    self._record("grpc", "OK")
                except grpc.RpcError as error:
                    code, details = error.code(), error.details() or ""
                    if code == grpc.StatusCode.UNAVAILABLE and "shutting down" not in details:
                        self._record("grpc", GONE)  # no server: connection refused or closed
                        return
                    expected = code == grpc.StatusCode.UNAVAILABLE
                    self._record("grpc", code.name, "" if expected else details)

    def _rest_client(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(self.url, json=self.body)
                except httpx.ConnectError:
                    self._record("rest", GONE)
                    return
                except httpx.HTTPError as error:  # reset, closed mid-request
                    self._record("rest", type(error).__name__, repr(error))
                    continue
                self._record(
                    "rest", str(response.status_code), "" if response.status_code in (200, 503) else response.text
                )

    def finish(self, timeout: float = 60) -> dict[str, collections.Counter]:
        """Wait until every client saw the server gone (or stop them after ``timeout``); the counts."""
        try:
            for future in self._futures:
                future.result(timeout=timeout)
        finally:
            self._stop.set()
            self._pool.shutdown(wait=True)
        return self.counts
