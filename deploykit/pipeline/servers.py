"""The pipeline's servers: one ``deploykit serve`` subprocess per engine, grouped so each server
loads only the framework it serves (its cold start and memory are then the engine's own).

Each server runs in its own session (process group): a terminal's Ctrl-C reaches the pipeline only,
and :meth:`Server.stop` ends the whole group (SIGTERM, then SIGKILL), so no process is left behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.errors import DeployKitError
from deploykit.pipeline.config import ServingConfig
from deploykit.ports import free_port, free_ports

#: Which server group serves each format (formats not listed go to the generic deploykit server).
FORMAT_SERVER = {
    "onnx": "onnxruntime",
    "torchscript": "torch",
    "pt2": "torch",
    "aoti": "torch",
    "savedmodel": "tfserving",
}
#: What each group is called in reports.
SERVER_TITLES = {
    "onnxruntime": "deploykit serve (ONNX Runtime)",
    "torch": "deploykit serve (PyTorch runtimes)",
    "tfserving": "TensorFlow Serving",
    "triton": "Triton",
    "generic": "deploykit serve",
}
#: The protocols each group speaks (pipeline names, see config.Protocol): TF Serving only its own
#: API, Triton only the Open Inference Protocol; deploykit serve speaks both.
GROUP_PROTOCOLS = {"tfserving": ("grpc", "rest"), "triton": ("v2-grpc", "v2-rest")}
ALL_PROTOCOLS = ("grpc", "rest", "v2-grpc", "v2-rest")
#: Formats the pipeline hands to Triton (its onnxruntime and pytorch backends; SavedModels need an
#: old Triton image with the TensorFlow backend, and torch.export/AOTInductor are not served).
TRITON_FORMATS = ("onnx", "torchscript")
STOP_GRACE_S = 10.0


class ServerError(DeployKitError):
    """A server did not start or did not become ready (the pipeline fails with exit 1)."""

    exit_code = 1


def process_tree_rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` and its descendants (workers, a launched TF Serving), in MiB."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    total, stack, seen = 0, [pid], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        stack += children.get(current, [])
    return round(total / 1024, 1) if total else None


@dataclass
class Server:
    """One server process and what the report says about it."""

    group: str
    models: list[str]
    argv: list[str]
    log: Path
    grpc_port: int
    rest_port: int
    process: subprocess.Popen | None = None
    cold_start_s: float | None = None
    rss_mb: dict[str, float | None] = field(default_factory=dict)
    engine: str = ""
    exit_code: int | None = None

    @property
    def title(self) -> str:
        return SERVER_TITLES.get(self.group, self.group)

    @property
    def protocols(self) -> tuple[str, ...]:
        """The protocols this server speaks."""
        return GROUP_PROTOCOLS.get(self.group, ALL_PROTOCOLS)

    def endpoint(self, protocol: str) -> str:
        """The shared client's target for ``protocol`` (``grpc``, ``rest``, ``v2-grpc``, ``v2-rest``)."""
        transport = (
            f"grpc://127.0.0.1:{self.grpc_port}" if protocol.endswith("grpc") else f"http://127.0.0.1:{self.rest_port}"
        )
        return f"v2+{transport}" if protocol.startswith("v2-") else transport

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout: float) -> None:
        """Until every model answers AVAILABLE over gRPC (the server's own protocol); cold start = spawn to ready."""
        from deploykit.client import Client

        started = time.monotonic()
        process = self.process
        assert process is not None, "start() first"
        with Client(self.endpoint(self.protocols[0]), timeout=timeout) as client:
            for model in self.models:
                while True:
                    if process.poll() is not None:
                        raise ServerError(
                            f"{self.title} exited with status {process.returncode} before {model} was ready; "
                            f"its log ({self.log}) ends:\n{self.log_tail()}"
                        )
                    remaining = timeout - (time.monotonic() - started)
                    if remaining <= 0:
                        raise ServerError(f"{self.title}: {model} not ready after {timeout:g} s; log: {self.log}")
                    try:
                        client.wait_until_ready(model, timeout=min(remaining, 2.0))
                        break
                    except DeployKitError:
                        continue
        self.cold_start_s = round(time.monotonic() - started, 3)
        self.rss_mb["ready"] = process_tree_rss_mb(process.pid)

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join("  " + line for line in self.log.read_text(errors="replace").splitlines()[-lines:])
        return "  (no log)"

    def stop(self) -> None:
        """SIGTERM to the server's process group (graceful drain), SIGKILL after the grace period."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_GRACE_S)
        # Whatever is left in the group (a launched tensorflow_model_server, workers) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.exit_code = self.process.returncode

    def to_dict(self) -> dict:
        return {
            "name": self.title,
            "group": self.group,
            "engine": self.engine,
            "models": self.models,
            "protocols": list(self.protocols),
            "grpc": f"127.0.0.1:{self.grpc_port}",
            "rest": f"127.0.0.1:{self.rest_port}",
            "pid": self.process.pid if self.process else None,
            "cold_start_s": self.cold_start_s,
            "rss_mb": self.rss_mb,
            "log": str(self.log),
            "exit_code": self.exit_code,
        }


def deploykit_argv() -> list[str]:
    """This deploykit, run as a module (so the tree being tested serves, not another install)."""
    return [sys.executable, "-m", "deploykit"]


def plan_servers(
    repo: Path, artifacts: list[dict], run_dir: Path, serving: ServingConfig
) -> tuple[list[Server], list[str]]:
    """One server per group of the validated ``artifacts`` (export report rows), and Triton's when it
    runs; returns them with notes for the report (what was not started, and why)."""
    from deploykit.server import model_config
    from deploykit.tfserving.config import to_text

    groups: dict[str, list[dict]] = {}
    for artifact in artifacts:
        groups.setdefault(FORMAT_SERVER.get(artifact["format"], "generic"), []).append(artifact)
    servers = []
    for group, members in groups.items():
        names = [a["name"] for a in members]
        ports = _ports()
        if group == "tfserving":
            from deploykit.tfserving import deployment

            out = run_dir / "serving" / "tfserving"
            deployment.write(deployment.plan(repo, only=tuple(names)), out)
            engine = ["--engine", "tfserving"] if serving.tfserving == "auto" else []
            argv = [*deploykit_argv(), "serve", str(out), *engine, *ports]
        else:
            config = run_dir / "serving" / f"{group}.config"
            config.parent.mkdir(parents=True, exist_ok=True)
            models = [model_config.ModelConfig(name, (repo / name).resolve()) for name in names]
            config.write_text(to_text(model_config.to_proto(models)))
            argv = [*deploykit_argv(), "serve", "--model_config_file", str(config), *ports]
        servers.append(_server(group, names, argv, run_dir, ports))
    triton, notes = _triton(
        repo, [a["name"] for a in artifacts if a["format"] in TRITON_FORMATS], run_dir, serving.triton
    )
    return servers + ([triton] if triton else []), notes


def _ports() -> list[str]:
    grpc_port, rest_port = free_ports(2)
    return ["--port", str(grpc_port), "--rest_api_port", str(rest_port)]


def _server(group: str, names: list[str], argv: list[str], run_dir: Path, ports: list[str]) -> Server:
    return Server(group, names, argv, run_dir / "logs" / f"{group}.log", int(ports[1]), int(ports[3]))


def _triton(repo: Path, names: list[str], run_dir: Path, mode: str) -> tuple[Server | None, list[str]]:
    """Triton on a ``triton-deploy`` repository of ``names``: the real server when ``mode`` is auto
    and one is present; with ``compatible``, deploykit's server on the files the deployment writes
    for that fallback (``serve --engine triton`` serves the same without Triton); else None and why."""
    if mode == "off" or not names:
        return None, []
    from deploykit.tfserving.engine import docker_engine_reachable
    from deploykit.triton import launcher, plan, repository

    engine: list[str] = []  # the launcher finds tritonserver on PATH itself
    if mode == "auto" and not shutil.which(launcher.BINARY):
        if docker_engine_reachable():
            engine = ["--docker"]
        else:
            return None, [
                f"Triton not started: no {launcher.BINARY} on PATH and no Docker engine (serving.triton: auto); "
                "serving.triton: compatible measures deploykit's v2 server on Triton's repository instead"
            ]
    out = run_dir / "serving" / "triton"
    deployment = repository.write(plan.plan(repo, only=tuple(names)), out)
    served = [m.name for m in deployment.plan.models]
    notes = [f"Triton skipped {line}" for line in deployment.plan.skipped]
    ports = _ports()
    if mode == "compatible":  # deploykit's server on the deployment's own fallback files, even where Triton runs
        batching = out / repository.FALLBACK_BATCHING
        batching_flags = (
            ["--enable_batching", "--batching_parameters_file", str(batching)] if batching.is_file() else []
        )
        served_by = ["--model_config_file", str(out / repository.FALLBACK_CONFIG), *batching_flags]
    else:
        served_by = [str(out), "--engine", "triton", *engine, "--triton-metrics-port", str(free_port())]
    argv = [*deploykit_argv(), "serve", *served_by, *ports]
    return _server("triton", served, argv, run_dir, ports), notes
