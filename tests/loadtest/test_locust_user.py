"""The Locust user class drives the same requests through the shared client (real locust, headless)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

import deploykit.loadtest
from deploykit.server import ServerConfig, ServerThread
from deploykit.server.model_config import ModelConfig

LOCUSTFILE = Path(deploykit.loadtest.__file__).with_name("locust_user.py")


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_locust_drives_deploykit_serve(exported_zoo, tmp_path: Path, transport: str) -> None:
    repo, _ = exported_zoo
    source = ModelConfig("mlp", repo / "mlp-torch-onnx")
    with ServerThread(ServerConfig(models=[source], grpc_port=0, rest_port=0)) as server:
        host = f"{server.grpc_target}/mlp" if transport == "grpc" else f"{server.rest_target}/v1/models/mlp"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(LOCUSTFILE),
                "--headless",
                "-u",
                "2",
                "-r",
                "2",
                "-t",
                "3s",
                "--host",
                host,
                "--csv",
                str(tmp_path / "run"),
                "--only-summary",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    with open(tmp_path / "run_stats.csv") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    # How many requests fit in 3 s depends on the machine's load; that the user sends through deploykit's
    # client and every answer is a success does not.
    assert int(rows["mlp"]["Request Count"]) >= 1
    assert int(rows["mlp"]["Failure Count"]) == 0
    assert rows["mlp"]["Type"] == transport
