"""``deploykit serve DIR --engine triton``: run the real NVIDIA Triton on a ``triton-deploy`` directory,
or say why not and let deploykit's own server (which speaks the same v2 protocol) serve it.

Engine choice, by availability: ``--triton-binary PATH``, else ``tritonserver`` on PATH, else with
``--docker`` the official image when a Docker engine answers ``docker info``. Triton is started
with the deployment's exact command line (:mod:`deploykit.triton.commands`, the one ``run.sh``
holds, with the ports asked for), its log lines are forwarded prefixed, readiness is
``GET /v2/health/ready`` answering 200 (Triton's strict readiness: every model loaded), and
SIGINT/SIGTERM stop it with SIGTERM, then SIGKILL after a grace period. A Triton that exits before
it is ready fails the command with its last log lines.

Without binary or engine, :func:`launch` returns a :class:`Fallback`: the deployment's models (their
source directories and versions from ``deployment.json``) and its dynamic batching as deploykit
server settings, and one line saying so.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from deploykit.errors import UsageError
from deploykit.server.batching import BatchingOptions
from deploykit.server.model_config import ModelConfig, VersionPolicy
from deploykit.tfserving.launcher import LaunchError, ServerProcess, check_ports_free, docker_engine_reachable, say
from deploykit.triton import commands, repository

BINARY = "tritonserver"
#: How long Triton may take to load (and warm up) every model.
READY_TIMEOUT = 300.0


@dataclass(frozen=True)
class TritonRequest:
    """What ``deploykit serve DIR --engine triton`` asked for."""

    deployment: Path
    binary: str | None = None
    docker: bool = False
    host: str = "127.0.0.1"
    http_port: int = commands.HTTP_PORT
    grpc_port: int = commands.GRPC_PORT
    metrics_port: int = commands.METRICS_PORT
    ready_timeout: float = READY_TIMEOUT


@dataclass(frozen=True)
class Fallback:
    """deploykit's own server serves ``models`` with ``batching`` instead; ``line`` says why (print it once)."""

    models: list[ModelConfig]
    batching: BatchingOptions | None
    line: str


def choose(binary: str | None, docker: bool) -> tuple[str, str]:
    """``("binary", path)``, ``("docker", "")`` or ``("deploykit", reason)``."""
    if binary and docker:
        raise UsageError("give --triton-binary or --docker, not both")
    if binary:
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            raise UsageError(f"--triton-binary {binary}: not an executable file")
        return "binary", str(Path(binary).resolve())
    if docker:
        if docker_engine_reachable():
            return "docker", ""
        return "deploykit", "--docker: no Docker engine reachable (`docker info` failed)"
    found = shutil.which(BINARY)
    if found:
        return "binary", found
    return "deploykit", f"no {BINARY} on PATH (give --triton-binary PATH, or --docker)"


def fallback_settings(record: dict) -> tuple[list[ModelConfig], BatchingOptions | None]:
    """The deployment's models (source directories, deployed versions) and batching, for deploykit serve."""
    models = [
        ModelConfig(m["name"], Path(m["source"]), VersionPolicy("specific", versions=tuple(m["versions"])))
        for m in record["models"]
    ]
    batching = record.get("batching") or {}
    options = None
    if batching.get("enabled"):
        options = BatchingOptions(
            max_batch_size=batching["max_batch_size"], batch_timeout_micros=batching["max_queue_delay_microseconds"]
        )
    return models, options


def launch(request: TritonRequest) -> Fallback | None:
    """Serve with Triton until SIGINT/SIGTERM (returns None), or return a :class:`Fallback`."""
    record = repository.read_record(request.deployment)
    kind, detail = choose(request.binary, request.docker)
    if kind == "deploykit":
        models, batching = fallback_settings(record)
        line = (
            f"deploykit serve: engine deploykit (deploykit's own server, Open Inference Protocol and TF Serving API), "
            f"not Triton: {detail}"
        )
        return Fallback(models, batching, line)
    local = "127.0.0.1" if request.host in ("0.0.0.0", "::", "") else request.host
    check_ports_free(local, [request.http_port, request.grpc_port, request.metrics_port])
    models_dir = str(Path(request.deployment).resolve() / repository.MODELS_DIR)
    if kind == "docker":
        name = f"deploykit-triton-{os.getpid()}"
        argv = commands.docker_command(
            models_dir,
            version=record.get("triton_version", commands.DEFAULT_VERSION),
            gpus=bool(record.get("gpu")),
            http_port=request.http_port,
            grpc_port=request.grpc_port,
            metrics_port=request.metrics_port,
            name=name,
        )
        server = ServerProcess(argv, "docker tritonserver", cleanup=["docker", "rm", "-f", name])
    else:
        flags = commands.TritonFlags(models_dir, request.http_port, request.grpc_port, request.metrics_port)
        argv = commands.binary_command(detail, flags)
        server = ServerProcess(argv, BINARY)
    say(f"engine Triton ({'Docker image' if kind == 'docker' else detail})")
    say(f"running: {commands.shell_line(argv)}")
    _run(server, f"http://{local}:{request.http_port}", request.ready_timeout)
    return None


def wait_v2_ready(server: ServerProcess, url: str, timeout: float, stopping: threading.Event) -> bool:
    """Poll ``GET url/v2/health/ready`` until 200. False if asked to stop first; :class:`LaunchError`
    when the server exits or the timeout passes."""
    deadline = time.monotonic() + timeout
    while not stopping.is_set():
        if server.returncode is not None:
            raise LaunchError(
                f"{server.label} exited with code {server.returncode} before it was ready; its last lines:\n"
                f"{server.last_lines()}"
            )
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass  # not listening yet, or 400: models still loading
        if time.monotonic() > deadline:
            raise LaunchError(f"{server.label} not ready after {timeout:g} s; its last lines:\n{server.last_lines()}")
        stopping.wait(0.2)
    return False


def _run(server: ServerProcess, url: str, timeout: float) -> None:
    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        if wait_v2_ready(server, url, timeout, stopping):
            say(f"Triton ready: v2 HTTP {url}, gRPC on the deployment's port (Ctrl-C stops it)")
            while not stopping.is_set() and server.returncode is None:
                stopping.wait(0.2)
            if not stopping.is_set():
                raise LaunchError(
                    f"{server.label} exited unexpectedly with code {server.returncode}; its last lines:\n"
                    f"{server.last_lines()}"
                )
        say(f"stopping {server.label} (SIGTERM, then SIGKILL)")
    finally:
        if server.process is not None:
            say(f"{server.label} stopped (exit status {server.stop()})")
        for sig, handler in previous.items():
            signal.signal(sig, handler)
