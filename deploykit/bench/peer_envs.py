"""The peers' virtual environments: KServe's ModelServer, MLServer and TorchServe, each in its own, pinned.

Their own environments because each pins web-framework versions (starlette, fastapi, pydantic) that
deploykit does not need, and neither may change deploykit's. Built once per machine under
``~/.cache/deploykit/``, beside the final place and then renamed into it, so a failed install
leaves nothing. Plain standard library (no deploykit, no pytest), so ``.ci/run`` can build them with
the system Python in the background while deploykit's own set-up runs:
``python3.11 deploykit/bench/peer_envs.py kserve mlserver``. Used by ``deploykit bench`` (the peer
rows) and by the interoperability tests (tests/loadtest/test_v2_client.py, test_mlserver_peer.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

CACHE = Path.home() / ".cache" / "deploykit"
ONNXRUNTIME = "onnxruntime==1.32.0"  # the model classes serve ONNX with it, as deploykit does

#: Per peer: the exact requirements of its environment. KServe and MLServer pull no torch (checked in the
#: wheels' metadata: mlserver 1.7.1 needs tritonclient[http], pandas and the web stack, no ML framework).
PINS = {
    "kserve": ["kserve==0.21.0", ONNXRUNTIME],
    "mlserver": ["mlserver==1.7.1", ONNXRUNTIME],
    # TorchServe's Python side imports torch at start-up: pinned to the CPU build on disk (an unpinned
    # torch downloads the CUDA builds; `pip install --dry-run` of these four installs no nvidia package).
    # 0.12.0 is the last release of both (2024-09), Python >= 3.8; its Java front end needs Java 11+. Its
    # worker imports yaml, which its metadata does not declare.
    "torchserve": ["torchserve==0.12.0", "torch-model-archiver==0.12.0", "torch==2.13.0", "pyyaml==6.0.4", ONNXRUNTIME],
}
KSERVE_PINS = PINS["kserve"]


def venv_dir(peer: str) -> Path:
    """Where ``peer``'s environment lives: named after its pinned version, or ``DEPLOYKIT_<PEER>_VENV``."""
    override = os.environ.get(f"DEPLOYKIT_{peer.upper()}_VENV")
    return Path(override) if override else CACHE / PINS[peer][0].replace("==", "-")


def existing_python(peer: str) -> Path | None:
    """The environment's Python when it has been built, else None (nothing is installed)."""
    python = venv_dir(peer) / "bin" / "python"
    return python if python.exists() else None


def build_beside(final: Path, install: Callable[[Path], None]) -> None:
    """Run ``install(directory)`` into a fresh directory beside ``final``, then rename it into place:
    a failed or interrupted install leaves nothing at ``final``. When another process built ``final``
    meanwhile (.ci/run's background build), its build is kept and this one discarded."""
    final.parent.mkdir(parents=True, exist_ok=True)
    building = final.with_name(final.name + f".building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    try:
        install(building)
        if not final.exists():
            building.rename(final)
    finally:
        shutil.rmtree(building, ignore_errors=True)


def peer_python(peer: str, timeout_s: float = 480) -> Path:
    """The environment's Python, building the environment first when it does not exist yet.
    Raises :class:`subprocess.CalledProcessError` / :class:`subprocess.TimeoutExpired` on failure."""
    final = venv_dir(peer)
    python = final / "bin" / "python"
    if python.exists():
        return python

    def install(building: Path) -> None:
        subprocess.run([sys.executable, "-m", "venv", str(building)], check=True, capture_output=True)
        subprocess.run(
            [str(building / "bin" / "python"), "-m", "pip", "install", "--quiet", *PINS[peer]],
            check=True,
            capture_output=True,
            timeout=timeout_s,
        )

    build_beside(final, install)
    # venv scripts name their directory: recreate them for the final path
    subprocess.run([sys.executable, "-m", "venv", "--upgrade", str(final)], check=True, capture_output=True)
    return python


def kserve_python(timeout_s: float = 480) -> Path:
    """KServe's environment's Python (built when missing)."""
    return peer_python("kserve", timeout_s)


if __name__ == "__main__":
    for name in sys.argv[1:] or list(PINS):
        if name not in PINS:
            sys.exit(f"unknown peer {name!r}; expected one of {', '.join(PINS)}")
        print(peer_python(name))
