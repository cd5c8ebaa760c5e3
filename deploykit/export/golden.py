"""The golden file of a version directory (:data:`deploykit.repository.GOLDEN`): the validation
inputs and the source's outputs per batch size, which ``deploykit validate`` compares against."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploykit.errors import ValidationError
from deploykit.tensors import Tensors


def save_golden(path: Path, cases: dict[int, tuple[Tensors, Tensors]]) -> None:
    """Store validation inputs and reference outputs per batch size: ``b{N}/in/NAME``, ``b{N}/out/NAME``."""
    arrays = {}
    for batch, (inputs, outputs) in cases.items():
        arrays.update({f"b{batch}/in/{k}": v for k, v in inputs.items()})
        arrays.update({f"b{batch}/out/{k}": v for k, v in outputs.items()})
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def load_golden(path: Path) -> dict[int, tuple[Tensors, Tensors]]:
    """Inverse of :func:`save_golden`."""
    cases: dict[int, tuple[Tensors, Tensors]] = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            for key in archive.files:
                batch, kind, name = key.split("/", 2)
                inputs, outputs = cases.setdefault(int(batch.removeprefix("b")), ({}, {}))
                (inputs if kind == "in" else outputs)[name] = archive[key]
    except (OSError, ValueError) as exc:
        raise ValidationError(f"{path}: not a deploykit golden file ({exc})") from exc
    if not cases:
        raise ValidationError(f"{path}: golden file holds no cases")
    return cases
