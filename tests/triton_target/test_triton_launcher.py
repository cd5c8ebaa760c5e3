"""``deploykit serve DIR --engine triton``'s launcher against a stand-in ``tritonserver``.

The real Triton cannot be installed here (no package carries it, and there is no Docker engine), so
the stand-in is an executable that records its argv and answers through deploykit's own v2 side on
the ports it was given: the launcher must start it with the deployment's exact command line, wait
for v2 readiness, forward its log and stop it cleanly. The Docker command line is checked exactly;
without binary or engine the launcher falls back to deploykit's server with the deployment's models
and batching.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port

from deploykit.triton import commands, launcher, repository

tritonclient_grpc = pytest.importorskip("tritonclient.grpc")

pytestmark = pytest.mark.slow  # needs the exported zoo (session fixture)

STAND_IN = """#!{python}
# Stand-in for tritonserver (the real one cannot be installed here): records argv, then serves the
# --model-repository through deploykit's own server, which speaks the same v2 protocol.
import json, os, sys
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
with open(os.environ["STAND_IN_ARGV"], "w") as f:
    json.dump(sys.argv, f)
print("I1201 stand-in tritonserver: loading", args["model-repository"], flush=True)
os.execv(sys.executable, [sys.executable, "-m", "deploykit", "serve", args["model-repository"],
         "--port", args["grpc-port"], "--rest_api_port", args["http-port"], "--file_system_poll_wait_seconds", "0"])
"""


@pytest.fixture(scope="module")
def deployment(exported_zoo, tmp_path_factory) -> Path:
    zoo, _ = exported_zoo
    plan = repository.plan(zoo, repository.Options(max_queue_delay_microseconds=300), only=("mlp-torch-onnx",))
    return repository.write(plan, tmp_path_factory.mktemp("launch") / "triton").out


def _launch_in_process(deployment: Path, env: dict, **request) -> subprocess.Popen:
    code = (
        "import sys; from pathlib import Path; from deploykit.triton.launcher import TritonRequest, launch; "
        f"fallback = launch(TritonRequest(Path({str(deployment)!r}), **{request!r})); "
        "print('FALLBACK', fallback.line if fallback else None, flush=True)"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_stand_in_tritonserver_started_waited_for_and_stopped(deployment, tmp_path) -> None:
    binary = tmp_path / "tritonserver"
    binary.write_text(STAND_IN.format(python=sys.executable))
    binary.chmod(0o755)
    record_file = tmp_path / "argv.json"
    http, grpc_port, metrics = free_port(), free_port(), free_port()
    env = {**os.environ, "STAND_IN_ARGV": str(record_file), "PYTHONPATH": os.pathsep.join(sys.path)}
    process = _launch_in_process(
        deployment, env, binary=str(binary), http_port=http, grpc_port=grpc_port, metrics_port=metrics
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
            time.sleep(0.2)
        client = tritonclient_grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        x = tritonclient_grpc.InferInput("x", [2, 64], "FP32")
        x.set_data_from_numpy(np.zeros((2, 64), np.float32))
        assert client.infer("mlp-torch-onnx", [x]).as_numpy("logits").shape == (2, 10)
        client.close()
        assert json.loads(record_file.read_text()) == [
            str(binary.resolve()),
            f"--model-repository={deployment.resolve()}/models",
            f"--http-port={http}",
            f"--grpc-port={grpc_port}",
            f"--metrics-port={metrics}",
            "--model-control-mode=none",
            "--strict-readiness=true",
        ]
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "deploykit serve: engine Triton" in output and "Triton ready" in output
    assert "[tritonserver] I1201 stand-in tritonserver: loading" in output  # log forwarded, prefixed
    assert "tritonserver stopped (exit status 0)" in output and "FALLBACK None" in output


def test_without_binary_or_engine_it_falls_back_with_the_deployments_models(deployment, monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    fallback = launcher.launch(launcher.TritonRequest(deployment))
    assert "engine deploykit" in fallback.line and "no tritonserver on PATH" in fallback.line
    (model,) = fallback.models
    assert (model.name, model.policy.kind, model.policy.versions) == ("mlp-torch-onnx", "specific", (1,))
    assert (fallback.batching.max_batch_size, fallback.batching.batch_timeout_micros) == (8, 300)
    docker = launcher.launch(launcher.TritonRequest(deployment, docker=True))
    assert "--docker: no Docker engine reachable" in docker.line


def test_docker_command_line_exactly(deployment) -> None:
    argv = commands.docker_command(
        f"{deployment}/models", version="26.07", http_port=18000, grpc_port=18001, metrics_port=18002, name="n"
    )
    assert argv == [
        "docker", "run", "--rm", "--name", "n",
        "-p", "18000:8000", "-p", "18001:8001", "-p", "18002:8002",
        "-v", f"{deployment}/models:/models:ro",
        "nvcr.io/nvidia/tritonserver:26.07-py3",
        "tritonserver", "--model-repository=/models", "--http-port=8000", "--grpc-port=8001", "--metrics-port=8002",
        "--model-control-mode=none", "--strict-readiness=true",
    ]  # fmt: skip
