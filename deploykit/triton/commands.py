"""The exact ``tritonserver`` and ``docker run nvcr.io/nvidia/tritonserver`` command lines.

One :class:`TritonFlags` describes a Triton process; ``deploykit triton-deploy`` prints it into
``run.sh`` and the README, and ``deploykit serve DIR --engine triton`` runs it, so the two cannot
drift apart. Flag names are Triton's (server ``src/command_line_parser.cc``).
"""

from __future__ import annotations

from dataclasses import dataclass

#: NGC release whose image the commands name by default (``<YY.MM>-py3``); pin yours with --triton-version.
DEFAULT_VERSION = "26.07"
IMAGE = "nvcr.io/nvidia/tritonserver"
CONTAINER_REPOSITORY = "/models"
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002


def image(version: str = DEFAULT_VERSION) -> str:
    """The official image of a release: ``nvcr.io/nvidia/tritonserver:<version>-py3``."""
    return f"{IMAGE}:{version}-py3"


@dataclass(frozen=True)
class TritonFlags:
    """One ``tritonserver`` invocation. ``model_control_mode`` "none" loads every model at start
    (Triton's default); the repository is read-only to it."""

    model_repository: str
    http_port: int = HTTP_PORT
    grpc_port: int = GRPC_PORT
    metrics_port: int = METRICS_PORT
    model_control_mode: str = "none"
    strict_readiness: bool = True
    log_verbose: int = 0

    def argv(self) -> list[str]:
        flags = [
            f"--model-repository={self.model_repository}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            f"--model-control-mode={self.model_control_mode}",
            f"--strict-readiness={'true' if self.strict_readiness else 'false'}",
        ]
        if self.log_verbose:
            flags.append(f"--log-verbose={self.log_verbose}")
        return flags


def binary_command(binary: str, flags: TritonFlags) -> list[str]:
    """``tritonserver --model-repository=... ...``."""
    return [binary, *flags.argv()]


def docker_command(
    repository: str,
    *,
    version: str = DEFAULT_VERSION,
    gpus: bool = False,
    http_port: int = HTTP_PORT,
    grpc_port: int = GRPC_PORT,
    metrics_port: int = METRICS_PORT,
    name: str | None = None,
) -> list[str]:
    """``docker run`` of the official image with host ``repository`` mounted read-only at ``/models``.

    Inside the container Triton listens on its default ports; ``http_port``/``grpc_port``/
    ``metrics_port`` are the host ports they are published on. ``gpus`` adds ``--gpus=all`` (a
    CPU-only run must not: GPU instance groups then fail to load, which is the point).
    """
    command = ["docker", "run", "--rm"]
    if name:
        command += ["--name", name]
    if gpus:
        command.append("--gpus=all")
    command += [
        "-p",
        f"{http_port}:{HTTP_PORT}",
        "-p",
        f"{grpc_port}:{GRPC_PORT}",
        "-p",
        f"{metrics_port}:{METRICS_PORT}",
        "-v",
        f"{repository}:{CONTAINER_REPOSITORY}:ro",
        image(version),
    ]
    return command + binary_command("tritonserver", TritonFlags(CONTAINER_REPOSITORY))
