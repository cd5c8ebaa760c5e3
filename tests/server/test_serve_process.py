"""`deploykit serve` as a real process; the serving path's import footprint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from deploykit.client import Client
from deploykit.export.golden import load_golden
from deploykit.ports import free_ports
from deploykit.repository import GOLDEN


def test_serving_onnx_the_client_and_the_load_tester_import_neither_framework(exported_zoo) -> None:
    repo, _ = exported_zoo
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        import numpy as np
        from deploykit.client import Client
        from deploykit.loadtest import api, runner, worker  # the load tester too
        from deploykit.report import loadtest as loadtest_report  # and its report
        from deploykit.server import ServerConfig, ServerThread
        from deploykit.server.model_config import ModelConfig

        source = ModelConfig("mlp", Path({str(repo / "mlp-torch-onnx")!r}))
        with ServerThread(ServerConfig(models=[source], grpc_port=0, rest_port=0)) as server:
            for target in (server.grpc_target, server.rest_target):
                with Client(target) as client:
                    out = client.predict("mlp", {{"x": np.zeros((2, 64), np.float32)}})
                    assert out["logits"].shape == (2, 10)
        print(",".join(m for m in ("torch", "tensorflow", "keras", "jax") if m in sys.modules) or "none")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "none"


def test_serve_command_serves_and_stops_on_sigterm(exported_zoo) -> None:
    repo, _ = exported_zoo
    grpc_port, rest_port = free_ports(2)
    exe = Path(sys.executable).with_name("deploykit")
    process = subprocess.Popen(
        [
            str(exe),
            "serve",
            "--model_base_path",
            str(repo / "cnn-torch-onnx"),
            "--model_name",
            "cnn",
            "--port",
            str(grpc_port),
            "--rest_api_port",
            str(rest_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        inputs, expected = load_golden(repo / "cnn-torch-onnx" / "1" / GOLDEN)[7]
        for target in (f"grpc://127.0.0.1:{grpc_port}", f"http://127.0.0.1:{rest_port}"):
            with Client(target, timeout=60) as client:
                client.wait_until_ready("cnn", timeout=60)
                got = client.predict("cnn", inputs)["logits"]
                np.testing.assert_allclose(got, expected["logits"], atol=1e-5, rtol=1e-5)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "ready on gRPC" in stderr and "cnn v1 (onnx)" in stderr and "shutting down" in stderr


def test_serve_usage_errors(tmp_path) -> None:
    exe = str(Path(sys.executable).with_name("deploykit"))
    done = subprocess.run([exe, "serve", str(tmp_path / "missing")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no such directory" in done.stderr
    done = subprocess.run(
        [exe, "serve", str(tmp_path), "--port", "0", "--rest_api_port", "0"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "nothing would listen" in done.stderr
