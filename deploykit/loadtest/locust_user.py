"""A Locust user built on deploykit's shared client, for load beyond one machine.

::

    locust -f deploykit/loadtest/locust_user.py --host grpc://HOST:8500/MODEL           # or http://HOST:8501/v1/models/MODEL
    locust -f deploykit/loadtest/locust_user.py --master ...   /   --worker --master-host ...   # distributed

Each simulated user sends the same Predict requests as ``deploykit loadtest`` (inputs generated from
the model's metadata, ``DEPLOYKIT_BATCH_SIZE`` rows, seed ``DEPLOYKIT_SEED``) through
:class:`deploykit.client.Client`, back to back (closed loop, ``wait_time = constant(0)``).

Resolution limit: Locust's statistics round response times to whole milliseconds below 100 ms
(and coarser above), so sub-millisecond gRPC latencies are not resolved, and its closed-loop users
do not correct for coordinated omission. Use it to generate load from many machines; measure with
``deploykit loadtest`` (HDR histograms, µs resolution, open loop) where precision matters.
"""

from __future__ import annotations

import os
import time

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()  # grpc must cooperate with Locust's gevent loop; before any channel exists

from locust import User, constant, task  # noqa: E402

from deploykit.client import Client  # noqa: E402
from deploykit.loadtest.payload import load_inputs  # noqa: E402
from deploykit.loadtest.target import parse_load_target  # noqa: E402


class DeploykitUser(User):
    """Predicts against ``--host`` (a deploykit load-test target URL) in a closed loop."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.target = parse_load_target(self.host or "", os.environ.get("DEPLOYKIT_SIGNATURE", ""))
        timeout = float(os.environ.get("DEPLOYKIT_TIMEOUT", "30"))
        self.client = Client(self.target.client_target, timeout=timeout, tls=self.target.tls)
        self.inputs = load_inputs(
            self.target,
            self.client,
            npz=None,
            batch_size=int(os.environ.get("DEPLOYKIT_BATCH_SIZE", "1")),
            seed=int(os.environ.get("DEPLOYKIT_SEED", "0")),
        )
        self.kind = "rest" if self.target.is_rest else "grpc"

    def on_stop(self) -> None:
        self.client.close()

    @task
    def predict(self) -> None:
        started = time.perf_counter()
        error = None
        try:
            self.client.predict(
                self.target.model,
                self.inputs,
                version=self.target.version,
                label=self.target.label,
                signature=self.target.signature,
            )
        except Exception as exc:  # reported to Locust as a failure, never raised into gevent
            error = exc
        self.environment.events.request.fire(
            request_type=self.kind,
            name=self.target.model,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=error,
            context={},
        )
