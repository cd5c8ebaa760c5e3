"""Time from starting ``deploykit serve`` to its first answered Predict, per runtime.

Run:  .venv/bin/python benchmarks/serve_startup.py [--repeats 5]

Trains the MLP twins for one epoch, exports ONNX (from PyTorch), TorchScript and SavedModel, then
for each: spawns ``deploykit serve --model_base_path ...`` and polls Predict over gRPC until the first
answer. Prints the median and range, and each runtime's median relative to ONNX Runtime's in the
same run (the cost of importing torch or TensorFlow into the serving process).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from deploykit.client import Client
from deploykit.errors import Unreachable
from deploykit.export.run import ExportOptions, export
from deploykit.export.sources import load_sources
from deploykit.train import TrainConfig, train

ARTIFACTS = ("mlp-torch-onnx", "mlp-torch-torchscript", "mlp-tf-savedmodel")


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def first_answer_seconds(model_dir: Path) -> float:
    port = _port()
    exe = Path(sys.executable).with_name("deploykit")
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            str(exe),
            "serve",
            "--model_base_path",
            str(model_dir),
            "--model_name",
            "m",
            "--port",
            str(port),
            "--rest_api_port",
            "0",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with Client(f"grpc://127.0.0.1:{port}", timeout=0.2) as client:
            x = {"x": np.zeros((1, 64), np.float32)}
            while True:
                try:
                    client.predict("m", x)
                    return time.perf_counter() - started
                except Unreachable:
                    if time.perf_counter() - started > 120:
                        raise
    finally:
        process.terminate()
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        train(TrainConfig(model="mlp", epochs=1, out=root / "run"))
        export(
            load_sources(str(root / "run"), ("torch", "tf")),
            ExportOptions(repo=root / "models", formats=("onnx", "torchscript", "savedmodel")),
        )
        samples = {a: [first_answer_seconds(root / "models" / a) for _ in range(args.repeats)] for a in ARTIFACTS}
    base = statistics.median(samples[ARTIFACTS[0]])
    print(f"| artifact | first answer after start (s, median of {args.repeats}) | min | max | vs ONNX |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {min(values):.2f} | {max(values):.2f} | {median / base:.1f}x |")


if __name__ == "__main__":
    main()
