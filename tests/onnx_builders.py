"""Tiny ONNX models built in tests, with outputs that say which model and version computed them."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper


def write_affine_onnx(path: Path, scale: float, bias: float, features: int = 4) -> Path:
    """``y = x * scale + bias`` for ``x: float32[-1, features]``; writes ``path`` (a .onnx file)."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "scale"], ["scaled"]), helper.make_node("Add", ["scaled", "bias"], ["y"])],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", features])],
        initializer=[
            helper.make_tensor("scale", TensorProto.FLOAT, [], [scale]),
            helper.make_tensor("bias", TensorProto.FLOAT, [], [bias]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def add_version(base_path: Path, version: int, *, bias: float | None = None, broken: bool = False) -> Path:
    """Publish version ``version`` of an affine model under ``base_path`` the way a deploy does:
    written into a hidden staging directory, then renamed into place in one step (a poller never
    sees a half-written version). ``y = x + bias`` with bias defaulting to the version number."""
    staging = base_path / f".staging-{version}"
    if broken:
        staging.mkdir(parents=True)
        (staging / "model.onnx").write_bytes(b"this is not an ONNX model")
    else:
        write_affine_onnx(staging / "model.onnx", 1.0, float(version if bias is None else bias))
    target = base_path / str(version)
    staging.rename(target)
    return target


def write_shape_input_onnx(path: Path, op: str) -> Path:
    """A model whose second input is not data but a shape (``Expand``: target shape) or split sizes
    (``Split``): ``x: float32[-1, 4]``, ``sizes: int64[2]``. Random or zero values are invalid for it.

    ``Expand`` answers ``y = x`` broadcast to ``sizes``; ``Split`` answers ``a, b`` = ``x`` split on
    axis 1 into ``sizes`` columns.
    """
    if op == "Expand":
        nodes = [helper.make_node("Expand", ["x", "sizes"], ["y"])]
        outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None])]
    else:
        nodes = [helper.make_node("Split", ["x", "sizes"], ["a", "b"], axis=1)]
        outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", None]) for n in "ab"]
    graph = helper.make_graph(
        nodes,
        op.lower(),
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("sizes", TensorProto.INT64, [2]),
        ],
        outputs,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10  # onnx 1.23 stamps 14, which ONNX Runtime refuses
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
