"""The pipeline's servers: one ``deploykit serve`` subprocess per engine, grouped so each server
loads only the framework it serves (its cold start and memory are then the engine's own).

Each server runs in its own session (process group): a terminal's Ctrl-C reaches the pipeline only,
and :meth:`Server.stop` ends the whole group (SIGTERM, then SIGKILL), so no process is left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.errors import DeployKitError

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
    "generic": "deploykit serve",
}
STOP_GRACE_S = 10.0


class ServerError(DeployKitError):
    """A server did not start or did not become ready (the pipeline fails with exit 1)."""

    exit_code = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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

    def endpoint(self, protocol: str) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}" if protocol == "grpc" else f"http://127.0.0.1:{self.rest_port}"

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout: float) -> None:
        """Until every model answers AVAILABLE over gRPC; cold start = spawn to ready."""
        from deploykit.client import Client

        started = time.monotonic()
        with Client(self.endpoint("grpc"), timeout=timeout) as client:
            for model in self.models:
                while True:
                    if self.process.poll() is not None:
                        raise ServerError(
                            f"{self.title} exited with status {self.process.returncode} before {model} was ready; "
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
        self.rss_mb["ready"] = process_tree_rss_mb(self.process.pid)

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
            "grpc": self.endpoint("grpc"),
            "rest": self.endpoint("rest"),
            "pid": self.process.pid if self.process else None,
            "cold_start_s": self.cold_start_s,
            "rss_mb": self.rss_mb,
            "log": str(self.log),
            "exit_code": self.exit_code,
        }


def deploykit_argv() -> list[str]:
    """This deploykit, run as a module (so the tree being tested serves, not another install)."""
    return [sys.executable, "-m", "deploykit"]


def plan_servers(repo: Path, artifacts: list[dict], run_dir: Path, tfserving: str) -> list[Server]:
    """One server per group of the validated ``artifacts`` (export report rows)."""
    from deploykit.server import model_config
    from deploykit.tfserving.config import to_text

    groups: dict[str, list[dict]] = {}
    for artifact in artifacts:
        groups.setdefault(FORMAT_SERVER.get(artifact["format"], "generic"), []).append(artifact)
    servers = []
    for group, members in groups.items():
        names = [a["name"] for a in members]
        ports = ["--port", str(free_port()), "--rest_api_port", str(free_port())]
        if group == "tfserving":
            from deploykit.tfserving import deployment

            out = run_dir / "serving" / "tfserving"
            deployment.write(deployment.plan(repo, only=tuple(names)), out)
            engine = ["--engine", "tfserving"] if tfserving == "auto" else []
            argv = [*deploykit_argv(), "serve", str(out), *engine, *ports]
        else:
            config = run_dir / "serving" / f"{group}.config"
            config.parent.mkdir(parents=True, exist_ok=True)
            models = [model_config.ModelConfig(name, (repo / name).resolve()) for name in names]
            config.write_text(to_text(model_config.to_proto(models)))
            argv = [*deploykit_argv(), "serve", "--model_config_file", str(config), *ports]
        servers.append(Server(group, names, argv, run_dir / "logs" / f"{group}.log", int(ports[1]), int(ports[3])))
    return servers
