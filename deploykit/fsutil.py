"""File-system rules shared by every writer and reader: atomic directory output (build in a
temporary sibling, then rename into place), directories that respect the umask, safe names, and
paths from untrusted files kept inside their directory."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Model and artifact names: one path component of letters, digits, '.', '_', '-' (TF Serving model
#: names in practice), not starting with '.' (hidden staging directories) and never '..'.
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")

_UMASK_LOCK = threading.Lock()


def check_name(name: str, what: str = "name") -> str:
    """``name`` when it is a safe single path component, else :class:`UsageError`."""
    from deploykit.errors import UsageError

    if not SAFE_NAME.match(name):
        raise UsageError(
            f"{what} {name!r} is not allowed: use 1-128 letters, digits, '.', '_' or '-', not starting with '.' "
            "(a name is one directory of the repository, never a path)"
        )
    return name


def inside(directory: Path, relative: str, what: str = "path") -> Path:
    """``directory / relative`` when it resolves inside ``directory`` (symbolic links followed), else
    :class:`ValidationError`: paths read from a manifest must not reach elsewhere."""
    from deploykit.errors import ValidationError

    if not isinstance(relative, str) or not relative:
        raise ValidationError(f"{directory}: {what} {relative!r} is not a relative path")
    root = Path(directory).resolve()
    path = (root / relative).resolve()
    if Path(relative).is_absolute() or not path.is_relative_to(root):
        raise ValidationError(f"{directory}: {what} {relative!r} points outside the version directory")
    return path


def umask() -> int:
    """The process's file-creation mask: from /proc on Linux (reading it elsewhere means setting it
    for a moment, done under a lock)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def make_temp_dir(prefix: str, directory: Path) -> Path:
    """``tempfile.mkdtemp`` (a fresh, unpredictable name) with the permissions ``mkdir`` would give:
    mkdtemp's 0700 would keep a server running as another user from reading what it publishes."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=directory))
    path.chmod(0o777 & ~umask())
    return path


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
    staging = make_temp_dir(f".{target.name}.tmp-", target.parent)
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
