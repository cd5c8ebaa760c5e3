"""PyTorch adapters: TorchScript (``.pt``) and torch.export programs (``.pt2``) (imports torch)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deploykit.errors import UsageError
from deploykit.runtimes.base import DEFAULT_SIGNATURE, Runtime
from deploykit.tensors import Signature, Tensors


def outputs_by_name(result, names: list[str]) -> Tensors:
    """Name a PyTorch model's outputs: a dict as is, a tensor or a tuple/list by ``names``."""
    if isinstance(result, dict):
        return {k: v.detach().cpu().numpy() for k, v in result.items()}
    values = [result] if isinstance(result, torch.Tensor) else list(result)
    if len(values) != len(names):
        raise UsageError(f"model returned {len(values)} output(s) but the signature names {len(names)}: {names}")
    return {name: v.detach().cpu().numpy() for name, v in zip(names, values, strict=True)}


def _writable(array: np.ndarray) -> np.ndarray:
    """torch refuses to wrap read-only memory without a warning; decoded requests are read-only views
    over the message bytes (zero-copy decode), so those are copied once here."""
    return array if array.flags.writeable and array.flags.c_contiguous else np.array(array, order="C")


class _TorchRuntime(Runtime):
    """Shared call path: named numpy inputs in signature order -> named numpy outputs."""

    format = ""
    #: What :meth:`describe` names as the engine.
    engine = ""

    def __init__(self, path: Path, signature: Signature | None = None) -> None:
        if signature is None:
            raise UsageError(
                f"{self.format} artifacts carry no tensor names; give the signature "
                "(deploykit records it in the version directory's deploykit.json)"
            )
        self._signature = signature
        self._signatures = {DEFAULT_SIGNATURE: signature}
        self.module = self._load(Path(path))

    def _load(self, path: Path):
        raise NotImplementedError

    @property
    def signatures(self) -> Mapping[str, Signature]:
        return self._signatures

    def describe(self) -> dict[str, Any]:
        return {"engine": self.engine, "version": torch.__version__, "threads": torch.get_num_threads()}

    def predict(self, inputs: Tensors, signature_name: str | None = None) -> Tensors:
        signature = self.signature_named(signature_name)
        args = [torch.from_numpy(_writable(inputs[name])) for name in signature.input_names]
        with torch.inference_mode():
            result = self.module(*args)
        return outputs_by_name(result, signature.output_names)

    def close(self) -> None:
        self.module = None


class TorchScriptRuntime(_TorchRuntime):
    """``torch.jit.load`` of a TorchScript archive (``model.pt``)."""

    format = "torchscript"
    engine = "torch.jit"

    def _load(self, path: Path):
        with warnings.catch_warnings():
            # TorchScript is deprecated upstream but still asked for (Triton's libtorch backend,
            # older stacks); deploykit exports .pt2 beside it. One warning per load is noise.
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path / "model.pt" if path.is_dir() else path), map_location="cpu")
        return module.eval()


class ExportedProgramRuntime(_TorchRuntime):
    """``torch.export.load`` of an ExportedProgram (``model.pt2``), run as a module."""

    format = "pt2"
    engine = "torch.export"

    def _load(self, path: Path):
        program = torch.export.load(str(path / "model.pt2" if path.is_dir() else path))
        return program.module()
