"""The model repository's rules, in one place: ``ROOT/NAME/VERSION/`` (TF Serving's layout), the
version directory rule, atomic publication, file hashing and the typed per-version manifest.

Used by ``export`` (writes versions), ``validate`` (re-checks them), ``serve`` (finds and loads
them) and the TF Serving writer. Base layer: imports nothing from the server, export or runtimes.

- **Versions** are the subdirectories named by ASCII digits (``00000123`` is version 123); others,
  such as the hidden staging directories exports are built in, are ignored, as TF Serving does.
- **Publication** is atomic: a version is built in a hidden staging directory inside ``ROOT/NAME``
  and renamed into place only when complete; an existing version is never overwritten.
- **The manifest** (:data:`MANIFEST`, a :class:`Manifest`) makes a version self-describing: with it
  and the golden file (:data:`GOLDEN`), ``deploykit validate`` re-checks an artifact without its source.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any

from deploykit.errors import UsageError, ValidationError
from deploykit.fsutil import inside, make_temp_dir
from deploykit.tensors import Signature

#: The manifest of a version directory.
MANIFEST = "deploykit.json"
#: The validation inputs and reference outputs of a version directory.
GOLDEN = "golden.npz"
#: The manifest schema this deploykit writes and reads.
SCHEMA_VERSION = 1

# ``str.isdigit`` would accept "²" (and ``int`` then raises) or "٣" (Arabic-Indic); TF Serving reads
# only ``[0-9]+`` names as versions.
_VERSION_NAME = re.compile(r"[0-9]+")

# ----------------------------------------------------------------------------------------- layout


def is_version_name(name: str) -> bool:
    """Whether a directory named ``name`` is a version (ASCII digits only)."""
    return _VERSION_NAME.fullmatch(name) is not None


def version_dirs(model_dir: Path) -> dict[int, Path]:
    """A model's version directories by version number, in version order ({} when it has none)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return {}
    found = {int(p.name): p for p in model_dir.iterdir() if p.is_dir() and is_version_name(p.name)}
    return dict(sorted(found.items()))


def model_dirs(path: Path) -> list[Path]:
    """The model directories under ``path``: ``[path]`` when it is one model (``VERSION/``
    children), else its non-hidden children that have versions (a repository). [] when none."""
    path = Path(path)
    if not path.is_dir():
        return []
    if version_dirs(path):
        return [path]
    return [p for p in sorted(path.iterdir()) if p.is_dir() and not p.name.startswith(".") and version_dirs(p)]


def next_version(model_dir: Path) -> int:
    """The version a new export of this model gets: one more than the latest (1 for the first)."""
    existing = version_dirs(model_dir)
    return max(existing) + 1 if existing else 1


def check_free(model_dir: Path, version: int) -> None:
    """:class:`UsageError` unless ``version`` is positive and not published yet."""
    if version < 1:
        raise UsageError(f"--version must be a positive integer, got {version}")
    if (model_dir / str(version)).exists():
        raise UsageError(f"{model_dir / str(version)} already exists; versions are never overwritten")


def staging_dir(model_dir: Path) -> Path:
    """A new hidden directory inside ``model_dir`` to build a version in (ignored as not a version)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    return make_temp_dir(".staging-", model_dir)  # readable like any mkdir'd directory (umask), not 0700


def publish(staging: Path, model_dir: Path, version: int) -> Path:
    """Rename the complete ``staging`` directory to ``model_dir/version``."""
    target = model_dir / str(version)
    check_free(model_dir, version)
    staging.rename(target)
    return target


def discard(staging: Path) -> None:
    """Remove a staging directory (nothing to do after it was published)."""
    shutil.rmtree(staging, ignore_errors=True)


# ----------------------------------------------------------------------------------------- hashing


def file_sha256(path: Path) -> str:
    """sha256 of a file's content, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileRecord:
    """What the manifest records of one file."""

    sha256: str
    bytes: int


def hash_files(version_dir: Path) -> dict[str, FileRecord]:
    """sha256 and size of every file under ``version_dir`` except the manifest, by relative path."""
    files = {}
    for path in sorted(p for p in version_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(version_dir).as_posix()
        if rel != MANIFEST:
            files[rel] = FileRecord(file_sha256(path), path.stat().st_size)
    return files


def tree_sha256(files: dict[str, FileRecord], under: str = ".") -> str:
    """One hash over the files below ``under`` (a SavedModel directory): relative path + content hash."""
    prefix = "" if under == "." else under.rstrip("/") + "/"
    lines = "".join(f"{rel}\0{info.sha256}\n" for rel, info in sorted(files.items()) if rel.startswith(prefix))
    return hashlib.sha256(lines.encode()).hexdigest()


def artifact_hash(files: dict[str, FileRecord], artifact: str) -> str:
    """Hash of the served artifact: its file's sha256, or a tree hash of a directory artifact."""
    if artifact in files:
        return files[artifact].sha256
    return tree_sha256({rel: info for rel, info in files.items() if rel != GOLDEN}, artifact)


def file_problems(version_dir: Path, recorded: dict[str, FileRecord]) -> list[str]:
    """Differences between the files on disk and the manifest's record (empty when intact)."""
    actual = hash_files(version_dir)
    problems = [f"{rel}: missing" for rel in sorted(set(recorded) - set(actual))]
    problems += [f"{rel}: not in the manifest" for rel in sorted(set(actual) - set(recorded))]
    problems += [
        f"{rel}: sha256 {actual[rel].sha256[:12]}..., manifest records {info.sha256[:12]}..."
        for rel, info in sorted(recorded.items())
        if rel in actual and actual[rel].sha256 != info.sha256
    ]
    return problems


# ----------------------------------------------------------------------------------------- manifest


@dataclass
class ValidationRecord:
    """How the artifact was validated at export: the runtime, the golden cases, per-output parity."""

    runtime: str = ""
    seed: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    golden: str = GOLDEN
    passed: bool = True
    #: One row per (output, batch size): ``output``, ``atol``, ``rtol``, errors, ``passed`` ...
    outputs: list[dict[str, Any]] = field(default_factory=list)
    #: The validating runtime's ``describe()``: engine, version, providers, session options, threads.
    runtime_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Manifest:
    """``deploykit.json``: what a version directory holds and how it was made and validated.

    Reading needs only what serving and re-validation use (name, version, format, artifact,
    signature, files, validation); the provenance fields default to empty when a manifest lacks them.
    """

    name: str
    version: int
    format: str
    #: The served artifact, relative to the version directory (``.`` for a SavedModel at its root).
    artifact: str
    signature: Signature
    validation: ValidationRecord
    files: dict[str, FileRecord]
    framework: str = ""
    artifact_sha256: str = ""
    created: str = ""
    deploykit_version: str = ""
    packages: dict[str, str] = field(default_factory=dict)
    python: str = ""
    converter: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    layout: str | None = None
    size_bytes: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def artifact_path(self, version_dir: Path) -> Path:
        """The served artifact's path; :class:`ValidationError` when it resolves outside
        ``version_dir`` (through a symbolic link: the manifest's own text was checked on reading)."""
        return inside(version_dir, self.artifact, "its artifact")

    def to_dict(self) -> dict[str, Any]:
        """As written to :data:`MANIFEST`, in :data:`_KEY_ORDER`."""
        data = {name: getattr(self, name) for name in _KEY_ORDER}
        data["signature"] = self.signature.to_dict()
        data["validation"] = asdict(self.validation)
        data["files"] = {rel: asdict(info) for rel, info in self.files.items()}
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = MANIFEST) -> Manifest:
        """Parse and validate; :class:`ValidationError` naming the first field that is wrong."""
        _expect(data, (dict,), where)
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValidationError(
                f"{where}: schema_version {data.get('schema_version')!r}, this deploykit reads {SCHEMA_VERSION}"
            )
        values = {
            name: _field(data, name, kinds, where)
            for name, (kinds, required) in _FIELD_TYPES.items()
            if required or name in data
        }
        _relative(values["artifact"], "its artifact", where)
        validation = _field(data, "validation", (dict,), where)
        files = _field(data, "files", (dict,), where)
        for rel in files:
            _relative(rel, "a file recorded in the manifest", where)
        try:
            values["signature"] = Signature.from_dict(_field(data, "signature", (dict,), where))
            known = {f.name for f in fields(ValidationRecord)}
            values["validation"] = ValidationRecord(**{k: v for k, v in validation.items() if k in known})
            values["files"] = {rel: FileRecord(info["sha256"], info["bytes"]) for rel, info in files.items()}
        except (KeyError, TypeError, ValueError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
            raise ValidationError(f"{where}: malformed signature, validation or files ({problem})") from exc
        return cls(**values)


#: The keys of ``deploykit.json`` in the order they are written.
_KEY_ORDER = (
    "schema_version",
    "name",
    "version",
    "format",
    "framework",
    "artifact",
    "artifact_sha256",
    "created",
    "deploykit_version",
    "packages",
    "python",
    "converter",
    "source",
    "signature",
    "layout",
    "validation",
    "files",
    "size_bytes",
    "timings_s",
    "warnings",
)

#: The plain-JSON fields of :class:`Manifest`: their JSON types, and whether reading needs them.
_FIELD_TYPES: dict[str, tuple[tuple[type, ...], bool]] = {
    "name": ((str,), True),
    "version": ((int,), True),
    "format": ((str,), True),
    "artifact": ((str,), True),
    "framework": ((str,), False),
    "artifact_sha256": ((str,), False),
    "created": ((str,), False),
    "deploykit_version": ((str,), False),
    "packages": ((dict,), False),
    "python": ((str,), False),
    "converter": ((dict,), False),
    "source": ((dict,), False),
    "layout": ((str, type(None)), False),
    "size_bytes": ((int,), False),
    "timings_s": ((dict,), False),
    "warnings": ((list,), False),
}


def _relative(path: str, what: str, where: str) -> None:
    """A path a manifest records must stay inside its version directory: relative, no ``..``."""
    if not path or PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts:
        raise ValidationError(f"{where}: {what} {path!r} points outside the version directory")


def _expect(value: Any, kinds: tuple[type, ...], where: str) -> None:
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):  # bool is an int
        names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
        raise ValidationError(f"{where}: expected {names}, got {type(value).__name__} {value!r:.60}")


def _field(data: dict, name: str, kinds: tuple[type, ...], where: str) -> Any:
    if name not in data:
        raise ValidationError(f"{where}: field {name!r} is missing")
    _expect(data[name], kinds, f"{where}: field {name!r}")
    return data[name]


def write_manifest(version_dir: Path, manifest: Manifest) -> None:
    """Write ``version_dir/deploykit.json``."""
    (version_dir / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")


def read_manifest(version_dir: Path) -> Manifest:
    """Read and validate ``version_dir/deploykit.json``; :class:`ValidationError` when it is absent,
    not JSON, of another schema version or malformed."""
    path = Path(version_dir) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValidationError(f"{version_dir}: no {MANIFEST}; not a deploykit export") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError(f"{path}: not valid JSON ({exc})") from exc
    return Manifest.from_dict(data, str(path))
