"""The peer rows of ``deploykit bench``: MLServer, KServe's ModelServer and TorchServe against deploykit.

Same model, same client: every server answers one pre-serialized request sent by the same independent
client (:mod:`deploykit.bench.probe`) at the same concurrency levels, each in the protocol it speaks (the
row says which). deploykit serve (each data plane), MLServer and KServe answer an Open Inference Protocol
``ModelInferRequest`` (raw contents) over v2 gRPC; TorchServe, which has no v2 endpoint, answers the same
raw tensor bytes over its own gRPC Predictions API (:mod:`deploykit.bench.torchserve`); and on the MLP,
deploykit serve's TF Serving compatible mode answers a TF Serving ``PredictRequest`` from a SavedModel
(:mod:`deploykit.bench.savedmodel`). Each peer runs an ONNX Runtime model class
(:mod:`deploykit.bench.peer_servers`) in its own virtual environment (:mod:`deploykit.bench.peer_envs`)
with the same intra-op thread count deploykit chooses, on loopback.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deploykit.bench import peer_envs, savedmodel, servers, torchserve
from deploykit.ports import free_ports

if TYPE_CHECKING:
    from deploykit.bench.models import Case
    from deploykit.bench.run import Settings

SCRIPTS = Path(__file__).resolve().parent / "peer_servers"
#: Peer -> its label in the report (the pinned version is the environment's).
LABELS = {
    "mlserver": "MLServer " + peer_envs.PINS["mlserver"][0].split("==")[1],
    "kserve": "KServe ModelServer " + peer_envs.PINS["kserve"][0].split("==")[1],
    "torchserve": "TorchServe " + peer_envs.PINS["torchserve"][0].split("==")[1],
}
#: deploykit's data-plane rows over v2, in the order the peers are compared with them.
REFERENCES = ("deploykit native", "deploykit python")
#: Probe protocol -> how the report names it.
PROTOCOLS = {
    "v2": "v2 gRPC ModelInfer",
    "torchserve": "TorchServe gRPC Predictions",
    "tfserving": "TF Serving gRPC Predict",
}
#: The issue's targets: deploykit ahead of each peer by these factors on every zoo model.
RPS_AHEAD = 2.0  # req/s at c=32 >= 2 x the peer's
P50_AHEAD = 1.5  # p50 at c=1 <= the peer's / 1.5


@dataclass
class PeerProc(servers.Proc):
    """A started peer: ``port`` is its v2 gRPC port, ``http_port`` its REST port."""

    http_port: int = 0


@dataclass
class Target:
    """A running server of one row, the request file it is sent and the probe protocol it is sent in."""

    proc: servers.Proc
    request: Path
    protocol: str


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

    grpc_port, http_port = free_ports(2)
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
    """Rows (model, server, protocol, c1/c32 points, RSS) for deploykit's data planes and each peer, and the
    servers not measured with the reason. Large-tensor cases are left to the serving-overhead rows.
    --quick (a smoke test) compares with the first data plane only (native when built), in one round."""
    zoo = [case for case in cases if 32 in case.levels]
    pythons, not_run = {}, {}
    for peer, label in LABELS.items():
        python, why = _peer_python(peer, settings)
        if python is None:
            not_run[f"peer {label}"] = why
        else:
            pythons[peer] = python
    saved_repo, why = savedmodel.prepare(settings.repo, settings.work_dir, settings.quick)
    if saved_repo is None:
        not_run[savedmodel.LABEL] = why
    rows: list[dict] = []
    # deploykit serves the whole repository from one process; a peer serves one model per process
    ours = {f"deploykit {plane}": servers.start_serve(repo, plane) for plane in planes[: 1 if settings.quick else None]}
    saved = servers.start_serve(saved_repo, planes[0]) if saved_repo is not None else None
    try:
        for case in zoo:
            v2_request = v2_request_file(case, settings.work_dir)
            theirs = {}
            for peer, python in pythons.items():
                try:
                    theirs[peer] = _start(peer, python, case, settings.work_dir)
                except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:  # torch-model-archiver
                    stderr = (exc.stderr or b"").decode(errors="replace").strip()[-300:]
                    not_run[f"peer {LABELS[peer]} on {case.name}"] = f"Not measured: {exc} {stderr}"
            running = {server: Target(proc, v2_request, "v2") for server, proc in ours.items()}
            for peer, proc in theirs.items():
                running[LABELS[peer]] = Target(proc, *_peer_request(peer, case, v2_request, settings.work_dir))
            if saved is not None and case.model.startswith("mlp"):
                running[savedmodel.LABEL] = Target(saved, savedmodel.request_file(case.inputs, settings.work_dir),
                                                   "tfserving")  # fmt: skip
            try:
                rows += _interleaved(running, case, settings)
            finally:
                for peer_proc in theirs.values():
                    peer_proc.stop()
    finally:
        for proc in [*ours.values(), *([saved] if saved else [])]:
            proc.stop()
    return rows, not_run


def _start(peer: str, python: Path, case: Case, work: Path) -> servers.Proc:
    """Start ``peer`` serving the case's ONNX file (its output goes to work/peers.log)."""
    log = work / "peers.log"
    if peer == "torchserve":
        return torchserve.start(python, case.model, case.onnx_path, work, log)
    return start_peer(peer, python, case.model, case.onnx_path, log)


def _peer_request(peer: str, case: Case, v2_request: Path, work: Path) -> tuple[Path, str]:
    """The request file a peer is sent, and its protocol: TorchServe its own, the others v2."""
    if peer != "torchserve":
        return v2_request, "v2"
    path = work / f"{case.name.replace(' ', '_')}.torchserve.request"
    path.write_bytes(torchserve.predictions_request(case.model, case.inputs))
    return path, "torchserve"


def _interleaved(running: dict[str, Target], case: Case, settings: Settings) -> list[dict]:
    """Every server's points on one model, measured in turn (A, B, C, D, then again: two rounds, one under
    --quick) so that a change in the shared machine's load falls on all of them alike. A point is the best
    of its rounds (lowest p50 at c=1, highest req/s at c=32): what the server does when it gets the cores."""
    import grpc

    from deploykit.bench.probe import PATHS
    from deploykit.bench.run import measure as measure_point

    rows, ready = [], {}
    for server, target in running.items():
        try:
            servers.wait_answer(target.proc, target.request.read_bytes(), path=PATHS[target.protocol])
            ready[server] = target
        except (RuntimeError, grpc.RpcError) as exc:  # a peer that fails is a row that says so
            why = f"{exc.code().name}: {exc.details()}" if isinstance(exc, grpc.Call) else str(exc).splitlines()[0]
            rows.append({"model": case.name, "server": server, "protocol": PROTOCOLS[target.protocol],
                         "failed": why})  # fmt: skip
    rounds: dict[str, dict[int, list[dict]]] = {server: {c: [] for c in case.levels} for server in ready}
    for c in case.levels:
        for _ in range(1 if settings.quick else 2):
            for server, target in ready.items():
                point = measure_point(target.proc.target, target.request, c, settings, protocol=target.protocol)
                rounds[server][c].append(point)
    for server, target in ready.items():
        row: dict = {"model": case.name, "server": server, "protocol": PROTOCOLS[target.protocol],
                     "rss_mb": servers.tree_rss_mb(target.proc.process.pid)}  # fmt: skip
        for c, points in rounds[server].items():
            best = min(points, key=lambda p: p["p50_ms"]) if c == 1 else max(points, key=lambda p: p["rps"])
            row[f"c{c}"] = {**best, "rounds": points}
        rows.append(row)
    return rows


def _peer_python(peer: str, settings: Settings) -> tuple[Path | None, str]:
    """The peer's Python, or None and why: not wanted, no Java for TorchServe, absent under --quick, or its
    install failed."""
    env = peer_envs.venv_dir(peer)
    if not settings.peers:
        return None, "Not measured: --no-peers"
    if peer == "torchserve" and (why := torchserve.java_missing()):
        return None, why
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
    """The report's peer section: per zoo model, each server's protocol, p50 at c=1 and req/s at c=32, and
    the targets (against the peers; deploykit's own SavedModel row gets its ratios without a verdict)."""
    rows = results.get("peers", [])
    lines = [
        "",
        "## Peers (same model, same client; the protocol of each row)",
        "",
        f"Target: deploykit ahead of each peer on every zoo model: >= {RPS_AHEAD:g}x throughput at c=32 and "
        f">= {P50_AHEAD:g}x lower p50 at c=1. Every server answers one pre-serialized request from "
        "`python -m deploykit.bench.probe --protocol P`, in the protocol of its row: deploykit, MLServer and "
        "KServe a v2 `ModelInferRequest` (raw contents); TorchServe, which has no v2 endpoint, the same raw "
        "tensor bytes in a `PredictionsRequest` on its gRPC inference API (answer: the outputs' raw bytes); "
        "deploykit's TF Serving compatible mode a `PredictRequest` (`tensor_content`) for the MLP's Keras twin "
        "exported as a SavedModel and run by TensorFlow. Each peer runs an ONNX Runtime model class "
        "(`deploykit/bench/peer_servers/`) in its own virtual environment (`deploykit/bench/peer_envs.py`), one "
        "worker process, with deploykit's intra-op thread count; TorchServe runs with token authorization off "
        "(loopback, the client sends no key). All servers of a model run at once and are measured in turn, "
        "twice (once under --quick); each point is the best of its rounds. RSS: the server's process tree. "
        "Ratios are against deploykit's native data plane over v2 (the Python one when native is not built).",
        "",
        "| model | server | protocol | p50 c=1 (ms) | req/s c=32 | RSS MB | p50 row / deploykit | "
        "req/s deploykit / row |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        protocol = row.get("protocol", PROTOCOLS["v2"])
        if "failed" in row:
            lines.append(f"| {row['model']} | {row['server']} | {protocol} | failed: {row['failed']} | | | | |")
            continue
        lines.append(
            f"| {row['model']} | {row['server']} | {protocol} | " + _cells(row, _reference(rows, row["model"]))
        )
    return lines


def _cells(row: dict, ours: dict | None) -> str:
    """A measured row's numbers and its ratios to deploykit's reference row (a verdict for peers only)."""
    from deploykit.bench.report import _verdict

    p50, rps = row["c1"]["p50_ms"], row["c32"]["rps"]
    p50_cell = rps_cell = ""
    if ours is not None and row["server"] not in REFERENCES:
        p50_ratio, rps_ratio = p50 / ours["c1"]["p50_ms"], ours["c32"]["rps"] / rps
        p50_cell, rps_cell = f"{p50_ratio:.2f}x", f"{rps_ratio:.2f}x"
        if not row["server"].startswith("deploykit"):
            p50_cell += f" ({_verdict(p50_ratio >= P50_AHEAD)})"
            rps_cell += f" ({_verdict(rps_ratio >= RPS_AHEAD)})"
    return f"{p50:.3f} | {rps:.0f} | {row['rss_mb']:.0f} | {p50_cell} | {rps_cell} |"


def _reference(rows: list[dict], model: str) -> dict | None:
    """deploykit's row the peers are compared with: the native data plane's, else the Python one's."""
    for server in REFERENCES:
        for row in rows:
            if row["model"] == model and row["server"] == server and "failed" not in row:
                return row
    return None
