"""Finding the models a server serves and loading one version of one.

The repository layout and its version rule are :mod:`deploykit.repository`'s. The format of a
version is read from its manifest when there is one, otherwise from its files (``saved_model.pb`` →
SavedModel, ``*.onnx`` → ONNX). TorchScript and ``.pt2`` artifacts carry no tensor names, so they
need the manifest.

Which versions serve, and when they change, is :mod:`deploykit.server.manager`'s job; the table of
versions that serve is :class:`deploykit.server.registry.VersionRegistry`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploykit.errors import DeployKitError, UsageError
from deploykit.repository import MANIFEST, model_dirs, read_manifest, version_dirs
from deploykit.runtimes import Runtime, load_runtime
from deploykit.runtimes.base import DEFAULT_SIGNATURE
from deploykit.server.model_config import ModelConfig
from deploykit.tensors import Signature, random_inputs

log = logging.getLogger(__name__)


@dataclass
class LoadedVersion:
    """One version of a model: loaded (``runtime`` set) or failed (``error`` set)."""

    name: str
    version: int
    path: Path
    format: str = ""
    runtime: Runtime | None = None
    error: str | None = None
    load_seconds: float = 0.0
    signatures: dict[str, Signature] = field(default_factory=dict)
    #: TF Serving's lifecycle state: LOADING, AVAILABLE, UNLOADING or END (failed or unloaded).
    state: str = ""
    #: Requests computing on this version now; a retiring version closes when it drops to 0.
    inflight: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if not self.state:
            self.state = "AVAILABLE" if self.runtime is not None else "END"
        if self.runtime is not None and not self.signatures:
            self.signatures = dict(self.runtime.signatures)

    @property
    def available(self) -> bool:
        """Serving new requests: loaded, warmed up, not retiring."""
        return self.state == "AVAILABLE" and self.runtime is not None


def directory_fingerprint(path: Path) -> tuple:
    """What a version directory holds (paths, sizes, modification times), to tell a changed one."""
    entries = []
    for file in sorted(Path(path).rglob("*")):
        try:
            stat = file.stat()
        except OSError:  # removed while we looked: the next poll sees the rest
            continue
        entries.append((str(file.relative_to(path)), stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


def discover(path: Path, model_name: str | None = None) -> list[ModelConfig]:
    """Models under ``path``: one model directory (``VERSION/`` children) or a repository of them."""
    path = Path(path)
    if not path.is_dir():
        raise UsageError(
            f"{path}: no such directory; expected a model repository NAME/VERSION/... "
            "or one model directory VERSION/..."
        )
    if version_dirs(path):
        return [ModelConfig(model_name or path.name, path)]
    if model_name:
        raise UsageError(f"{path} has no integer version directories for model {model_name!r}")
    models = [ModelConfig(p.name, p) for p in model_dirs(path)]
    if not models:
        raise UsageError(f"{path}: found no models (expected NAME/VERSION/ directories with integer versions)")
    return models


def _detect(version_dir: Path) -> tuple[str, Path, Signature | None]:
    """(format, artifact path, recorded signature) of one version directory."""
    if (version_dir / MANIFEST).is_file():
        manifest = read_manifest(version_dir)
        return manifest.format, version_dir / manifest.artifact, manifest.signature
    if (version_dir / "saved_model.pb").is_file() or (version_dir / "saved_model.pbtxt").is_file():
        return "savedmodel", version_dir, None
    onnx_files = sorted(version_dir.glob("*.onnx"))
    if len(onnx_files) == 1:
        return "onnx", onnx_files[0], None
    if onnx_files:
        raise UsageError(f"{version_dir}: several .onnx files ({', '.join(p.name for p in onnx_files)}); keep one")
    raise UsageError(
        f"{version_dir}: no servable artifact (saved_model.pb, one .onnx file, or a deploykit export "
        f"with {MANIFEST} for TorchScript/.pt2)"
    )


def load_version(
    name: str, version: int, path: Path, runtime_options: dict | None = None, warmup_requests: int = 0
) -> LoadedVersion:
    """Load one version and warm it up; a failure is recorded on the result, never raised.

    ``warmup_requests`` requests (seeded random floats, zero integers) run through ``serving_default`` before
    the version is returned (TF Serving warms a version up before it goes live, so its first real
    requests do not pay for lazy initialisation). Signatures with string or unknown-rank inputs
    are not warmed up: random data would not be meaningful for them.
    """
    loaded = LoadedVersion(name, version, path)
    started = time.perf_counter()
    try:
        loaded.format, artifact, recorded = _detect(path)
        options = runtime_options if loaded.format == "onnx" else {}
        runtime = load_runtime(loaded.format, artifact, recorded, **(options or {}))
        loaded.signatures = dict(runtime.signatures)
        loaded.runtime = runtime
        _warm_up(loaded, warmup_requests)
    except DeployKitError as exc:
        loaded.error = str(exc)
    except Exception as exc:  # a broken artifact can make any framework raise anything
        loaded.error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:600]}"
    if loaded.error and loaded.runtime is not None:
        loaded.runtime.close()
        loaded.runtime = None
    loaded.state = "END" if loaded.error else "AVAILABLE"
    loaded.load_seconds = time.perf_counter() - started
    if loaded.error:
        log.error("model %s version %d failed to load: %s", name, version, loaded.error)
    elif loaded.runtime is not None:
        log.info(
            "model %s version %d (%s) loaded in %.2f s: %s",
            name,
            version,
            loaded.format,
            loaded.load_seconds,
            json.dumps(loaded.runtime.describe()),
        )
    return loaded


def _warm_up(loaded: LoadedVersion, requests: int) -> None:
    signature = loaded.signatures.get(DEFAULT_SIGNATURE)
    if not requests or signature is None:
        return
    if any(spec.shape is None or spec.dtype == "string" for spec in signature.inputs):
        return
    for seed in range(requests):
        inputs = random_inputs(signature, 1, seed)
        # Integer inputs are often indices (token ids, vocabularies): zeros are valid for any size.
        inputs = {n: np.zeros_like(v) if np.issubdtype(v.dtype, np.integer) else v for n, v in inputs.items()}
        assert loaded.runtime is not None  # warm-up runs on loaded versions
        try:
            loaded.runtime.predict(inputs, DEFAULT_SIGNATURE)
        except Exception as exc:
            raise RuntimeError(f"warm-up request {seed + 1} of {requests} failed: {exc}") from exc
