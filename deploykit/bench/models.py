"""The models the benchmark serves, and one pre-serialized request per measured case.

Zoo models come from a repository of ``deploykit export`` output (``mlp-torch-onnx``, ...; ``make
bench`` trains and exports them first). ``--quick`` and the large-tensor rows use small ONNX graphs
built here with ``onnx.helper`` (no training, no torch).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploykit.errors import UsageError

ZOO = ("mlp-torch-onnx", "cnn-torch-onnx", "transformer-torch-onnx")
IMAGE = "image"  # 1x3x224x224 float32 in, per-channel means out: transport-heavy, compute-light


@dataclass
class Case:
    name: str  # row label
    model: str  # served model name
    onnx_path: Path
    inputs: dict
    request: bytes
    request_file: Path
    response_bytes: int
    levels: tuple[int, ...]


def prepare(zoo_repo: Path | None, out: Path, quick: bool) -> Path:
    """A repository with the measured models (symlinks to the zoo's, plus generated ones)."""
    out.mkdir(parents=True, exist_ok=True)
    if quick or zoo_repo is None:
        _save(_mlp(), out / "mlp-synthetic" / "1" / "model.onnx")
    else:
        missing = [name for name in ZOO if not (zoo_repo / name).is_dir()]
        if missing:
            raise UsageError(
                f"--repo {zoo_repo} lacks {', '.join(missing)}; export the zoo first (make bench does: "
                "deploykit train --model M --framework torch && deploykit export runs/M --format onnx)"
            )
        for name in ZOO:
            link = out / name
            if not link.exists():
                link.symlink_to((zoo_repo / name).resolve())
    _save(_image(), out / IMAGE / "1" / "model.onnx")
    return out


def cases(repo: Path, work: Path, quick: bool) -> list[Case]:
    """The measured cases, the first being the small reference model (used by the floors)."""
    names = ["mlp-synthetic"] if quick else list(ZOO)
    found = [_case(repo, name, name, 1, (1, 32), work) for name in names]
    found.append(_case(repo, IMAGE, "image 1x3x224x224", 1, (1,), work))
    if not quick:
        found.append(_case(repo, IMAGE, "image 16x3x224x224", 16, (1,), work))
    return found


def compute_p50_ms(case: Case, seconds: float = 1.0) -> float:
    """In-process ONNX Runtime compute p50 for the case's inputs (what serving overhead is measured against)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(case.onnx_path), providers=["CPUExecutionProvider"])
    times = []
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop or len(times) < 20:
        started = time.perf_counter()
        session.run(None, case.inputs)
        times.append(time.perf_counter() - started)
    return float(np.percentile(times, 50) * 1000)


def _case(repo: Path, model: str, label: str, batch: int, levels, work: Path) -> Case:
    import onnxruntime as ort

    from deploykit.protocol import tensor_codec
    from deploykit.protocol.protos import serving_pb2 as pb

    path = next((repo / model).resolve().glob("*/model.onnx"))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    inputs = {}
    for spec in session.get_inputs():
        shape = [batch if i == 0 else (d if isinstance(d, int) else 1) for i, d in enumerate(spec.shape)]
        inputs[spec.name] = rng.random(shape, dtype=np.float32)
    request = pb.PredictRequest()
    request.model_spec.name = model
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tensor_codec.from_ndarray(value, tensor_content=True))
    response = pb.PredictResponse()
    response.model_spec.name = model
    response.model_spec.version.value = 1
    response.model_spec.signature_name = "serving_default"
    for spec, value in zip(session.get_outputs(), session.run(None, inputs), strict=True):
        response.outputs[spec.name].CopyFrom(tensor_codec.from_ndarray(value, tensor_content=True))
    data = request.SerializeToString()
    request_file = work / f"{label.replace(' ', '_')}.request"
    request_file.write_bytes(data)
    return Case(label, model, path, inputs, data, request_file, len(response.SerializeToString()), levels)


def _save(model, path: Path) -> None:
    import onnx

    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def _graph(nodes, inputs, outputs, initializers=()):
    from onnx import helper

    graph = helper.make_graph(nodes, "bench", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10  # ONNX Runtime refuses newer IR versions than it knows
    return model


def _mlp():
    """64 -> 32 (ReLU) -> 10, the zoo MLP's shape (digits)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np.float32), "W1"),
        numpy_helper.from_array(rng.standard_normal((32, 10)).astype(np.float32), "W2"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "W2"], ["logits"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])
    return _graph(nodes, [x], [logits], weights)


def _image():
    from onnx import TensorProto, helper

    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["means"], keepdims=0)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 224, 224])
    means = helper.make_tensor_value_info("means", TensorProto.FLOAT, ["N", 3])
    return _graph(nodes, [x], [means], [axes])
