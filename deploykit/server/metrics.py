"""The server's Prometheus metrics, exposed on the REST port at TF Serving's path.

Every recording call site goes through the functions below, so the metric names, label sets and
bucket choices live in this one module.

With ``deploykit serve --workers N`` the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before any
worker starts (prometheus-client picks its value storage when it is first imported): every worker
then writes its samples to files there, and a scrape answered by any worker sums them
(:func:`exposition`). Gauges say how they combine across workers with ``multiprocess_mode``.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from deploykit.errors import UsageError
from deploykit.protocol.protos import config_pb2

#: TF Serving's default Prometheus path (monitoring_config.proto).
DEFAULT_PATH = "/monitoring/prometheus/metrics"

REGISTRY = CollectorRegistry(auto_describe=True)

# Latency buckets from 100 µs to 10 s: small models answer in well under a millisecond.
_LATENCY_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

REQUESTS = Counter(
    "deploykit_requests",
    "Requests answered, by model, version, API (predict, classify, ...), entry point and status code.",
    ["model", "version", "api", "entrypoint", "status"],
    registry=REGISTRY,
)
REQUEST_LATENCY = Histogram(
    "deploykit_request_latency_seconds",
    "Time from request received to response ready, inside the server.",
    ["model", "version", "api", "entrypoint", "status"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "deploykit_requests_in_flight",
    "Requests admitted and not answered yet (what a graceful shutdown waits for).",
    registry=REGISTRY,
    multiprocess_mode="livesum",  # over the live workers
)
BATCH_SIZE = Histogram(
    "deploykit_batch_size",
    "Rows in each batch the dynamic batcher ran (after padding to an allowed size).",
    ["model", "version", "signature"],
    buckets=_BATCH_BUCKETS,
    registry=REGISTRY,
)
BATCH_PADDING = Counter(
    "deploykit_batch_padding_rows",
    "Rows added to reach an allowed batch size.",
    ["model", "version", "signature"],
    registry=REGISTRY,
)
QUEUE_LATENCY = Histogram(
    "deploykit_queue_latency_seconds",
    "Time a request waited before its computation started (batch queue or inference threads).",
    ["model", "version"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
MODEL_LOAD_SECONDS = Gauge(
    "deploykit_model_load_seconds",
    "Time the last load (and warm-up) of a model version took.",
    ["model", "version"],
    registry=REGISTRY,
    multiprocess_mode="max",  # every worker loads every model: the slowest load
)
MODEL_STATE = Gauge(
    "deploykit_model_state",
    "1 for the state a model version is in (LOADING, AVAILABLE, UNLOADING, END), 0 for the others.",
    ["model", "version", "state"],
    registry=REGISTRY,
    multiprocess_mode="livemax",  # 1 when some live worker is in that state; a crashed worker's files drop out
)
MODEL_STATES = ("LOADING", "AVAILABLE", "UNLOADING", "END")


def observe_request(model: str, version: int | str, api: str, entrypoint: str, status: str, seconds: float) -> None:
    """One answered request; ``entrypoint`` is ``GRPC`` or ``REST``, ``status`` a gRPC code name."""
    labels = (model, str(version), api, entrypoint, status)
    children = _request_children.get(labels)
    if children is None:  # looking the labelled children up costs more than recording (hot path)
        children = _request_children[labels] = (REQUESTS.labels(*labels), REQUEST_LATENCY.labels(*labels))
    children[0].inc()
    children[1].observe(seconds)


#: (model, version, api, entrypoint, status) -> the request counter's and histogram's children.
_request_children: dict[tuple, tuple] = {}


def set_in_flight(count: int) -> None:
    """The number of requests this process is handling now."""
    IN_FLIGHT.set(count)


def observe_batch(model: str, version: int, signature: str, size: int, padding: int) -> None:
    """One batch run by the dynamic batcher: ``size`` rows computed, ``padding`` of them filler."""
    BATCH_SIZE.labels(model, str(version), signature).observe(size)
    if padding:
        BATCH_PADDING.labels(model, str(version), signature).inc(padding)


def observe_queue(model: str, version: int, seconds: float) -> None:
    QUEUE_LATENCY.labels(model, str(version)).observe(seconds)


def set_model_state(model: str, version: int, state: str, load_seconds: float | None = None) -> None:
    """Record a version's lifecycle state (one of :data:`MODEL_STATES`) and its load time."""
    for name in MODEL_STATES:
        MODEL_STATE.labels(model, str(version), name).set(1 if name == state else 0)
    if load_seconds is not None:
        MODEL_LOAD_SECONDS.labels(model, str(version)).set(load_seconds)


#: Content type of :func:`exposition` (Prometheus text format; TF Serving answers ``text/plain``).
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: Environment variable prometheus-client reads for its multiprocess mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def exposition() -> bytes:
    """The Prometheus text exposition of every metric (summed over all workers in multiprocess mode)."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def prepare_multiprocess_dir(directory: Path) -> None:
    """Create ``directory`` empty (samples of an earlier run must not be added to this one's)."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def worker_exited(pid: int) -> None:
    """Drop a dead worker's live gauges (its counters and histograms keep counting in the sums)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)


def monitoring_path(config_file: Path | None) -> str | None:
    """The Prometheus path to serve: from a MonitoringConfig text proto, else the default.

    None means disabled (``prometheus_config { enable: false }``). Without a file deploykit serves
    the default path (TF Serving needs the file to enable it; a scrape path costs nothing idle).
    """
    if config_file is None:
        return DEFAULT_PATH
    from deploykit.protocol import text_proto

    config = text_proto.read(config_file, config_pb2.MonitoringConfig, "--monitoring_config_file")
    prometheus = config.prometheus_config
    if not prometheus.enable:
        return None
    path = prometheus.path or DEFAULT_PATH
    if not path.startswith("/"):
        raise UsageError(f"--monitoring_config_file {config_file}: path {path!r} must start with '/'")
    return path
