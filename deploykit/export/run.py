"""``deploykit export``: convert every source to every requested format, validate, publish.

For each (source, format) the pipeline is::

    staging dir ─ convert ─ golden inputs + source outputs ─ reload with the serving runtime
                ─ compare (two batch sizes) ─ hash files ─ manifest ─ rename to REPO/NAME/VERSION

An artifact that fails to convert is never published. One that fails validation is published only
with ``allow_mismatch`` (the manifest then records the failure). Either way the report says so and
the command exits 1.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deploykit import __version__, repository
from deploykit.doctor import package_versions
from deploykit.errors import DeployKitError, UsageError
from deploykit.export.convert import DEFAULT_OPSET, FORMATS, OPT_IN_FORMATS, Converted, convert
from deploykit.export.diagnostics import converter_diagnostics
from deploykit.export.golden import save_golden
from deploykit.export.parity import OutputParity, Tolerance, compare
from deploykit.export.sources import Source
from deploykit.protocol.tfrecord import WARMUP_FILE, write_warmup_requests
from deploykit.repository import (
    GOLDEN,
    FileRecord,
    Manifest,
    ValidationRecord,
    artifact_hash,
    hash_files,
    write_manifest,
)
from deploykit.runtimes import load_runtime
from deploykit.runtimes.base import engine_label
from deploykit.tensors import random_inputs

#: Packages whose versions every manifest records.
RECORDED_PACKAGES = (
    "torch",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "onnxruntime-gpu",
    "tensorflow",
    "keras",
    "tf2onnx",
    "numpy",
)


@dataclass
class ExportOptions:
    """How to export. ``formats`` None means every format of each source's framework except the
    opt-in ones (``aoti``)."""

    repo: Path = Path("models")
    formats: tuple[str, ...] | None = None
    version: int | None = None
    opset: int = DEFAULT_OPSET
    default_tolerance: Tolerance | None = None
    tolerances: dict[str, Tolerance] = field(default_factory=dict)
    batch_sizes: tuple[int, ...] = (2, 7)
    seed: int = 0
    allow_mismatch: bool = False
    #: SavedModels with XLA (``jit_compile``), published as NAME-tf-savedmodel-xla.
    xla: bool = False

    def check(self) -> None:
        if len(set(self.batch_sizes)) < 2 or min(self.batch_sizes) < 1:
            raise UsageError(
                f"--batch-sizes needs at least two different positive sizes (to prove the batch "
                f"dimension dynamic), got {list(self.batch_sizes)}"
            )
        if not 7 <= self.opset <= 23:
            raise UsageError(f"--opset {self.opset} is outside the range the exporters support (7..23)")


@dataclass
class ArtifactResult:
    """Outcome for one artifact."""

    name: str
    framework: str
    format: str
    version: int | None = None
    path: Path | None = None
    passed: bool = False
    parity: list[OutputParity] = field(default_factory=list)
    error: str | None = None
    export_s: float = 0.0
    validate_s: float = 0.0
    size_bytes: int = 0
    runtime: str = ""
    #: The runtime's own description (``Runtime.describe()``): engine, version, session options.
    runtime_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportReport:
    artifacts: list[ArtifactResult]
    cross_checks: list[OutputParity] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(a.passed for a in self.artifacts) and all(c.passed for c in self.cross_checks)


ProgressCallback = Callable[[str, str], None]  # (artifact name, stage)


def artifact_name(source: Source, fmt: str, xla: bool = False) -> str:
    suffix = "-xla" if xla and fmt == "savedmodel" else ""
    return f"{source.name}-{source.framework}-{fmt}{suffix}"


def _validate(source: Source, fmt: str, artifact_dir: Path, options: ExportOptions, result: ArtifactResult):
    """Reload the artifact with its serving runtime and compare with the source at every batch size."""
    cases = {}
    make_inputs = source.example_inputs or (lambda batch, seed: random_inputs(source.signature, batch, seed))
    default = options.default_tolerance or source.tolerance
    for batch in options.batch_sizes:
        inputs = make_inputs(batch, options.seed)
        cases[batch] = (inputs, source.reference(inputs))
    save_golden(artifact_dir / GOLDEN, cases)
    # TF Serving (and deploykit serve) warm a new version up with these before it goes live.
    write_warmup_requests(artifact_dir / WARMUP_FILE, (inputs for inputs, _ in cases.values()))
    runtime = load_runtime(fmt, artifact_dir, source.signature)
    try:
        result.runtime_options = runtime.describe()
        result.runtime = engine_label(result.runtime_options)
        for batch, (inputs, expected) in cases.items():
            got = runtime.predict(inputs)
            result.parity += compare(expected, got, batch, options.tolerances, default)
    finally:
        runtime.close()
    result.passed = all(row.passed for row in result.parity)


def _manifest(
    source: Source,
    fmt: str,
    version: int,
    converted: Converted,
    warnings: list[str],
    result: ArtifactResult,
    options: ExportOptions,
    files: dict[str, FileRecord],
) -> Manifest:
    return Manifest(
        name=result.name,
        version=version,
        format=fmt,
        framework=source.framework,
        artifact=converted.artifact,
        artifact_sha256=artifact_hash(files, converted.artifact),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        deploykit_version=__version__,
        packages={name: v for name, v in package_versions(RECORDED_PACKAGES).items() if v is not None},
        python=platform.python_version(),
        converter={"name": converted.converter, "version": converted.converter_version, **converted.details},
        source=source.origin,
        signature=source.signature,
        layout=source.layout,
        validation=ValidationRecord(
            runtime=result.runtime,
            seed=options.seed,
            batch_sizes=list(options.batch_sizes),
            golden=GOLDEN,
            passed=result.passed,
            outputs=[row.to_dict() for row in result.parity],
            runtime_options=result.runtime_options,
        ),
        files=files,
        size_bytes=result.size_bytes,
        timings_s={"export": round(result.export_s, 3), "validate": round(result.validate_s, 3)},
        warnings=warnings,
    )


def _export_one(source: Source, fmt: str, options: ExportOptions, progress: ProgressCallback) -> ArtifactResult:
    result = ArtifactResult(artifact_name(source, fmt, options.xla), source.framework, fmt)
    model_dir = options.repo / result.name
    staging = repository.staging_dir(model_dir)
    try:
        progress(result.name, "converting")
        started = time.perf_counter()
        with converter_diagnostics() as warnings:
            converted = convert(source, fmt, staging, options.opset, xla=options.xla)
        result.export_s = time.perf_counter() - started

        progress(result.name, "validating")
        started = time.perf_counter()
        _validate(source, fmt, staging, options, result)
        result.validate_s = time.perf_counter() - started

        if not result.passed and not options.allow_mismatch:
            worst = [r for r in result.parity if not r.passed]
            result.error = f"{result.name}: validation failed: " + "; ".join(
                r.problem or f"{r.output} at batch {r.batch_size}: max abs {r.max_abs:.3g} > atol {r.atol:g}"
                for r in worst[:4]
            )
            return result
        files = hash_files(staging)
        result.size_bytes = sum(info.bytes for rel, info in files.items() if rel != GOLDEN)
        version = options.version or repository.next_version(model_dir)
        write_manifest(staging, _manifest(source, fmt, version, converted, warnings, result, options, files))
        result.path = repository.publish(staging, model_dir, version)
        result.version = version
        progress(result.name, f"published v{version}")
        return result
    except DeployKitError as exc:
        result.error = str(exc)
        result.passed = False
        return result
    except Exception as exc:  # the reloaded artifact or the source failed on the validation inputs
        result.error = f"{result.name}: {type(exc).__name__} while validating: {' '.join(str(exc).split())[:600]}"
        result.passed = False
        return result
    finally:
        repository.discard(staging)  # no-op after a successful rename
        if model_dir.is_dir() and not any(model_dir.iterdir()):
            model_dir.rmdir()  # nothing was published for a brand-new model


def export(
    sources: list[Source],
    options: ExportOptions,
    progress: ProgressCallback | None = None,
    cross_checks: list[OutputParity] | None = None,
) -> ExportReport:
    """Export every source to its formats (or ``options.formats``) into ``options.repo``."""
    options.check()
    progress = progress or (lambda name, stage: None)
    plan = []
    for source in sources:
        formats = tuple(f for f in FORMATS[source.framework] if f not in OPT_IN_FORMATS)
        if options.formats is not None:
            unknown = [f for f in options.formats if f not in {f for fs in FORMATS.values() for f in fs}]
            if unknown:
                raise UsageError(f"unknown format(s) {unknown}; expected: torchscript, pt2, aoti, onnx, savedmodel")
            formats = tuple(f for f in FORMATS[source.framework] if f in options.formats)
        plan += [(source, fmt) for fmt in formats]
    if not plan:
        raise UsageError(f"none of the formats {list(options.formats or [])} applies to the given source(s)")
    if options.opset > 18 and any(s.framework == "tf" and f == "onnx" for s, f in plan):
        raise UsageError(f"--opset {options.opset}: tf2onnx supports opsets up to 18")
    if options.version is not None:  # refuse up front rather than after some artifacts were written
        for source, fmt in plan:
            repository.check_free(options.repo / artifact_name(source, fmt, options.xla), options.version)
    return ExportReport([_export_one(s, f, options, progress) for s, f in plan], cross_checks or [])
