"""The per-version manifest (``deploykit.json``), the golden file (``golden.npz``) and file hashes.

A version directory is self-describing: with its manifest and golden file, ``deploykit validate``
re-checks the artifact later, elsewhere, without the source model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.errors import ValidationError
from deploykit.export.sources import file_sha256
from deploykit.tensors import Tensors

MANIFEST = "deploykit.json"
GOLDEN = "golden.npz"
SCHEMA_VERSION = 1


def hash_files(version_dir: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file under ``version_dir`` except the manifest, by relative path."""
    files = {}
    for path in sorted(p for p in version_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(version_dir).as_posix()
        if rel != MANIFEST:
            files[rel] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}
    return files


def tree_sha256(files: dict[str, dict[str, Any]], under: str = ".") -> str:
    """One hash over the files below ``under`` (a SavedModel directory): relative path + content hash."""
    prefix = "" if under == "." else under.rstrip("/") + "/"
    lines = "".join(f"{rel}\0{info['sha256']}\n" for rel, info in sorted(files.items()) if rel.startswith(prefix))
    return hashlib.sha256(lines.encode()).hexdigest()


def artifact_hash(files: dict[str, dict[str, Any]], artifact: str) -> str:
    """Hash of the served artifact: its file's sha256, or a tree hash of a directory artifact."""
    if artifact in files:
        return files[artifact]["sha256"]
    artifact_files = {rel: info for rel, info in files.items() if rel != GOLDEN}
    return tree_sha256(artifact_files, artifact)


def file_problems(version_dir: Path, recorded: dict[str, dict[str, Any]]) -> list[str]:
    """Differences between the files on disk and the manifest's record (empty when intact)."""
    actual = hash_files(version_dir)
    problems = [f"{rel}: missing" for rel in sorted(set(recorded) - set(actual))]
    problems += [f"{rel}: not in the manifest" for rel in sorted(set(actual) - set(recorded))]
    problems += [
        f"{rel}: sha256 {actual[rel]['sha256'][:12]}..., manifest records {info['sha256'][:12]}..."
        for rel, info in sorted(recorded.items())
        if rel in actual and actual[rel]["sha256"] != info["sha256"]
    ]
    return problems


def write_manifest(version_dir: Path, manifest: dict[str, Any]) -> None:
    (version_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")


def read_manifest(version_dir: Path) -> dict[str, Any]:
    path = version_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValidationError(f"{version_dir}: no {MANIFEST}; not a deploykit export") from None
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{path}: not valid JSON ({exc})") from exc
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ValidationError(
            f"{path}: schema_version {manifest.get('schema_version')!r}, this deploykit reads {SCHEMA_VERSION}"
        )
    return manifest


def save_golden(path: Path, cases: dict[int, tuple[Tensors, Tensors]]) -> None:
    """Store validation inputs and reference outputs per batch size: ``b{N}/in/NAME``, ``b{N}/out/NAME``."""
    arrays = {}
    for batch, (inputs, outputs) in cases.items():
        arrays.update({f"b{batch}/in/{k}": v for k, v in inputs.items()})
        arrays.update({f"b{batch}/out/{k}": v for k, v in outputs.items()})
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def load_golden(path: Path) -> dict[int, tuple[Tensors, Tensors]]:
    """Inverse of :func:`save_golden`."""
    cases: dict[int, tuple[Tensors, Tensors]] = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            for key in archive.files:
                batch, kind, name = key.split("/", 2)
                inputs, outputs = cases.setdefault(int(batch.removeprefix("b")), ({}, {}))
                (inputs if kind == "in" else outputs)[name] = archive[key]
    except (OSError, ValueError) as exc:
        raise ValidationError(f"{path}: not a deploykit golden file ({exc})") from exc
    if not cases:
        raise ValidationError(f"{path}: golden file holds no cases")
    return cases
