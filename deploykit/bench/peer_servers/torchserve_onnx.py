"""A TorchServe handler serving one ONNX model through ONNX Runtime (run by TorchServe's Python worker).

Not deploykit code and it imports none: TorchServe loads this module from the model archive that
``deploykit bench`` builds (:mod:`deploykit.bench.torchserve`). A request carries, per ONNX input NAME,
the tensor's raw little-endian bytes under NAME and its shape as text ("1,64") under NAME:shape (TorchServe's
gRPC ``PredictionsRequest.input`` map); the answer is the outputs' raw bytes, in the model's output order.
ORT_THREADS (environment): intra-op threads, as for the other peers.
"""

import os

import numpy as np
import onnxruntime as ort

DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
          "tensor(int32)": np.int32}  # fmt: skip
_session = None


def _load(context) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("ORT_THREADS", "1"))
    path = os.path.join(context.system_properties["model_dir"], "model.onnx")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _infer(session: ort.InferenceSession, request: dict) -> bytes:
    feeds = {}
    for spec in session.get_inputs():
        shape = [int(d) for d in bytes(request[f"{spec.name}:shape"]).decode().split(",")]
        feeds[spec.name] = np.frombuffer(bytes(request[spec.name]), dtype=DTYPES[spec.type]).reshape(shape)
    return b"".join(np.ascontiguousarray(value).tobytes() for value in session.run(None, feeds))


def handle(data, context):
    """TorchServe's entry point: called once with ``data=None`` to load, then with a list of requests."""
    global _session
    if _session is None:
        _session = _load(context)
    if data is None:
        return None
    return [_infer(_session, request) for request in data]
