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
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from deploykit.errors import UsageError
from deploykit.ports import free_ports
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


def test_serve_engine_triton_starts_waits_for_and_stops_a_stand_in(deployment, tmp_path) -> None:
    binary = tmp_path / "tritonserver"
    binary.write_text(STAND_IN.format(python=sys.executable))
    binary.chmod(0o755)
    record_file = tmp_path / "argv.json"
    http, grpc_port, metrics = free_ports(3)
    env = {**os.environ, "STAND_IN_ARGV": str(record_file), "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = [
        sys.executable,
        "-m",
        "deploykit",
        "serve",
        str(deployment),
        "--engine",
        "triton",
        "--triton-binary",
        str(binary),
        "--port",
        str(grpc_port),
        "--rest_api_port",
        str(http),
        "--triton-metrics-port",
        str(metrics),
    ]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not any("Triton ready on HTTP" in line for line in lines):  # the launcher saw v2 readiness
            assert process.poll() is None and time.monotonic() < deadline, "".join(lines)
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
        process.wait(60)
        reader.join(10)
    output = "".join(lines)
    assert process.returncode == 0, output
    assert "deploykit serve: engine Triton" in output, output
    assert "Triton ready on HTTP" in output, output
    assert "[tritonserver] I1201 stand-in tritonserver: loading" in output  # its log, forwarded and prefixed
    assert "tritonserver stopped (exit status 0)" in output


def test_without_binary_or_engine_it_falls_back_with_the_deployments_models(deployment, monkeypatch) -> None:
    from deploykit.serving.api import server_config
    from deploykit.serving.options import ServeOptions

    monkeypatch.setenv("PATH", "/nonexistent")
    options = ServeOptions.parse(path=deployment, engine="triton")
    fallback = launcher.launch(options)
    assert "engine deploykit" in fallback.line and "no tritonserver on PATH" in fallback.line
    config = server_config(fallback.apply(options))
    (model,), _ = config.initial_models()
    assert (model.name, model.policy.kind, model.policy.versions) == ("mlp-torch-onnx", "specific", (1,))
    assert (config.batching.max_batch_size, config.batching.batch_timeout_micros) == (8, 300)
    docker = launcher.launch(ServeOptions.parse(path=deployment, engine="triton", docker=True))
    assert "--docker: no Docker engine reachable" in docker.line
    with pytest.raises(UsageError, match="--version-policy with --engine triton"):
        launcher.launch(ServeOptions.parse(path=deployment, engine="triton", version_policy="all"))


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
