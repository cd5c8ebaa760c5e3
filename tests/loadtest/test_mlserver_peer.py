"""deploykit's client and load tester against MLServer, a second real v2 server from PyPI: the bench's
peer model class (deploykit/bench/peer_servers/mlserver_onnx.py) serving an ONNX model through ONNX
Runtime in MLServer's own virtual environment (deploykit/bench/peer_envs.py; built by .ci/run in the
background, or here when missing: a failure with the reason when it cannot be installed)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from onnx_builders import write_affine_onnx

from deploykit.bench import peer_envs
from deploykit.bench.peers import start_peer
from deploykit.client import Client
from deploykit.loadtest.target import parse_load_target


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory):
    """MLServer on free ports, serving ``affine`` (y = 2x + 1)."""
    try:
        python = peer_envs.peer_python("mlserver")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        # A failure, not a skip: PyPI is reachable wherever this suite runs.
        stderr = (getattr(exc, "stderr", b"") or b"").decode(errors="replace")[-1000:]
        pytest.fail(f"MLServer could not be installed ({' '.join(peer_envs.PINS['mlserver'])}): {exc} {stderr}")
    model = write_affine_onnx(tmp_path_factory.mktemp("mlserver") / "model.onnx", 2.0, 1.0)
    log = tmp_path_factory.mktemp("mlserver-log") / "mlserver.log"
    proc = start_peer("mlserver", python, "affine", model, log)
    try:
        with Client(f"v2+grpc://127.0.0.1:{proc.port}", timeout=120) as client:
            client.wait_until_ready("affine", timeout=120)
        yield proc
    finally:
        proc.stop()


@pytest.mark.slow
def test_client_and_loadtest_against_mlserver(mlserver) -> None:
    from deploykit.loadtest.api import loadtest
    from deploykit.loadtest.runner import RunSettings

    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    for target, content in (
        (f"v2+grpc://127.0.0.1:{mlserver.port}", True),
        (f"v2+grpc://127.0.0.1:{mlserver.port}", False),
        (f"v2+http://127.0.0.1:{mlserver.http_port}", False),
    ):
        with Client(target, tensor_content=content) as client:
            assert client.predict("affine", {"x": x})["y"].tolist() == (x * 2 + 1).tolist()
    settings = RunSettings(mode="closed", levels=(2,), requests=200, warmup_s=0, window_s=0.5, max_trials=1)
    report = loadtest(parse_load_target(f"v2+grpc://127.0.0.1:{mlserver.port}/affine"), settings)
    (level,) = report["levels"]
    assert level["count"]["error"] == 0 and level["count"]["ok"] == 200, level["count"]
    assert report["engine"].startswith("mlserver"), report["engine"]
