"""Dynamic batching: the same model served with and without batching, in one run.

Run:  .venv/bin/python benchmarks/batching.py [--model cnn] [--concurrency 16] [--duration 5]

Trains the zoo model for one epoch and exports it to ONNX (from PyTorch) in a child process (so the
serving process imports neither torch nor TensorFlow), then serves it in this process twice,
without and with dynamic batching (TF Serving's CPU advice: ``num_batch_threads`` = cores,
``batch_timeout_micros`` 0), and loads each with deploykit's load tester (closed loop, gRPC, one
row per request, worker processes, warm-up excluded). Prints throughput, p50/p99 latency, the
batches actually formed (from the server's metrics) and the server's per-request queue/compute
split, and the batched/unbatched ratios from the same run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from deploykit.client import Client
from deploykit.loadtest import payload as payloads
from deploykit.loadtest.runner import Runner, RunSettings
from deploykit.loadtest.target import parse_load_target
from deploykit.server import ServerConfig, ServerThread, metrics
from deploykit.server.batching.options import BatchingOptions
from deploykit.server.model_config import ModelConfig


def prepare(root: Path, model: str) -> Path:
    """Train and export (in a child process: torch and TensorFlow stay out of the server's process)."""
    from deploykit.export.run import ExportOptions, export
    from deploykit.export.sources import load_sources
    from deploykit.train import TrainConfig, train

    train(TrainConfig(model=model, epochs=1, out=root / "run"))
    export(load_sources(str(root / "run"), ("torch",)), ExportOptions(repo=root / "models", formats=("onnx",)))
    return root / "models" / f"{model}-torch-onnx"


def _batches(name: str) -> tuple[float, float]:
    labels = {"model": name, "version": "1", "signature": "serving_default"}
    count = metrics.REGISTRY.get_sample_value("deploykit_batch_size_count", labels) or 0.0
    return count, metrics.REGISTRY.get_sample_value("deploykit_batch_size_sum", labels) or 0.0


def measure(model_dir: Path, name: str, batching: BatchingOptions | None, settings: RunSettings) -> dict:
    config = ServerConfig(models=[ModelConfig(name, model_dir)], grpc_port=0, rest_port=None, batching=batching)
    with ServerThread(config) as server:
        target = parse_load_target(f"{server.grpc_target}/{name}")
        with Client(target.endpoint, timeout=30) as client:
            inputs = payloads.load_inputs(target, client, npz=None, batch_size=1, seed=0)
        payload = payloads.build(target, inputs)
        with Runner(settings) as runner:
            result = runner.run_level(payload, target, settings.levels[0])
    batches, rows = _batches(name)  # includes warm-up: the mean batch size, not a count to compare
    return {
        "rps": result.achieved_rps,
        "p50": result.latency_ms["p50"],
        "p99": result.latency_ms["p99"],
        "errors": result.count["error"],
        "valid": result.valid,
        "reasons": result.invalid_reasons,
        "mean_batch": rows / batches if batches else None,
        "queue": (result.breakdown_ms.get("queue") or {}).get("p50"),
        "compute": (result.breakdown_ms.get("compute") or {}).get("p50"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn", choices=("mlp", "cnn", "transformer"))
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per mode")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument(
        "--num-batch-threads", type=int, default=None, help="default: one per core (TF Serving's advice)"
    )
    parser.add_argument(
        "--model-dir", type=Path, default=None, help="an exported model directory to serve instead (e.g. resnet50)"
    )
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    settings = RunSettings(
        mode="closed", levels=(args.concurrency,), duration_s=args.duration, warmup_s=1.0, max_trials=1
    )
    options = BatchingOptions(
        max_batch_size=args.max_batch_size,
        batch_timeout_micros=0,
        max_enqueued_batches=max(args.concurrency, 1),
        num_batch_threads=args.num_batch_threads or cores,
    )
    with tempfile.TemporaryDirectory() as tmp:
        if args.model_dir is not None:
            model_dir = args.model_dir
        else:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                model_dir = pool.submit(prepare, Path(tmp), args.model).result()
        results = {
            "unbatched": measure(model_dir, "unbatched", None, settings),
            "batched": measure(model_dir, "batched", options, settings),
        }
    print(
        f"model {model_dir.name if args.model_dir else args.model + '-torch-onnx'}, gRPC, "
        f"closed loop concurrency {args.concurrency}, "
        f"{args.duration:g} s measured per mode, {cores} cores; batching: max_batch_size {args.max_batch_size}, "
        f"batch_timeout_micros 0, num_batch_threads {args.num_batch_threads or cores}"
    )
    print(
        "| mode | throughput (req/s) | p50 (ms) | p99 (ms) | mean batch (rows) | server queue p50 (ms) "
        "| server compute p50 (ms) | errors | valid |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, r in results.items():
        valid = "yes" if r["valid"] else "no: " + "; ".join(r["reasons"])
        mean = f"{r['mean_batch']:.2f}" if r["mean_batch"] else "1 (unbatched)"
        print(
            f"| {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {mean} | {r['queue']:.3f} "
            f"| {r['compute']:.3f} | {r['errors']} | {valid} |"
        )
    base, batched = results["unbatched"], results["batched"]
    print(
        f"batched / unbatched: throughput {batched['rps'] / base['rps']:.2f}x, "
        f"p50 {batched['p50'] / base['p50']:.2f}x, p99 {batched['p99'] / base['p99']:.2f}x"
    )


if __name__ == "__main__":
    main()
