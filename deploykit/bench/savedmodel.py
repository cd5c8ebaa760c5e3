"""The bench's TF Serving compatible-mode row: ``deploykit serve`` serving a SavedModel (TensorFlow runtime).

What a TF Serving user compares against: the zoo MLP's Keras twin exported as a SavedModel, served by
deploykit's TensorFlow runtime and measured over TF Serving's gRPC Predict by the same client
(:mod:`deploykit.bench.probe` ``--protocol tfserving``) with the same input tensor as the ONNX rows. The
zoo repository is used when it holds ``mlp-tf-savedmodel``; otherwise one is trained (one epoch: speed does
not depend on the weights) and exported in the bench's work directory when TensorFlow is installed.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np

NAME = "mlp-tf-savedmodel"
LABEL = "deploykit serve, TF Serving compatible mode (SavedModel, TensorFlow runtime)"
CLI = [sys.executable, "-c", "from deploykit.cli import main; main()"]


def commands(work: Path) -> list[list[str]]:
    """The two ``deploykit`` commands that make the SavedModel (the bench runs them with its own Python)."""
    run = work / "runs" / "mlp"
    return [
        ["train", "--model", "mlp", "--framework", "tf", "--epochs", "1", "--out", str(run)],
        ["export", str(run), "--framework", "tf", "--format", "savedmodel", "--repo", str(work / "savedmodel")],
    ]


def prepare(zoo_repo: Path | None, work: Path, quick: bool) -> tuple[Path | None, str]:
    """A repository serving only the SavedModel, or None and why it is not measured."""
    if quick:
        return None, "Not measured: quick mode (training and exporting a SavedModel imports TensorFlow: ~1 min)"
    repo = work / "savedmodel"
    if zoo_repo is not None and (zoo_repo / NAME).is_dir():
        repo.mkdir(parents=True, exist_ok=True)
        if not (repo / NAME).exists():
            (repo / NAME).symlink_to((zoo_repo / NAME).resolve())
        return repo, ""
    if (repo / NAME).is_dir():
        return repo, ""
    if importlib.util.find_spec("tensorflow") is None:
        return None, "Not measured: TensorFlow is not installed (`pip install deploykit[tf]` enables this row)"
    for command in commands(work):
        result = subprocess.run([*CLI, *command], capture_output=True, text=True)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip()[-300:]
            return None, f"Not measured: `deploykit {' '.join(command)}` failed ({result.returncode}): {tail}"
    return repo, ""


def request_file(inputs: dict[str, np.ndarray], work: Path) -> Path:
    """A serialized TF Serving ``PredictRequest`` for the SavedModel (``tensor_content``), written in ``work``."""
    from deploykit.protocol import tensor_codec
    from deploykit.protocol.protos import serving_pb2 as pb

    request = pb.PredictRequest()
    request.model_spec.name = NAME
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tensor_codec.from_ndarray(value, tensor_content=True))
    path = work / f"{NAME}.request"
    path.write_bytes(request.SerializeToString())
    return path
