"""deploykit: train twin PyTorch/TensorFlow models, export every format, prove parity, serve, load-test.

Importing this package is cheap: it imports neither PyTorch nor TensorFlow. Heavy frameworks are
imported lazily by the modules that need them (``deploykit.zoo.torch_models``,
``deploykit.zoo.keras_models``, ``deploykit.train``); the client classes (``deploykit.Client``,
``deploykit.AsyncClient``) are imported on first use, with gRPC.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["AsyncClient", "Client", "__version__"]

_LAZY = {"Client": "deploykit.client", "AsyncClient": "deploykit.client"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deploykit' has no attribute {name!r}")
