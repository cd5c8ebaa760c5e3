"""``deploykit validate``: re-check published versions from their manifest and golden file alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from deploykit.errors import DeployKitError, ValidationError
from deploykit.export.golden import load_golden
from deploykit.export.parity import OutputParity, Tolerance, compare
from deploykit.fsutil import inside
from deploykit.repository import GOLDEN, MANIFEST, Manifest, file_problems, read_manifest
from deploykit.runtimes import load_runtime


@dataclass
class VerifyResult:
    path: Path
    name: str = ""
    version: int | None = None
    format: str = ""
    file_problems: list[str] = field(default_factory=list)
    parity: list[OutputParity] = field(default_factory=list)
    error: str | None = None

    @property
    def passed(self) -> bool:
        return not self.error and not self.file_problems and bool(self.parity) and all(r.passed for r in self.parity)


def exported_versions(path: Path) -> list[Path]:
    """Exported version directories (with a manifest) at or below ``path``: a version, a model (all
    its versions) or a repository."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        return [path]
    if not path.is_dir():
        raise ValidationError(f"{path}: no such directory")
    found = sorted(p.parent for p in path.glob(f"*/{MANIFEST}")) or sorted(
        p.parent for p in path.glob(f"*/*/{MANIFEST}")
    )
    if not found:
        raise ValidationError(f"{path}: no exported versions ({MANIFEST}) found here or one or two levels below")
    return found


def recorded_tolerances(manifest: Manifest) -> dict[str, Tolerance]:
    """The tolerance each output passed (or failed) with at export time."""
    try:
        return {row["output"]: Tolerance(row["atol"], row["rtol"]) for row in manifest.validation.outputs}
    except (KeyError, TypeError) as exc:
        problem = f"no {exc.args[0]!r} field" if isinstance(exc, KeyError) else str(exc)
        raise ValidationError(f"{MANIFEST}: malformed validation output row: {problem}") from None


def verify(version_dir: Path, against: Path | None = None) -> VerifyResult:
    """Check file hashes against the manifest, then the artifact's outputs against golden outputs."""
    result = VerifyResult(version_dir)
    try:
        manifest = read_manifest(version_dir)
        result.name, result.version, result.format = manifest.name, manifest.version, manifest.format
        tolerances = recorded_tolerances(manifest)
        artifact_path = manifest.artifact_path(version_dir)
        for rel in manifest.files:
            inside(version_dir, rel, "a file recorded in the manifest")
        result.file_problems = file_problems(version_dir, manifest.files)
        cases = load_golden(against or version_dir / GOLDEN)
        runtime = load_runtime(result.format, artifact_path, manifest.signature)
        try:
            for batch, (inputs, expected) in sorted(cases.items()):
                result.parity += compare(expected, runtime.predict(inputs), batch, tolerances)
        finally:
            runtime.close()
    except DeployKitError as exc:
        result.error = str(exc)
    except Exception as exc:  # a tampered artifact can make any framework raise anything
        result.error = f"{type(exc).__name__} while loading or running the artifact: {' '.join(str(exc).split())[:500]}"
    return result
