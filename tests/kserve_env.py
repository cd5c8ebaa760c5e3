"""KServe's ModelServer in its own virtual environment (the real v2 peer of tests/loadtest/test_v2_client.py).

Its own environment because kserve pins starlette/fastapi versions deploykit does not need. Built once
per machine, beside its final place and then renamed into it, so a failed install leaves nothing.
Plain standard library (no deploykit, no pytest), so ``.ci/run`` can build it with the system
Python in the background while deploykit's own set-up runs: ``python3.11 tests/kserve_env.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

#: The peer's versions (onnxruntime: the model class serves ONNX with it).
KSERVE_PINS = ["kserve==0.21.0", "onnxruntime==1.32.0"]
KSERVE_VENV = Path(os.environ.get("DEPLOYKIT_KSERVE_VENV", Path.home() / ".cache" / "deploykit" / "kserve-0.21.0"))


def kserve_python(timeout_s: float = 480) -> Path:
    """The environment's Python, building the environment first when it does not exist yet.
    Raises :class:`subprocess.CalledProcessError` / :class:`subprocess.TimeoutExpired` on failure."""
    python = KSERVE_VENV / "bin" / "python"
    if python.exists():
        return python
    building = KSERVE_VENV.with_name(KSERVE_VENV.name + f".building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(building)], check=True, capture_output=True)
        subprocess.run(
            [str(building / "bin" / "python"), "-m", "pip", "install", "--quiet", *KSERVE_PINS],
            check=True,
            capture_output=True,
            timeout=timeout_s,
        )
        if python.exists():  # built meanwhile by another process (.ci/run's background build)
            return python
        building.rename(KSERVE_VENV)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    # venv scripts name their directory: recreate them for the final path
    subprocess.run([sys.executable, "-m", "venv", "--upgrade", str(KSERVE_VENV)], check=True, capture_output=True)
    return python


if __name__ == "__main__":
    print(kserve_python())
