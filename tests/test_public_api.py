"""The public API: ``deploykit.__all__`` is pinned, every name imports, and importing the package stays cheap."""

from __future__ import annotations

import subprocess
import sys

import pytest

import deploykit

PUBLIC = [
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


def test_all_is_pinned():
    assert deploykit.__all__ == PUBLIC


@pytest.mark.parametrize("name", PUBLIC)
def test_each_public_name_imports(name):
    value = getattr(deploykit, name)
    assert value is not None
    if name != "__version__":
        assert value.__doc__, f"deploykit.{name} has no docstring"
    namespace: dict = {}
    exec(f"from deploykit import {name}", namespace)
    assert namespace[name] is value


def test_errors_are_one_tree():
    from deploykit import errors

    for name in PUBLIC:
        value = getattr(deploykit, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, deploykit.DeployKitError)
            assert getattr(errors, name) is value


def test_the_entry_points_are_the_ones_the_cli_calls():
    from deploykit.export.run import export
    from deploykit.serving.api import serve

    assert deploykit.export_models is export
    assert deploykit.serve is serve


def test_import_deploykit_imports_nothing_heavy():
    heavy = ("grpc", "numpy", "torch", "tensorflow")
    code = f"import sys, deploykit; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        deploykit.no_such_name  # noqa: B018
