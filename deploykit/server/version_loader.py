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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.errors import DeployKitError, FrameworkMissing, UsageError
from deploykit.repository import MANIFEST, model_dirs, read_manifest, version_dirs
from deploykit.runtimes import Runtime, load_runtime
from deploykit.server.model_config import ModelConfig
from deploykit.server.warmup import warm_up
from deploykit.tensors import Signature

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
    #: The load failed because the format's framework is not installed (``error`` names the extra):
    #: requests to the model are told so instead of only "Servable not found".
    framework_missing: bool = False
    #: Why a version that serves is out of reach on disk (deleted or unreadable base path), for status.
    notice: str = ""
    #: Requests holding or computing on this version now (:meth:`enter` / :meth:`leave`, from the event
    #: loop and from native and inference threads alike); a retiring version closes when it drops to 0.
    _inflight: int = field(default=0, compare=False, repr=False)
    _inflight_lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.state:
            self.state = "AVAILABLE" if self.runtime is not None else "END"
        if self.runtime is not None and not self.signatures:
            self.signatures = dict(self.runtime.signatures)

    @property
    def inflight(self) -> int:
        """How many requests hold or compute on this version now."""
        return self._inflight

    def enter(self) -> None:
        """A request holds this version (or computes on it) until its :meth:`leave`."""
        with self._inflight_lock:
            self._inflight += 1

    def leave(self) -> None:
        """The request that :meth:`enter`-ed is done with this version."""
        with self._inflight_lock:
            self._inflight -= 1

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
        return manifest.format, manifest.artifact_path(version_dir), manifest.signature
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

    Warm-up (:mod:`deploykit.server.warmup`) uses the version's golden inputs or TF Serving warm-up
    file when it has one, else ``warmup_requests`` synthetic requests; 0 disables warm-up.
    """
    loaded = LoadedVersion(name, version, path)
    started = time.perf_counter()
    warmed = ""
    try:
        loaded.format, artifact, recorded = _detect(path)
        options = runtime_options if loaded.format == "onnx" else {}
        runtime = load_runtime(loaded.format, artifact, recorded, **(options or {}))
        loaded.signatures = dict(runtime.signatures)
        loaded.runtime = runtime
        warmed = warm_up(name, version, path, runtime, warmup_requests)
    except DeployKitError as exc:
        loaded.error = str(exc)
        loaded.framework_missing = isinstance(exc, FrameworkMissing)
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
            "model %s version %d (%s) loaded in %.2f s%s: %s",
            name,
            version,
            loaded.format,
            loaded.load_seconds,
            f", warmed up with {warmed}" if warmed else "",
            json.dumps(loaded.runtime.describe()),
        )
    return loaded
