"""What the deployment writers (``tfserving-deploy``, ``triton-deploy``) share: the ``run.sh`` that
starts the engine's binary or Docker image, its shell lines, and reading back ``deployment.json``."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from deploykit import __version__
from deploykit.errors import UsageError

DEPLOYMENT_FILE = "deployment.json"


def shell_line(argv: list[str]) -> str:
    """A command as one copy-pasteable shell line."""
    return shlex.join(argv)


def run_script(what: str, writer: str, binary_name: str, binary: list[str], docker: list[str]) -> str:
    """``run.sh``: ``./run.sh [binary|docker]`` runs ``binary`` or ``docker``; without an argument the
    binary when ``binary_name`` is on PATH, else Docker. ``what`` says what it starts, ``writer`` which
    deploykit command wrote it."""
    return f"""#!/bin/sh
# Start {what} (written by deploykit {__version__} {writer}).
# Usage: ./run.sh [binary|docker]; default: binary when {binary_name} is on PATH, else docker.
set -eu
mode="${{1:-}}"
if [ -z "$mode" ]; then
  if command -v {binary_name} >/dev/null 2>&1; then mode=binary; else mode=docker; fi
fi
case "$mode" in
  binary) exec {shell_line(binary)} ;;
  docker) exec {shell_line(docker)} ;;
  *) echo "usage: $0 [binary|docker]" >&2; exit 2 ;;
esac
"""


def load_record(out: Path, writer: str) -> tuple[Path, dict]:
    """The path and content of ``out``'s ``deployment.json``, as written by deploykit's ``writer``;
    :class:`UsageError` if it is missing or unreadable (the caller checks its engine and schema)."""
    path = Path(out) / DEPLOYMENT_FILE
    try:
        return path, json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{out}: no {DEPLOYMENT_FILE}; not a deployment written by deploykit {writer}") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable ({exc})") from exc
