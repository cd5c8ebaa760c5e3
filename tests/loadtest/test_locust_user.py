"""The Locust user class drives the same requests through the shared client (real locust, headless)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from deploykit.server import ServerConfig, ServerThread
from deploykit.server.model_config import ModelConfig

#: Runs Locust as a library with two users of deploykit's Locust user until they have sent
#: REQUESTS requests (a count, not a duration: how many fit in N seconds depends on the machine's
#: load), then prints the user's statistics as JSON.
DRIVER = """
import json, sys
import locust  # first, as the locust command does: gevent's monkey-patching
import gevent
from locust.env import Environment
from deploykit.loadtest.locust_user import DeploykitUser

host, kind, wanted = sys.argv[1], sys.argv[2], int(sys.argv[3])
DeploykitUser.host = host
env = Environment(user_classes=[DeploykitUser])
runner = env.create_local_runner()
runner.start(2, spawn_rate=2)
while env.stats.total.num_requests < wanted:
    gevent.sleep(0.05)
runner.quit()
entry = env.stats.get("mlp", kind)
kinds = sorted(method for _, method in env.stats.entries)
print(json.dumps({"requests": entry.num_requests, "failures": entry.num_failures, "kinds": kinds}))
"""
REQUESTS = 20


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_locust_drives_deploykit_serve(exported_zoo, transport: str) -> None:
    repo, _ = exported_zoo
    source = ModelConfig("mlp", repo / "mlp-torch-onnx")
    with ServerThread(ServerConfig(models=[source], grpc_port=0, rest_port=0)) as server:
        host = f"{server.grpc_target}/mlp" if transport == "grpc" else f"{server.rest_target}/v1/models/mlp"
        done = subprocess.run(
            [sys.executable, "-c", DRIVER, host, transport, str(REQUESTS)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    # Every request went through deploykit's client, over the transport asked for, and succeeded.
    assert stats["requests"] >= REQUESTS
    assert stats["failures"] == 0
    assert stats["kinds"] == [transport]
