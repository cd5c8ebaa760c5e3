"""Every deploy path of the realistic models, measured in one interleaved run.

Run (after ``deploykit train --model M --epochs 0`` and the exports, see benchmarks/RESULTS.md):

    .venv/bin/python benchmarks/deploy_paths.py REPO --model resnet50 --batch 1,8 --rounds 3 --calls 5
    .venv/bin/python benchmarks/deploy_paths.py REPO --model resnet50 --rows-per-call 1,8,32

For every artifact ``REPO/MODEL-*`` (ONNX twice: deploykit's tuned session options and ONNX
Runtime's defaults) and every batch size:

- **compute**: the serving runtime called in this process (``Runtime.predict``), p50/p99 per call;
- **end to end**: one gRPC client at concurrency 1 against ``deploykit serve`` (in this process,
  every path behind the same front end), p50/p99 per request.

Paths are measured in interleaved rounds (A B C ... A B C ...) so drift in the machine's load hits
all of them alike; warm-up calls (XLA compiles per batch size, first-run allocations) are not
counted. ``--rows-per-call`` instead prints compute per row at each batch size for every path,
which bounds what dynamic batching can gain.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from deploykit.client import Client
from deploykit.runtimes import load_runtime
from deploykit.server import ServerConfig, ServerThread
from deploykit.server.model_config import ModelConfig
from deploykit.tensors import Signature, random_inputs


def _paths(repo: Path, model: str, only: str | None = None) -> list[tuple[str, Path, str | None]]:
    """(label, version dir, ORT tuning) per deploy path; ONNX twice. ``only``: a substring filter."""
    found = []
    for model_dir in sorted(repo.glob(f"{model}-*{only}*" if only else f"{model}-*")):
        version = model_dir / "1"
        if not (version / "deploykit.json").is_file():  # still being exported
            continue
        fmt = json.loads((version / "deploykit.json").read_text())["format"]
        if fmt == "onnx":
            found += [
                (f"{model_dir.name} (tuned)", version, "tuned"),
                (f"{model_dir.name} (ORT defaults)", version, "default"),
            ]
        else:
            found.append((model_dir.name, version, None))
    return found


def _load(version: Path, tuning: str | None):
    manifest = json.loads((version / "deploykit.json").read_text())
    signature = Signature.from_dict(manifest["signature"])
    options = {"tuning": tuning} if tuning else {}
    return load_runtime(manifest["format"], version / manifest["artifact"], signature, **options), signature


def _pct(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50)), float(np.percentile(samples, 99))


def compute_and_e2e(repo: Path, model: str, batches: list[int], rounds: int, calls: int, warmup: int) -> None:
    paths = _paths(repo, model)
    runtimes = {label: _load(version, tuning) for label, version, tuning in paths}
    compute = {(label, b): [] for label, _, _ in paths for b in batches}
    e2e = {(label, b): [] for label, _, _ in paths for b in batches}
    # Two servers in this process: ONNX Runtime tuning is chosen when a model loads.
    served = {}
    for tuning in ("tuned", "default"):
        os.environ["DEPLOYKIT_ORT_TUNING"] = tuning
        models = [ModelConfig(label.split()[0], version.parent) for label, version, t in paths if t in (None, tuning)]
        if tuning == "default":
            models = [
                m for m in models if json.loads((m.base_path / "1" / "deploykit.json").read_text())["format"] == "onnx"
            ]
        served[tuning] = ServerThread(ServerConfig(models=models, grpc_port=0, rest_port=None, warmup_requests=0))
        served[tuning].__enter__()
    os.environ.pop("DEPLOYKIT_ORT_TUNING")
    clients = {t: Client(s.grpc_target, timeout=600) for t, s in served.items()}
    try:
        for label, _version, tuning in paths:  # warm-up: every path, every batch size, both ways
            runtime, signature = runtimes[label]
            for b in batches:
                inputs = random_inputs(signature, b, 0)
                for _ in range(warmup):
                    runtime.predict(inputs)
                    clients[tuning or "tuned"].predict(label.split()[0], inputs)
        for _ in range(rounds):
            for label, _version, tuning in paths:
                runtime, signature = runtimes[label]
                for b in batches:
                    inputs = random_inputs(signature, b, 0)
                    for _ in range(calls):
                        started = time.perf_counter()
                        runtime.predict(inputs)
                        compute[(label, b)].append((time.perf_counter() - started) * 1000)
                    for _ in range(calls):
                        started = time.perf_counter()
                        clients[tuning or "tuned"].predict(label.split()[0], inputs)
                        e2e[(label, b)].append((time.perf_counter() - started) * 1000)
    finally:
        for client in clients.values():
            client.close()
        for server in served.values():
            server.__exit__(None, None, None)
    load = os.getloadavg()
    print(
        f"{model}: {rounds} interleaved rounds x {calls} calls per path and batch; "
        f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    print("| deploy path | batch | compute p50 (ms) | compute p99 (ms) | end-to-end p50 (ms) | end-to-end p99 (ms) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, _, _ in paths:
        for b in batches:
            c50, c99 = _pct(compute[(label, b)])
            e50, e99 = _pct(e2e[(label, b)])
            print(f"| {label} | {b} | {c50:.1f} | {c99:.1f} | {e50:.1f} | {e99:.1f} |")


def rows_per_call(repo: Path, model: str, batches: list[int], calls: int, only: str | None) -> None:
    print(f"{model}: compute per row (ms), median of {calls} calls; load average {os.getloadavg()[0]:.1f}")
    print("| deploy path | " + " | ".join(f"batch {b}" for b in batches) + " | batch 1 / batch max |")
    print("| --- |" + " ---: |" * (len(batches) + 1))
    for label, version, tuning in _paths(repo, model, only):
        runtime, signature = _load(version, tuning)
        per_row = []
        for b in batches:
            inputs = random_inputs(signature, b, 0)
            runtime.predict(inputs)
            runtime.predict(inputs)
            samples = []
            for _ in range(calls):
                started = time.perf_counter()
                runtime.predict(inputs)
                samples.append((time.perf_counter() - started) * 1000 / b)
            per_row.append(float(np.median(samples)))
        cells = " | ".join(f"{v:.1f}" for v in per_row)
        print(f"| {label} | {cells} | {per_row[0] / per_row[-1]:.2f}x |")
        runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rows-per-call", default=None, help="e.g. 1,8,32: compute per row instead")
    parser.add_argument("--only", default=None, help="deploy paths whose name contains this (e.g. torch-onnx)")
    args = parser.parse_args()
    if args.rows_per_call:
        rows_per_call(args.repo, args.model, [int(b) for b in args.rows_per_call.split(",")], args.calls, args.only)
    else:
        batches = [int(b) for b in args.batch.split(",")]
        compute_and_e2e(args.repo, args.model, batches, args.rounds, args.calls, args.warmup)


if __name__ == "__main__":
    main()
