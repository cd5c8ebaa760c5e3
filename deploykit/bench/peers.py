"""The peer rows of ``deploykit bench``: MLServer and KServe's ModelServer against deploykit, over v2 gRPC.

Protocol for protocol: every server here answers the same pre-serialized Open Inference Protocol
``ModelInferRequest`` (``raw_input_contents``), sent by the same independent client
(:mod:`deploykit.bench.probe` ``--protocol v2``), at the same concurrency levels. deploykit serve
(each data plane) is measured on its v2 endpoint; each peer runs its own ONNX Runtime model class
(:mod:`deploykit.bench.peer_servers`) in its own virtual environment (:mod:`deploykit.bench.peer_envs`)
with the same intra-op thread count deploykit chooses, on loopback.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deploykit.bench import peer_envs, servers
from deploykit.protocol import v2_paths

if TYPE_CHECKING:
    from deploykit.bench.models import Case
    from deploykit.bench.run import Settings

MODEL_INFER = v2_paths.MODEL_INFER.path
SCRIPTS = Path(__file__).resolve().parent / "peer_servers"
#: Peer -> its label in the report (the pinned version is the environment's).
LABELS = {
    "mlserver": "MLServer " + peer_envs.PINS["mlserver"][0].split("==")[1],
    "kserve": "KServe ModelServer " + peer_envs.PINS["kserve"][0].split("==")[1],
}
#: The issue's targets: deploykit ahead of each peer by these factors on every zoo model.
RPS_AHEAD = 2.0  # req/s at c=32 >= 2 x the peer's
P50_AHEAD = 1.5  # p50 at c=1 <= the peer's / 1.5


@dataclass
class PeerProc(servers.Proc):
    """A started peer: ``port`` is its v2 gRPC port, ``http_port`` its REST port."""

    http_port: int = 0


def v2_request_file(case: Case, work: Path) -> Path:
    """The case's inputs as one serialized ``ModelInferRequest`` (raw contents), written beside its Predict."""
    from deploykit.protocol import v2_tensors
    from deploykit.protocol.protos import v2_service_pb2 as pb

    request = pb.ModelInferRequest(model_name=case.model)
    for name, value in case.inputs.items():
        request.inputs.add(name=name, datatype=v2_tensors.datatype(value.dtype), shape=value.shape)
        request.raw_input_contents.append(v2_tensors.to_raw(value))
    path = work / f"{case.name.replace(' ', '_')}.v2.request"
    path.write_bytes(request.SerializeToString())
    return path


def start_peer(peer: str, python: Path, model: str, onnx_path: Path, log: Path) -> PeerProc:
    """Start ``peer`` (``mlserver`` or ``kserve``) serving ``onnx_path`` as ``model`` on free loopback ports.
    Its output goes to ``log`` (a pipe nobody reads would fill up and stall it)."""
    from deploykit.runtimes.threads import physical_cores

    grpc_port, http_port = servers.free_port(), servers.free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/"),
        "MODEL_NAME": model,
        "MODEL_PATH": str(onnx_path),
        "HTTP_PORT": str(http_port),
        "GRPC_PORT": str(grpc_port),
        "ORT_THREADS": str(physical_cores()),  # what deploykit's ONNX Runtime tuning picks for one worker
    }
    script = SCRIPTS / f"{peer}_onnx.py"
    with log.open("ab") as out:
        process = subprocess.Popen([str(python), str(script)], env=env, stdout=out, stderr=subprocess.STDOUT)
    return PeerProc(process, grpc_port, http_port)


def measure(repo: Path, cases: list[Case], planes: list[str], settings: Settings) -> tuple[list, dict]:
    """Rows (model, server, c1/c32 points, RSS) for deploykit's data planes and each peer over v2, and
    the peers not measured with the reason. Large-tensor cases are left to the serving-overhead rows.
    --quick (a smoke test) compares with the first data plane only (native when built), in one round."""
    zoo = [case for case in cases if 32 in case.levels]
    pythons, not_run = {}, {}
    for peer, label in LABELS.items():
        python, why = _peer_python(peer, settings)
        if python is None:
            not_run[f"peer {label}"] = why
        else:
            pythons[peer] = python
    rows: list[dict] = []
    # deploykit serves the whole repository from one process; a peer serves one model per process
    ours = {f"deploykit {plane}": servers.start_serve(repo, plane) for plane in planes[: 1 if settings.quick else None]}
    try:
        for case in zoo:
            log = settings.work_dir / "peers.log"
            theirs = {
                LABELS[p]: start_peer(p, python, case.model, case.onnx_path, log) for p, python in pythons.items()
            }
            try:
                rows += _interleaved({**ours, **theirs}, case, v2_request_file(case, settings.work_dir), settings)
            finally:
                for peer_proc in theirs.values():
                    peer_proc.stop()
    finally:
        for proc in ours.values():
            proc.stop()
    return rows, not_run


def _interleaved(running: dict[str, servers.Proc], case: Case, request: Path, settings: Settings) -> list[dict]:
    """Every server's points on one model, measured in turn (A, B, C, D, then again: two rounds, one under
    --quick) so that a change in the shared machine's load falls on all of them alike. A point is the best
    of its rounds (lowest p50 at c=1, highest req/s at c=32): what the server does when it gets the cores."""
    import grpc

    from deploykit.bench.run import measure as measure_point

    rows, ready = [], {}
    for server, proc in running.items():
        try:
            servers.wait_answer(proc, request.read_bytes(), path=MODEL_INFER)
            ready[server] = proc
        except (RuntimeError, grpc.RpcError) as exc:  # a peer that fails is a row that says so
            rows.append({"model": case.name, "server": server, "failed": str(exc).splitlines()[0]})
    rounds: dict[str, dict[int, list[dict]]] = {server: {c: [] for c in case.levels} for server in ready}
    for c in case.levels:
        for _ in range(1 if settings.quick else 2):
            for server, proc in ready.items():
                rounds[server][c].append(measure_point(proc.target, request, c, settings, protocol="v2"))
    for server, proc in ready.items():
        row: dict = {"model": case.name, "server": server, "rss_mb": servers.rss_mb(proc.process.pid)}
        for c, points in rounds[server].items():
            best = min(points, key=lambda p: p["p50_ms"]) if c == 1 else max(points, key=lambda p: p["rps"])
            row[f"c{c}"] = {**best, "rounds": points}
        rows.append(row)
    return rows


def _peer_python(peer: str, settings: Settings) -> tuple[Path | None, str]:
    """The peer's Python, or None and why: not wanted, absent under --quick, or its install failed."""
    env = peer_envs.venv_dir(peer)
    if not settings.peers:
        return None, "Not measured: --no-peers"
    if settings.quick:
        python = peer_envs.existing_python(peer)
        return python, "" if python else (
            f"Not measured: its environment {env} is absent and --quick does not build it "
            f"(`python3.11 deploykit/bench/peer_envs.py {peer}` or a full `deploykit bench` does)"
        )
    try:
        return peer_envs.peer_python(peer), ""
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        stderr = (getattr(exc, "stderr", b"") or b"").decode(errors="replace")[-300:]
        return None, f"Not measured: installing {' '.join(peer_envs.PINS[peer])} into {env} failed: {exc} {stderr}"


def section(results: dict) -> list[str]:
    """The report's peer section: per zoo model, each server's p50 at c=1 and req/s at c=32, and the targets."""
    from deploykit.bench.report import _verdict

    rows = results.get("peers", [])
    lines = [
        "",
        "## Peers over v2 gRPC (same request, same client)",
        "",
        f"Target: deploykit ahead of MLServer and KServe's ModelServer on every zoo model: >= {RPS_AHEAD:g}x "
        f"throughput at c=32 and >= {P50_AHEAD:g}x lower p50 at c=1. Every server answers the same pre-serialized "
        "v2 `ModelInferRequest` (raw contents) from `python -m deploykit.bench.probe --protocol v2`; each peer "
        "runs an ONNX Runtime model class (`deploykit/bench/peer_servers/`) in its own virtual environment "
        "(`deploykit/bench/peer_envs.py`), one process, with deploykit's intra-op thread count. All servers of a "
        "model run at once and are measured in turn, twice (once under --quick); each point is the best of its "
        "rounds. Ratios are against deploykit's native data plane (the Python one when native is not built).",
        "",
        "| model | server | p50 c=1 (ms) | req/s c=32 | RSS MB | p50 peer / deploykit | req/s deploykit / peer |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        if "failed" in row:
            lines.append(f"| {row['model']} | {row['server']} | failed: {row['failed']} | | | | |")
            continue
        ours = _reference(rows, row["model"])
        p50, rps = row["c1"]["p50_ms"], row["c32"]["rps"]
        p50_cell = rps_cell = ""
        if ours is not None and not row["server"].startswith("deploykit"):
            p50_ratio, rps_ratio = p50 / ours["c1"]["p50_ms"], ours["c32"]["rps"] / rps
            p50_cell = f"{p50_ratio:.2f}x ({_verdict(p50_ratio >= P50_AHEAD)})"
            rps_cell = f"{rps_ratio:.2f}x ({_verdict(rps_ratio >= RPS_AHEAD)})"
        lines.append(
            f"| {row['model']} | {row['server']} | {p50:.3f} | {rps:.0f} | {row['rss_mb']:.0f} | "
            f"{p50_cell} | {rps_cell} |"
        )
    return lines


def _reference(rows: list[dict], model: str) -> dict | None:
    """deploykit's row the peers are compared with: the native data plane's, else the Python one's."""
    for server in ("deploykit native", "deploykit python"):
        for row in rows:
            if row["model"] == model and row["server"] == server and "failed" not in row:
                return row
    return None
