"""``deploykit serve DIR --engine triton``: run the real NVIDIA Triton on a ``triton-deploy`` directory,
or say why not and let deploykit's own server (which speaks the same v2 protocol) serve it.

Engine choice, by availability: ``--triton-binary PATH``, else ``tritonserver`` on PATH, else with
``--docker`` the official image (the deployment's release) when a Docker engine answers
``docker info``. Triton runs the deployment's command line (:mod:`deploykit.triton.commands`, what
``run.sh`` holds) with serve's ports: ``--rest_api_port`` is Triton's HTTP port, ``--port`` its gRPC
port, ``--triton-metrics-port`` its metrics port. Its output lines are forwarded as events,
readiness is ``GET /v2/health/ready`` answering 200 (Triton's strict readiness: every model loaded),
and SIGINT/SIGTERM stop it with SIGTERM, then SIGKILL after a grace period. A Triton that exits
before it is ready fails the command with its last lines.

Without binary or engine, :func:`launch` returns a :class:`Fallback`: deploykit's server then serves
the deployment's own ``deploykit.models.config`` (the source model directories and deployed
versions) and ``deploykit.batching.txt`` (its dynamic batching), both written by ``triton-deploy``.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from deploykit.errors import LaunchError, UsageError
from deploykit.serving.deployment_files import shell_line
from deploykit.serving.events import PROGRAM, Event, Listener, log_event
from deploykit.serving.options import ServeOptions
from deploykit.serving.process import ServerProcess, check_ports_free, local_address, serve_until_signal
from deploykit.tfserving.engine import docker_engine_reachable
from deploykit.triton import commands, repository

BINARY = "tritonserver"
#: How long Triton may take to load (and warm up) every model.
READY_TIMEOUT = 300.0


@dataclass(frozen=True)
class Fallback:
    """deploykit's own server serves the deployment instead; ``line`` says why (print it once)."""

    deployment: Path
    line: str

    @property
    def message(self) -> str:
        return self.line.split(": ", 1)[1]

    def apply(self, options: ServeOptions) -> ServeOptions:
        """The options deploykit's server serves in Triton's place: the deployment's models and batching."""
        batching = self.deployment / repository.FALLBACK_BATCHING
        return options.model_copy(
            update={
                "engine": "deploykit",
                "path": None,
                "model_base_path": None,
                "model_config_file": self.deployment / repository.FALLBACK_CONFIG,
                "enable_batching": batching.is_file(),
                "batching_parameters_file": batching if batching.is_file() else None,
            }
        )


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


def _check(options: ServeOptions) -> Path:
    """The deployment directory; options Triton cannot honour are refused, not dropped."""
    path = options.served_path
    if path is None or options.model_config_file is not None:
        raise UsageError("--engine triton serves a directory written by deploykit triton-deploy: give it as PATH")
    given = [
        flag
        for flag, name in (
            ("--version-policy", "version_policy"),
            ("--label", "label"),
            ("--enable_batching", "enable_batching"),
            ("--workers", "workers"),
            ("--ssl_cert_file", "ssl_cert_file"),
            ("--ssl_config_file", "ssl_config_file"),
        )
        if options.changed(name)
    ]
    if given:
        raise UsageError(
            f"{', '.join(given)} with --engine triton: the deployment's config.pbtxt files fix versions and "
            "batching (write a new one with deploykit triton-deploy), and the launcher checks readiness over plain HTTP"
        )
    return Path(path)


def launch(options: ServeOptions, on_event: Listener = log_event) -> Fallback | None:
    """Serve with Triton until SIGINT/SIGTERM (returns None), or return a :class:`Fallback`."""
    deployment = _check(options)
    record = repository.read_record(deployment)
    kind, detail = choose(options.triton_binary, options.docker)
    if kind == "deploykit":
        line = (
            f"{PROGRAM}: engine deploykit (deploykit's own server: Open Inference Protocol and TF Serving's API "
            f"on the same ports, the deployment's models and batching), not Triton: {detail}"
        )
        return Fallback(deployment, line)
    if not options.port or not options.rest_api_port:
        raise UsageError("Triton needs its gRPC (--port) and HTTP (--rest_api_port) ports; neither may be 0")
    local = local_address(options.host)
    ports = [options.rest_api_port, options.port, options.triton_metrics_port]
    check_ports_free(local, ports)
    models_dir = str(deployment.resolve() / repository.MODELS_DIR)
    if kind == "docker":
        name = f"deploykit-triton-{os.getpid()}"
        argv = commands.docker_command(
            models_dir,
            version=record.get("triton_version", commands.DEFAULT_VERSION),
            gpus=bool(record.get("gpu")),
            http_port=options.rest_api_port,
            grpc_port=options.port,
            metrics_port=options.triton_metrics_port,
            name=name,
        )
        server = ServerProcess(argv, "docker tritonserver", cleanup=["docker", "rm", "-f", name], on_event=on_event)
        engine = f"Triton in Docker ({commands.image(record.get('triton_version', commands.DEFAULT_VERSION))})"
    else:
        flags = commands.TritonFlags(
            models_dir,
            http_port=options.rest_api_port,
            grpc_port=options.port,
            metrics_port=options.triton_metrics_port,
        )
        argv = commands.binary_command(detail, flags)
        server = ServerProcess(argv, BINARY, on_event=on_event)
        engine = f"Triton ({detail})"
    on_event(Event("engine", f"engine {engine}; v2 server metadata names it (load-test reports say so)"))
    on_event(Event("engine", f"running: {shell_line(argv)}"))
    models = ", ".join(m["name"] for m in record["models"])
    ready = f"Triton ready on HTTP {local}:{options.rest_api_port}, gRPC {local}:{options.port}; models: {models}"
    url = f"http://{local}:{options.rest_api_port}"
    serve_until_signal(server, lambda srv, stopping: wait_v2_ready(srv, url, stopping), ready, on_event)
    return None


def wait_v2_ready(server: ServerProcess, url: str, stopping: threading.Event, timeout: float = READY_TIMEOUT) -> bool:
    """Poll ``GET url/v2/health/ready`` until 200. False if asked to stop first; :class:`LaunchError`
    when the server exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not stopping.is_set():
        if server.returncode is not None:
            raise server.died_before_ready()
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
