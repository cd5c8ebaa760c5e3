"""Atomic directory output: build in a temporary sibling, then rename into place."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_directory(target: Path, *, replace: bool) -> Iterator[Path]:
    """Yield an empty temporary directory that becomes ``target`` when the block succeeds.

    The temporary directory sits beside ``target`` (same file system, so the final ``rename`` is
    atomic). If the block raises, it is removed and ``target`` is untouched. With ``replace`` an
    existing ``target`` is swapped out only after the new content is complete; without it an existing
    ``target`` makes the rename fail with ``FileExistsError``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
        if target.exists():
            if not replace:
                raise FileExistsError(f"{target} already exists")
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            target.rename(retired / target.name)
            staging.rename(target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
