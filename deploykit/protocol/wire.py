"""Facts every wire format shares: metadata keys, message limits and the Server-Timing value.

One home for each: the server sets these keys and limits, the client and the load tester read
them. gRPC metadata keys are lower case; REST sends the same names as HTTP headers.
"""

from __future__ import annotations

#: Largest message gRPC can carry (2 GiB - 1): both sides raise gRPC's 4 MiB default to it, and it
#: bounds the tensor a request may declare (a ResNet input at batch 7 already exceeds 4 MiB).
MAX_MESSAGE_BYTES = 2**31 - 1

#: Request metadata with which deploykit's client asks for outputs in ``tensor_content`` (one
#: memory copy) instead of TF Serving's default typed fields. TF Serving ignores it.
TENSOR_CONTENT_KEY = "x-deploykit-tensor-content"
#: Response metadata (gRPC trailer, REST header) naming the engine that served, so load-test
#: reports can say what they measured. TF Serving sends none.
ENGINE_KEY = "x-deploykit-engine"
#: Response metadata with the serving process's PID (which worker of ``serve --workers N`` answered).
WORKER_KEY = "x-deploykit-worker"
#: Response metadata (W3C Server-Timing, milliseconds) splitting the server's time into parts.
SERVER_TIMING_KEY = "server-timing"


def grpc_message_limits(limit: int = MAX_MESSAGE_BYTES) -> list[tuple[str, int]]:
    """gRPC channel/server options lifting the send and receive limits to ``limit`` bytes."""
    return [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]


def server_timing(parts: dict[str, float]) -> str:
    """``{"decode": 1.2e-05, ...}`` (seconds) as a Server-Timing value: ``decode;dur=0.012, ...`` (ms)."""
    return ", ".join(f"{name};dur={seconds * 1000:.3f}" for name, seconds in parts.items())


def parse_server_timing(value: str | None) -> dict[str, float] | None:
    """The inverse of :func:`server_timing`: ``decode;dur=0.012, queue;dur=0.3`` -> seconds per part."""
    if not value:
        return None
    parts = {}
    for item in value.split(","):
        name, _, params = item.strip().partition(";")
        if params.startswith("dur="):
            try:
                parts[name] = float(params[4:]) / 1000.0
            except ValueError:
                continue
    return parts or None
