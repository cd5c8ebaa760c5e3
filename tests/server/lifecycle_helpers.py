"""Helpers for the lifecycle, limits, TLS, workers and metrics tests: small real ONNX models, a
``deploykit serve`` subprocess, a Prometheus scrape.

``slow``: y = x run through ``n`` iterations of tanh(x @ (I/2)) in an ONNX Loop, so a request's
service time is chosen by the caller (``n``) on a real runtime. ``wide``: s = ReduceSum(x, axis 1)
over a [N, 4096] float input, for requests of tens of MiB.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import onnx
from onnx import TensorProto, helper
from prometheus_client.parser import text_string_to_metric_families

WIDTH = 4096


def _save(model: onnx.ModelProto, repo: Path, name: str) -> Path:
    model.ir_version = 10  # onnx 1.23 stamps IR 14, which ONNX Runtime refuses (DESIGN.md §7)
    onnx.checker.check_model(model)
    directory = repo / name / "1"
    directory.mkdir(parents=True)
    onnx.save(model, directory / "model.onnx")
    return repo / name


def build_slow(repo: Path, name: str = "slow") -> Path:
    """``slow``: inputs x float32 [-1, 64], n int64 [-1] (iterations: max of n); output y [-1, 64]."""
    weight = helper.make_tensor("W", TensorProto.FLOAT, [64, 64], (np.eye(64, dtype=np.float32) / 2).ravel())
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["acc_in", "W"], ["product"]),
            helper.make_node("Tanh", ["product"], ["acc_out"]),
        ],
        "iteration",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, None),
        ],
        [weight],
    )
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["true"], value=helper.make_tensor("t", TensorProto.BOOL, [], [True])),
            helper.make_node("ReduceMax", ["n"], ["trips"], keepdims=0),
            helper.make_node("Loop", ["trips", "true", "x"], ["y"], body=body),
        ],
        "slow",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64]),
            helper.make_tensor_value_info("n", TensorProto.INT64, [None]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 64])],
    )
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), repo, name)


def slow_inputs(iterations: int) -> dict[str, np.ndarray]:
    return {"x": np.full((1, 64), 0.5, np.float32), "n": np.array([iterations], np.int64)}


def slow_expected(iterations: int) -> np.ndarray:
    """What ``slow`` computes, in numpy."""
    y = np.full((1, 64), 0.5, np.float32)
    for _ in range(iterations):
        y = np.tanh(y / 2)
    return y


def iterations_for(seconds: float, repo_model: Path) -> int:
    """Loop iterations that take about ``seconds`` on this machine (measured with ONNX Runtime)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(repo_model / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    probe = 20000
    started = time.perf_counter()
    session.run(None, slow_inputs(probe))
    per_iteration = (time.perf_counter() - started) / probe
    return max(int(seconds / per_iteration), 1000)


def build_wide(repo: Path, name: str = "wide") -> Path:
    """``wide``: input x float32 [-1, 4096]; output s float32 [-1] = the sum of each row."""
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["axes"], value=helper.make_tensor("a", TensorProto.INT64, [1], [1])),
            helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=0),
        ],
        "wide",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, WIDTH])],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, [None])],
    )
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), repo, name)


def scrape(rest_target: str, path: str = "/monitoring/prometheus/metrics", **httpx_options) -> dict[tuple, float]:
    """Every sample of the server's Prometheus page: (name, sorted label items) -> value."""
    response = httpx.get(rest_target + path, timeout=30, **httpx_options)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def request_count(samples: dict[tuple, float], **labels: str) -> float:
    """Sum of ``deploykit_requests_total`` over the samples whose labels include ``labels``."""
    return sum(
        value
        for (name, items), value in samples.items()
        if name == "deploykit_requests_total" and labels.items() <= dict(items).items()
    )


def start_serve(*args: str) -> subprocess.Popen:
    """``deploykit serve ARGS`` as a real process (stderr captured, text)."""
    exe = Path(sys.executable).with_name("deploykit")
    return subprocess.Popen(
        [str(exe), "serve", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def stop_serve(process: subprocess.Popen, timeout: float = 60) -> str:
    """SIGTERM a :func:`start_serve` process, wait for it to exit; its stderr."""
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=timeout)
    return process.stderr.read() if process.stderr else ""
