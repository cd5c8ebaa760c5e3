"""deploykit: train twin PyTorch/TensorFlow models, export every format, prove parity, serve, load-test.

The public API (``__all__``, pinned by tests/test_public_api.py)::

    Client, AsyncClient                 the shared client (TF Serving API over gRPC or REST)
    ModelRef                            model name, version or label, signature
    TensorSpec, Signature               tensor specs shared by every layer
    serve, ServeOptions                 run a server (deploykit's or the real TF Serving)
    export_models, load_sources,        sources -> validated, versioned artifacts
    ExportOptions, ExportReport
    DeployKitError and its subclasses   the exception tree (deploykit.errors)

Importing this package is cheap: every name above is imported on first use, so ``import deploykit``
pulls in neither gRPC, numpy, PyTorch nor TensorFlow. Heavy frameworks are imported lazily by the
modules that need them (``deploykit.zoo.torch_models``, ``deploykit.zoo.keras_models``,
``deploykit.train``). The export entry point is ``export_models`` rather than ``export`` because
``deploykit.export`` is the subpackage that holds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> (module, attribute in that module); the other public names are deploykit.errors classes
_LAZY: dict[str, tuple[str, str]] = {
    "Client": ("deploykit.client", "Client"),
    "AsyncClient": ("deploykit.client", "AsyncClient"),
    "ModelRef": ("deploykit.model_ref", "ModelRef"),
    "TensorSpec": ("deploykit.tensors", "TensorSpec"),
    "Signature": ("deploykit.tensors", "Signature"),
    "serve": ("deploykit.serving.api", "serve"),
    "ServeOptions": ("deploykit.serving.options", "ServeOptions"),
    "export_models": ("deploykit.export.run", "export"),
    "ExportOptions": ("deploykit.export.run", "ExportOptions"),
    "ExportReport": ("deploykit.export.run", "ExportReport"),
    "load_sources": ("deploykit.export.sources", "load_sources"),
}

__all__ = [
    "AsyncClient",
    "Client",
    "DataError",
    "DeadlineExceeded",
    "DeployKitError",
    "ExportError",
    "ExportOptions",
    "ExportReport",
    "FailedPrecondition",
    "FrameworkMissing",
    "InvalidInput",
    "LaunchError",
    "ModelNotFound",
    "ModelNotReady",
    "ModelRef",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "RuntimeFailure",
    "ServeOptions",
    "ServingError",
    "Signature",
    "SignatureNotFound",
    "TensorSpec",
    "TrainingError",
    "Unimplemented",
    "Unreachable",
    "UsageError",
    "ValidationError",
    "WeightTransferError",
    "__version__",
    "export_models",
    "load_sources",
    "serve",
]

if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
    from deploykit.client import AsyncClient, Client
    from deploykit.errors import (
        DataError,
        DeadlineExceeded,
        DeployKitError,
        ExportError,
        FailedPrecondition,
        FrameworkMissing,
        InvalidInput,
        LaunchError,
        ModelNotFound,
        ModelNotReady,
        NotFound,
        PermissionDenied,
        ResourceExhausted,
        RuntimeFailure,
        ServingError,
        SignatureNotFound,
        TrainingError,
        Unimplemented,
        Unreachable,
        UsageError,
        ValidationError,
        WeightTransferError,
    )
    from deploykit.export.run import ExportOptions, ExportReport
    from deploykit.export.run import export as export_models
    from deploykit.export.sources import load_sources
    from deploykit.model_ref import ModelRef
    from deploykit.serving.api import serve
    from deploykit.serving.options import ServeOptions
    from deploykit.tensors import Signature, TensorSpec


def __getattr__(name: str) -> Any:
    if name in __all__:
        import importlib

        module, attribute = _LAZY.get(name, ("deploykit.errors", name))
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module 'deploykit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
