"""AOTInductor packages (``model.aoti.pt2``): compiled ahead of time by ``deploykit export --format
aoti``, loaded with ``torch._inductor.aoti_load_package`` (imports torch).

A package is compiled for one device (CPU here; CUDA where the exporting machine had a GPU) and
runs there: inputs are moved to the package's device and outputs back to the host. The call holds
the GIL and one package instance runs one call at a time (best-deploy-paths.md §1.3); parallelism
comes from the OpenMP threads inside its kernels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from deploykit.runtimes.torch import _TorchRuntime, _writable, outputs_by_name
from deploykit.tensors import Tensors

#: Artifact name inside a version directory (see ``deploykit.export.convert.ARTIFACT_PATHS``).
PACKAGE = "model.aoti.pt2"


class AOTInductorRuntime(_TorchRuntime):
    """``aoti_load_package`` of an AOTInductor package, on the device it was compiled for."""

    format = "aoti"
    engine = "torch.aoti"

    def _load(self, path: Path):
        from torch._inductor import aoti_load_package

        package = path / PACKAGE if path.is_dir() else path
        compiled = aoti_load_package(str(package))
        metadata = compiled.get_metadata()
        #: "cpu" or "cuda", as recorded by AOTInductor in the package.
        self.device = metadata.get("AOTI_DEVICE_KEY", "cpu")
        return compiled

    def predict(self, inputs: Tensors, signature_name: str | None = None) -> Tensors:
        signature = self.signature_named(signature_name)
        args = [torch.from_numpy(_writable(inputs[name])).to(self.device) for name in signature.input_names]
        with torch.inference_mode():
            result = self.module(*args)
        return outputs_by_name(result, signature.output_names)

    def describe(self) -> dict[str, Any]:
        return {
            "engine": "torch.aoti",
            "version": torch.__version__,
            "device": self.device,
            # Inductor bakes its OpenMP thread count in at compile time (the manifest's converter
            # record says how many); this is the process's torch setting.
            "threads": torch.get_num_threads(),
        }
