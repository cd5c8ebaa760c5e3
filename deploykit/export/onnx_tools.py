"""Post-processing every ONNX file deploykit writes: names, metadata, and the checks that matter.

tf2onnx converts with ``continue_on_error=True`` (export-parity.md §3.1): a TensorFlow op without an
ONNX converter is left in the graph and the conversion still "succeeds". :func:`finalize` therefore
lists every node whose op has no ONNX schema and fails with their names, then runs the full checker.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx

from deploykit.errors import ExportError

#: Name given to the dynamic batch dimension of every input and output.
BATCH_DIM = "batch"


def _unknown_ops(model: onnx.ModelProto) -> Counter:
    imported = {o.domain or "": o.version for o in model.opset_import}
    unknown: Counter = Counter()
    for node in model.graph.node:
        domain = node.domain or ""
        if domain in ("", "ai.onnx") and onnx.defs.has(node.op_type, domain):
            continue
        if domain not in ("", "ai.onnx") and domain in imported:
            continue  # a custom domain the model declares; onnxruntime decides at load time
        unknown[f"{domain + '.' if domain else ''}{node.op_type}"] += 1
    return unknown


def _name_batch_dims(model: onnx.ModelProto) -> None:
    """Give leading dynamic dims a stable name (tf2onnx invents ``unk__N``)."""
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = BATCH_DIM


def finalize(path: Path, metadata: dict[str, str], artifact: str) -> None:
    """Name batch dims, stamp ``metadata_props``, refuse unconvertible ops, run the full checker."""
    model = onnx.load(str(path))  # loads external data too
    unknown = _unknown_ops(model)
    if unknown:
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(unknown.items()))
        raise ExportError(f"{artifact}: the converter left ops that have no ONNX equivalent: {ops}")
    _name_batch_dims(model)
    del model.metadata_props[:]
    for key, value in sorted(metadata.items()):
        model.metadata_props.add(key=key, value=str(value))
    external = (
        any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
        or path.with_name(path.name + ".data").exists()
    )
    if external:
        onnx.save(
            model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=path.name + ".data"
        )
    else:
        onnx.save(model, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{artifact}: onnx.checker rejected the model: {' '.join(str(exc).split())}") from exc
