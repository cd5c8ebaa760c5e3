"""Same model, same server, same client: TF Serving's API versus the Open Inference Protocol (v2).

Run:  .venv/bin/python benchmarks/v2_vs_tfserving.py [--requests 2000] [--rounds 5] [--features 64]

Serves one ONNX model (``y = 2x + 1`` on ``float32[-1, F]``, batch 1) with ``deploykit serve``'s
Python front ends, then sends sequential requests (concurrency 1) in interleaved rounds over one gRPC
channel and one HTTP keep-alive connection, pre-serialised where the protocol allows:

* gRPC TF Serving Predict, typed ``float_val`` answer / ``tensor_content`` answer
* gRPC v2 ModelInfer, raw (``raw_input_contents``) / typed (``fp32_contents``)
* REST TF Serving ``:predict`` (JSON)
* REST v2 ``/infer`` JSON / binary tensor extension

Prints p50 and p99 latency per path and its ratio to the fastest p50, all from the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import onnx
from onnx import TensorProto, helper

from deploykit.protocol import grpc_paths, tensor_codec, v2_paths
from deploykit.protocol.protos import serving_pb2, v2_service_pb2
from deploykit.server import ServerConfig, ServerThread


def _model(path: Path, features: int) -> None:
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["t"]), helper.make_node("Add", ["t", "one"], ["y"])],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", features])],
        initializer=[
            helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True)
    onnx.save(model, str(path))


def _paths(server: ServerThread, features: int) -> dict:
    """Path name -> a zero-argument callable sending one request."""
    x = np.random.default_rng(0).standard_normal((1, features)).astype(np.float32)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}")
    http = httpx.Client(base_url=f"http://127.0.0.1:{server.server.rest_port}")

    predict = serving_pb2.PredictRequest()
    predict.model_spec.name = "m"
    predict.inputs["x"].CopyFrom(tensor_codec.from_ndarray(x, tensor_content=True))
    predict_bytes = predict.SerializeToString()
    tf_grpc = channel.unary_unary(grpc_paths.PREDICT.path)

    raw = v2_service_pb2.ModelInferRequest(model_name="m")
    raw.inputs.add(name="x", datatype="FP32", shape=[1, features])
    raw.raw_input_contents.append(x.tobytes())
    typed = v2_service_pb2.ModelInferRequest(model_name="m")
    typed.inputs.add(name="x", datatype="FP32", shape=[1, features]).contents.fp32_contents.extend(
        x.reshape(-1).tolist()
    )
    raw_bytes, typed_bytes = raw.SerializeToString(), typed.SerializeToString()
    v2_grpc = channel.unary_unary(v2_paths.MODEL_INFER.path)

    tf_json = json.dumps({"instances": x.tolist()}).encode()
    v2_json = json.dumps(
        {"inputs": [{"name": "x", "shape": [1, features], "datatype": "FP32", "data": x.reshape(-1).tolist()}]}
    ).encode()
    header = json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": [1, features], "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}}
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    v2_binary = header + x.tobytes()

    def check(response: httpx.Response) -> None:
        if response.status_code != 200:
            raise RuntimeError(response.text)

    return {
        "gRPC TF Predict (typed answer)": lambda: tf_grpc(predict_bytes),
        "gRPC TF Predict (tensor_content answer)": lambda: tf_grpc(
            predict_bytes, metadata=(("x-deploykit-tensor-content", "1"),)
        ),
        "gRPC v2 ModelInfer (raw)": lambda: v2_grpc(raw_bytes),
        "gRPC v2 ModelInfer (typed)": lambda: v2_grpc(typed_bytes),
        "REST TF :predict (JSON)": lambda: check(http.post("/v1/models/m:predict", content=tf_json)),
        "REST v2 infer (JSON)": lambda: check(http.post("/v2/models/m/infer", content=v2_json)),
        "REST v2 infer (binary)": lambda: check(
            http.post(
                "/v2/models/m/infer", content=v2_binary, headers={"Inference-Header-Content-Length": str(len(header))}
            )
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per path per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--features", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        _model(Path(tmp) / "m" / "1" / "model.onnx", args.features)
        config = ServerConfig(model_path=Path(tmp), grpc_port=0, rest_port=0, file_system_poll_seconds=0)
        with ServerThread(config) as server:
            paths = _paths(server, args.features)
            samples: dict[str, list[float]] = {name: [] for name in paths}
            for send in paths.values():  # warm-up, not recorded
                for _ in range(100):
                    send()
            for _ in range(args.rounds):  # interleaved, so drift hits every path alike
                for name, send in paths.items():
                    for _ in range(args.requests):
                        started = time.perf_counter()
                        send()
                        samples[name].append(time.perf_counter() - started)
    p50 = {name: statistics.median(values) * 1000 for name, values in samples.items()}
    fastest = min(p50.values())
    shape = f"concurrency 1, {args.rounds}x{args.requests} requests, float32[1,{args.features}]"
    print(f"| path ({shape}) | p50 ms | p99 ms | p50 vs fastest |")
    print("|---|---|---|---|")
    for name, values in samples.items():
        p99 = float(np.percentile(values, 99)) * 1000
        print(f"| {name} | {p50[name]:.3f} | {p99:.3f} | {p50[name] / fastest:.2f}x |")


if __name__ == "__main__":
    main()
