"""The model repository: ``REPO/NAME/VERSION/`` (TF Serving's layout), written atomically.

A version is built in a hidden staging directory inside ``REPO/NAME`` (TF Serving ignores
directories whose name is not an integer) and renamed into place only when complete, so a reader
never sees a half-written version and a failed export leaves nothing behind. An existing version
is never overwritten.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from deploykit.errors import UsageError
from deploykit.fsutil import make_temp_dir


def versions(model_dir: Path) -> list[int]:
    """Published versions of one model, ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(model_dir: Path) -> int:
    existing = versions(model_dir)
    return existing[-1] + 1 if existing else 1


def check_free(model_dir: Path, version: int) -> None:
    if version < 1:
        raise UsageError(f"--version must be a positive integer, got {version}")
    if (model_dir / str(version)).exists():
        raise UsageError(f"{model_dir / str(version)} already exists; versions are never overwritten")


def staging_dir(model_dir: Path) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    return make_temp_dir(".staging-", model_dir)  # readable like any mkdir'd directory (umask), not 0700


def publish(staging: Path, model_dir: Path, version: int) -> Path:
    """Rename the complete ``staging`` directory to ``model_dir/version``."""
    target = model_dir / str(version)
    check_free(model_dir, version)
    staging.rename(target)
    return target


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
