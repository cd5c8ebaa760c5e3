"""Facts about this machine that decide what deploykit can do here (``deploykit doctor``)."""

from __future__ import annotations

import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass
from importlib import metadata

#: Distributions reported by ``deploykit doctor``, serving path first.
PACKAGES = (
    "deploykit",
    "numpy",
    "grpcio",
    "protobuf",
    "onnxruntime",
    "onnxruntime-gpu",
    "typer",
    "rich",
    "pydantic",
    "torch",
    "safetensors",
    "onnx",
    "onnxscript",
    "tensorflow",
    "keras",
    "tf2onnx",
    "scikit-learn",
)


@dataclass
class Report:
    """What ``deploykit doctor`` found."""

    python: str
    platform: str
    packages: dict[str, str | None]
    onnxruntime_built_providers: list[str]
    onnxruntime_working_providers: list[str]
    gpus: list[str]
    tensorflow_model_server: str | None
    docker_client: str | None
    docker_engine: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """The installed version of each distribution in ``packages`` (None when not installed)."""
    versions: dict[str, str | None] = {}
    for dist in packages:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def _run(args: list[str], timeout: float = 5.0) -> str | None:
    """stdout of a command, or None when it is missing, fails or hangs."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def gpus() -> list[str]:
    """NVIDIA GPUs the driver reports (``nvidia-smi -L``); empty when there is none."""
    if not shutil.which("nvidia-smi"):
        return []
    listing = _run(["nvidia-smi", "-L"])
    return [line.strip() for line in (listing or "").splitlines() if line.strip()]


def _docker_engine() -> str | None:
    """Server version of a reachable Docker engine; None when only the client (or nothing) exists."""
    if not shutil.which("docker"):
        return None
    return _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=8.0) or None


def examine() -> Report:
    """Collect the report. Imports ONNX Runtime (if installed) but neither PyTorch nor TensorFlow."""
    from deploykit.runtimes.providers import working_providers

    try:
        import onnxruntime as ort

        built = list(ort.get_available_providers())
    except ImportError:
        built = []
    return Report(
        python=platform.python_version(),
        platform=platform.platform(),
        packages=package_versions(),
        onnxruntime_built_providers=built,
        onnxruntime_working_providers=list(working_providers()),
        gpus=gpus(),
        tensorflow_model_server=shutil.which("tensorflow_model_server"),
        docker_client=shutil.which("docker"),
        docker_engine=_docker_engine(),
    )
