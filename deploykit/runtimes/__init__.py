"""Runtimes: loaded model artifacts that map named numpy tensors to named numpy tensors.

:data:`RUNTIMES` maps an artifact format to the import string of its runtime class, so a process
imports only the framework it serves: an ONNX-serving process never imports PyTorch or TensorFlow.
A plain dict (rather than a registration decorator) keeps the list of formats visible and lazy.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from deploykit.errors import FrameworkMissing, UsageError
from deploykit.extras import missing_extra
from deploykit.runtimes.base import Runtime
from deploykit.tensors import Signature

RUNTIMES: dict[str, str] = {
    "onnx": "deploykit.runtimes.onnx:OnnxRuntime",
    "torchscript": "deploykit.runtimes.torch:TorchScriptRuntime",
    "pt2": "deploykit.runtimes.torch:ExportedProgramRuntime",
    "aoti": "deploykit.runtimes.aoti:AOTInductorRuntime",
    "savedmodel": "deploykit.runtimes.tensorflow:SavedModelRuntime",
}


def runtime_class(fmt: str) -> type[Runtime]:
    """The runtime class serving artifacts of format ``fmt`` (imports its framework)."""
    try:
        module_name, _, class_name = RUNTIMES[fmt].partition(":")
    except KeyError:
        raise UsageError(f"unknown artifact format {fmt!r}; expected one of: {', '.join(RUNTIMES)}") from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        hint = missing_extra(exc)
        if hint is None:
            raise
        raise FrameworkMissing(
            f"{fmt} models need {exc.name}, which is not installed in this environment: {hint}"
        ) from None
    return getattr(module, class_name)


def load_runtime(fmt: str, path: Path, signature: Signature | None = None, **options) -> Runtime:
    """Load the artifact at ``path``; ``signature`` names tensors for formats that carry no names.

    ``options`` go to the runtime class (e.g. ONNX Runtime ``providers`` and thread counts).
    """
    # The constructor contract (runtimes/base.py): (path, signature=None, **options).
    factory: Callable[..., Runtime] = runtime_class(fmt)
    return factory(Path(path), signature, **options)


__all__ = ["RUNTIMES", "Runtime", "load_runtime", "runtime_class"]
