"""Processes the benchmark starts on loopback: the two transport floors and ``deploykit serve``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from deploykit.ports import free_port

PREDICT = "/tensorflow.serving.PredictionService/Predict"
HERE = Path(__file__).resolve().parent


@dataclass
class Proc:
    """A started server process and the port it serves gRPC on."""

    process: subprocess.Popen
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def build_floor(out_dir: Path) -> tuple[Path | None, str]:
    """Compile the native floor (``floor_server.cc``); (binary, "") or (None, why not)."""
    binary = out_dir / "floor_server"
    if binary.exists() and binary.stat().st_mtime >= (HERE / "floor_server.cc").stat().st_mtime:
        return binary, ""
    if shutil.which("g++") is None or subprocess.run(["pkg-config", "--exists", "grpc++"]).returncode != 0:
        return None, "needs g++ and Debian's libgrpc++-dev (scripts/build-native.sh installs them)"
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "grpc++", "protobuf"], capture_output=True, text=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    command = ["g++", "-O2", "-std=c++17", str(HERE / "floor_server.cc"), "-o", str(binary), *flags.stdout.split()]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        return None, f"compiling the native floor failed: {result.stderr.strip()[-300:]}"
    return binary, ""


def start_native_floor(binary: Path, response_bytes: int) -> Proc:
    port = free_port()
    process = subprocess.Popen([str(binary), f"127.0.0.1:{port}", str(response_bytes)], stderr=subprocess.DEVNULL)
    return Proc(process, port)


def start_python_floor(response_bytes: int) -> Proc:
    port = free_port()
    command = [sys.executable, "-m", "deploykit.bench.pyfloor", f"127.0.0.1:{port}", str(response_bytes)]
    return Proc(subprocess.Popen(command, stderr=subprocess.DEVNULL), port)


def serve_command(repo: Path, port: int, dataplane: str, extra: Sequence[str] = ()) -> list[str]:
    """The exact ``deploykit serve`` command the benchmark runs (printed in the report); ``extra``:
    more flags (``--enable_batching``, ``--workers 2``)."""
    return [
        "deploykit", "serve", str(repo), "--port", str(port), "--rest_api_port", "0",
        "--dataplane", dataplane, "--file_system_poll_wait_seconds", "0", *extra,
    ]  # fmt: skip


def start_serve(repo: Path, dataplane: str, extra: Sequence[str] = ()) -> Proc:
    port = free_port()
    argv = serve_command(repo, port, dataplane, extra)[1:]
    command = [sys.executable, "-c", "from deploykit.cli import main; main()", *argv]
    return Proc(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), port)


def wait_answer(proc: Proc, request: bytes, timeout: float = 120.0, path: str = PREDICT) -> float:
    """Seconds from now until ``proc`` answers ``request`` (sent to the gRPC method ``path``) with OK (polling)."""
    started = time.perf_counter()
    deadline = started + timeout
    with grpc.insecure_channel(proc.target) as channel:
        call = channel.unary_unary(path)
        while True:
            if proc.process.poll() is not None:
                raise RuntimeError(f"the server process exited with {proc.process.returncode}")
            try:
                call(request, timeout=2)
                return time.perf_counter() - started
            except grpc.RpcError:
                if time.perf_counter() > deadline:
                    raise
                time.sleep(0.02)


def rss_mb(pid: int) -> float:
    """Resident set size of a process (MB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tree_rss_mb(pid: int) -> float:
    """Resident set size of a process and all its descendants (MB), from /proc: TorchServe is a launcher,
    a Java front end and a Python worker."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        children += [int(child) for child in task.read_text().split()]
    return rss_mb(pid) + sum(tree_rss_mb(child) for child in children)
