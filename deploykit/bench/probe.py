"""The benchmark's closed-loop gRPC client: one pre-serialized request, sent back to back.

Run as its own process (``python -m deploykit.bench.probe``) so that it measures the server, not
itself: ``--processes`` event loops, each with its own channel and ``concurrency / processes``
callers (over ``--connections`` channels). Prints JSON: requests, errors, seconds and the latency of each
request in microseconds.
Unary calls through ``channel.unary_unary`` on raw bytes: no protobuf work on the client side, so
one client measures both protocols the same way: ``--protocol tfserving`` sends a ``PredictRequest``
to TF Serving's Predict, ``--protocol v2`` a ``ModelInferRequest`` to the Open Inference Protocol's
ModelInfer (deploykit, MLServer, KServe, Triton), ``--protocol torchserve`` a ``PredictionsRequest`` to
TorchServe's gRPC Predictions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import time
from pathlib import Path

MAX_MESSAGE = 2**31 - 1
#: Protocol -> the gRPC method its requests go to (the v2 path is v2_paths.MODEL_INFER's).
PATHS = {
    "tfserving": "/tensorflow.serving.PredictionService/Predict",
    "v2": "/inference.GRPCInferenceService/ModelInfer",
    # TorchServe's own gRPC inference API (torchserve.PREDICTIONS; that module imports numpy and protobuf)
    "torchserve": "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions",
}


async def _run(
    target: str, path: str, request: bytes, metadata, concurrency: int, warmup: float, duration: float, connections: int
):
    import grpc

    options = [("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)]
    if connections > 1:  # a TCP connection per channel (else channels share one), e.g. to reach every --workers process
        options.append(("grpc.use_local_subchannel_pool", 1))
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(connections)]
    try:
        calls = [channel.unary_unary(path, request_serializer=None, response_deserializer=None) for channel in channels]
        latencies: list[int] = []
        errors = 0
        started = time.perf_counter()
        measure_from = started + warmup
        stop = measure_from + duration

        async def caller(call):
            nonlocal errors
            while (now := time.perf_counter()) < stop:
                try:
                    await call(request, metadata=metadata, timeout=30)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                if now >= measure_from:
                    latencies.append(int((time.perf_counter() - now) * 1e6))

        await asyncio.gather(*(caller(calls[i % connections]) for i in range(concurrency)))
        return latencies, errors
    finally:
        for channel in channels:
            await channel.close()


def _process(args, concurrency: int, queue) -> None:
    request = Path(args.request).read_bytes()
    metadata = tuple(tuple(item.split("=", 1)) for item in args.metadata)
    result = asyncio.run(
        _run(args.target, args.path, request, metadata, concurrency, args.warmup, args.duration, args.connections)
    )
    queue.put(result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="host:port")
    parser.add_argument("--protocol", choices=sorted(PATHS), default="tfserving", help="which method --request is for")
    parser.add_argument("--path", help="the gRPC method, overriding --protocol's")
    parser.add_argument("--request", required=True, help="file with the serialized request message")
    parser.add_argument("--metadata", action="append", default=[], help="key=value request metadata")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--connections", type=int, default=1, help="gRPC connections per process")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    args.path = args.path or PATHS[args.protocol]
    processes = max(1, min(args.processes, args.concurrency))
    shares = [args.concurrency // processes + (i < args.concurrency % processes) for i in range(processes)]
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_process, args=(args, share, queue)) for share in shares]
    for worker in workers:
        worker.start()
    results = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    latencies = [value for lat, _ in results for value in lat]
    json.dump(
        {"requests": len(latencies), "errors": sum(e for _, e in results), "seconds": args.duration,
         "latencies_us": latencies},
        sys.stdout,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
