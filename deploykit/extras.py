"""Which extra of ``pyproject.toml`` installs an optional dependency (base layer: imports nothing).

The CLI names the extra when a command's import fails; the server names it when a model's
framework is missing (a TorchScript version in a lean ``deploykit[serve]`` install).
"""

from __future__ import annotations

#: Top-level modules of optional dependencies -> the extra of pyproject.toml that installs them.
EXTRAS = {
    "hdrh": "loadtest",
    "matplotlib": "loadtest",
    "onnxruntime": "serve",
    "torch": "torch",
    "safetensors": "torch",
    "onnxscript": "torch",
    "tensorflow": "tf",
    "keras": "tf",
    "tf2onnx": "tf",
    "onnx": "torch",  # also in the tf extra
    "sklearn": "data",
    "locust": "locust",
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The install command for the extra that provides the missing module, if it is an optional one."""
    top = (exc.name or "").split(".")[0]
    return f"pip install 'deploykit[{EXTRAS[top]}]'" if top in EXTRAS else None
