"""A user's existing ``tensorflow_model_server`` command line runs ``deploykit serve`` unchanged.

The real binary cannot be installed on these machines; this checks deploykit's compatible mode
against TF Serving's own flag names, spellings (``--flag=value``, ``--flag=true``) and reference
files, with the reference half_plus_two model.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from conftest import TFSERVING_TESTDATA
from onnx_builders import add_version

from deploykit.client import Client
from deploykit.errors import UsageError
from deploykit.ports import free_ports
from deploykit.protocol import grpc_paths, tfserving_grpc
from deploykit.server import ServerConfig, ServerThread
from deploykit.serving.tfserving_flags import parse_grpc_channel_arguments


def _predict_request(x: list[float]):
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half"
    request.inputs["x"].dtype = 1  # DT_FLOAT
    request.inputs["x"].tensor_shape.dim.add(size=len(x))
    request.inputs["x"].float_val.extend(x)
    return request


def test_a_tensorflow_model_server_command_line(tmp_path: Path) -> None:
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    grpc_port, rest_port = free_ports(2)
    socket = tmp_path / "tfs.sock"
    argv = [
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        "--model_name=half",
        f"--model_base_path={TFSERVING_TESTDATA / 'saved_model_half_plus_two_cpu'}",
        f"--grpc_socket_path={socket}",
        "--grpc_channel_arguments=grpc.max_connection_age_ms=60000,grpc.lb_policy_name=round_robin",
        "--enable_batching=true",
        f"--batching_parameters_file={TFSERVING_TESTDATA / 'batching_config.txt'}",
        f"--monitoring_config_file={TFSERVING_TESTDATA / 'monitoring_config.txt'}",
        "--rest_api_enable_cors_support=true",
        "--enable_serialization_as_tensor_content=true",
        "--file_system_poll_wait_seconds=1",
        "--model_config_file_poll_wait_seconds=0",
        "--tensorflow_intra_op_parallelism=2",
        "--num_load_threads=2",
        "--enable_model_warmup=true",
    ]
    exe = Path(sys.executable).with_name("deploykit")
    process = subprocess.Popen([str(exe), "serve", *argv], stderr=subprocess.PIPE, text=True)
    try:
        with Client(f"grpc://127.0.0.1:{grpc_port}", timeout=120) as client:
            client.wait_until_ready("half", timeout=120)
        with grpc.insecure_channel(f"unix:{socket}") as channel:  # the unix socket, official stub
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                _predict_request([1.0, 2.0, 5.0]), timeout=60
            )
        y = response.outputs["y"]
        assert not y.float_val and y.tensor_content  # --enable_serialization_as_tensor_content
        np.testing.assert_allclose(np.frombuffer(y.tensor_content, np.float32), [2.5, 3.0, 4.5])
        reply = httpx.post(f"http://127.0.0.1:{rest_port}/v1/models/half:predict", json={"instances": [2.0, 3.0]})
        assert reply.json() == {"predictions": [3.0, 3.5]}
        assert reply.headers["Access-Control-Allow-Origin"] == "*"
        preflight = httpx.options(
            f"http://127.0.0.1:{rest_port}/v1/models/half:predict", headers={"Origin": "https://app.example"}
        )
        assert preflight.status_code == 200 and preflight.headers["Access-Control-Allow-Methods"] == "POST, GET"
        metrics = httpx.get(f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics")
        assert metrics.status_code == 200 and "# TYPE deploykit_batch_size histogram" in metrics.text
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=60)
        finally:
            process.kill()
    assert process.returncode == 0, stderr
    assert "ignoring TF Serving flag --num_load_threads" in stderr


def test_grpc_channel_arguments_parse_as_tf_serving() -> None:
    assert parse_grpc_channel_arguments("grpc.max_connection_age_ms=2000, grpc.lb_policy_name=round_robin") == [
        ("grpc.max_connection_age_ms", 2000),
        ("grpc.lb_policy_name", "round_robin"),
    ]
    assert parse_grpc_channel_arguments("") == []
    with pytest.raises(UsageError, match="'grpc.keepalive' is not key=value"):
        parse_grpc_channel_arguments("grpc.keepalive")


def test_grpc_on_a_unix_socket_only(tmp_path: Path) -> None:
    add_version(tmp_path / "affine", 1)
    socket = tmp_path / "only.sock"
    config = ServerConfig(model_path=tmp_path / "affine", grpc_port=None, rest_port=None, grpc_socket_path=socket)
    with ServerThread(config):  # no TCP port at all
        deadline = time.monotonic() + 30
        while not socket.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with grpc.insecure_channel(f"unix:{socket}") as channel:
            call = channel.unary_unary(
                grpc_paths.GET_MODEL_STATUS.path,
                request_serializer=grpc_paths.GET_MODEL_STATUS.request.SerializeToString,
                response_deserializer=grpc_paths.GET_MODEL_STATUS.response.FromString,
            )
            found = tfserving_grpc.statuses(call(tfserving_grpc.status_request("affine"), timeout=30))
    assert [(s.version, s.state) for s in found] == [(1, "AVAILABLE")]
