"""What a :class:`~deploykit.server.server.Server` serves and where: :class:`ServerConfig`, the
models it resolves to, and the one warning an open bind deserves. Built from the serve options
(:mod:`deploykit.serving.options`) or by an embedding application."""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path

from deploykit.errors import UsageError
from deploykit.protocol.tensor_codec import DEFAULT_MAX_TENSOR_BYTES
from deploykit.protocol.wire import MAX_MESSAGE_BYTES  # TF Serving's INT32_MAX: 4 MiB fails a ResNet batch of 7
from deploykit.server import http_body, metrics, model_config
from deploykit.server.admin import AdminPolicy
from deploykit.server.batching.options import BatchingOptions
from deploykit.server.model_config import ModelConfig, VersionPolicy
from deploykit.server.rest_frontend import DEFAULT_BODY_TIMEOUT_S, DEFAULT_TIMEOUT_S
from deploykit.server.version_loader import LoadedVersion, discover
from deploykit.tls import ServerTls

log = logging.getLogger(__name__)


@dataclass
class ServerConfig:
    """What to serve and where. ``grpc_port``/``rest_port``: 0 picks a free port, None disables.

    The models come from, in this order: ``models`` (given by an embedding application), a
    ``model_config_file`` (TF Serving's ModelServerConfig text proto), or ``model_path`` (a model
    repository or one model directory) with ``version_policy`` and ``labels`` applied to it.
    """

    model_path: Path | None = None
    model_name: str | None = None
    host: str = "127.0.0.1"
    grpc_port: int | None = 8500
    rest_port: int | None = 8501
    #: ONNX Runtime execution providers to use (default: best working, TensorRT > CUDA > CPU).
    providers: list[str] | None = None
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    #: Threads running inference (framework calls happen off the event loop).
    inference_threads: int = 4
    #: Largest request (and response) message in bytes; larger is RESOURCE_EXHAUSTED / 429.
    max_message_bytes: int = MAX_MESSAGE_BYTES
    models: list[ModelConfig] = field(default_factory=list)
    model_config_file: Path | None = None
    #: Re-read ``model_config_file`` this often (TF Serving's default 0: read once).
    model_config_poll_seconds: float = 0.0
    #: Look for new versions this often (TF Serving's default 1 s; 0 or less: only at start).
    file_system_poll_seconds: float = 1.0
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    #: ``(model or None, label, version)``; None applies to the only model.
    labels: list[tuple[str | None, str, int]] = field(default_factory=list)
    allow_labels_for_unavailable: bool = False
    #: Requests run through each new version before it goes live (0 disables warm-up).
    warmup_requests: int = 3
    #: TF Serving's --rest_api_timeout_in_ms, in seconds: a REST predict unanswered by then is 504.
    rest_timeout_s: float = DEFAULT_TIMEOUT_S
    #: Seconds :meth:`Server.stop` lets in-flight requests finish before closing.
    grace_period_s: float = 10.0
    #: Prometheus path on the REST port (None: monitoring off).
    metrics_path: str | None = metrics.DEFAULT_PATH
    #: TLS on both ports (None: plaintext).
    tls: ServerTls | None = None
    #: Let several processes listen on the same ports (``deploykit serve --workers N``).
    reuse_port: bool = False
    #: REST listening sockets a supervisor opened for its workers: one accept queue, which outlives a
    #: killed worker (``deploykit serve --workers N``). Empty: the server binds ``rest_port`` itself.
    rest_sockets: list[socket.socket] = field(default_factory=list)
    #: Also serve gRPC (plaintext) on this unix socket (TF Serving's --grpc_socket_path).
    grpc_socket_path: Path | None = None
    #: Extra gRPC server options (TF Serving's --grpc_channel_arguments), after deploykit's own.
    grpc_channel_arguments: list[tuple[str, int | str]] = field(default_factory=list)
    #: Predict outputs as ``tensor_content`` bytes (TF Serving's --enable_serialization_as_tensor_content).
    tensor_content_outputs: bool = False
    #: CORS headers on REST answers and preflight requests (TF Serving's --rest_api_enable_cors_support).
    rest_cors: bool = False
    #: Versions the caller already loaded (embedding applications, servers built for tests).
    preloaded: list[LoadedVersion] = field(default_factory=list)
    #: Dynamic batching (``--enable_batching``); None runs each request on its own.
    batching: BatchingOptions | None = None
    #: gRPC data plane: ``native`` (C++, when built), ``python`` (grpc.aio), ``auto`` (native when built).
    dataplane: str = "auto"
    #: Administrative APIs (TF Serving's config reload, v2 repository load/unload) allowed
    #: (deploykit.server.admin.ADMIN_FLAG); a ``model_config_file`` start allows them too.
    admin_apis: bool = False
    #: Where administrative APIs may load models from, beside the roots the server started with.
    admin_model_roots: list[Path] = field(default_factory=list)
    #: Let an administrative API unload every model (an empty reload config).
    admin_allow_unload_all: bool = False
    #: Largest tensor a request may decode to (checked before allocating; INVALID_ARGUMENT / 400).
    max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES
    #: Largest REST body once inflated from its Content-Encoding (RESOURCE_EXHAUSTED / 429).
    max_inflated_body_bytes: int = http_body.DEFAULT_MAX_INFLATED_BYTES
    #: REST: an idle connection (or one that sent half a header) is closed after this many seconds.
    rest_idle_timeout_s: float = 75.0
    #: REST: a request body not received within this many seconds is 408.
    rest_body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    #: gRPC connection management (seconds; 0 turns one off): see :func:`grpc_connection_options`.
    grpc_keepalive_s: float = 120.0
    grpc_keepalive_timeout_s: float = 20.0
    grpc_max_connection_idle_s: float = 600.0
    grpc_max_connection_age_s: float = 0.0

    def admin_policy(self, models: list[ModelConfig]) -> AdminPolicy:
        """The administrative APIs' permission rule for a server started with ``models``: its
        roots are the model path (else the started models' base paths) and ``admin_model_roots``."""
        roots = [self.model_path] if self.model_path else [m.base_path for m in models]
        enabled = self.admin_apis or self.model_config_file is not None
        return AdminPolicy.build(enabled, [*roots, *self.admin_model_roots], self.admin_allow_unload_all)

    def grpc_connection_options(self) -> dict[str, int]:
        """gRPC server options that bound connections: server keepalive pings (a dead peer is
        dropped after ``keepalive + timeout``), closing idle connections, and a maximum age
        (off by default; with it, clients reconnect, e.g. to rebalance behind a load balancer)."""
        options = {}
        if self.grpc_keepalive_s > 0:
            options["grpc.keepalive_time_ms"] = int(self.grpc_keepalive_s * 1000)
            options["grpc.keepalive_timeout_ms"] = int(self.grpc_keepalive_timeout_s * 1000)
        if self.grpc_max_connection_idle_s > 0:
            options["grpc.max_connection_idle_ms"] = int(self.grpc_max_connection_idle_s * 1000)
        if self.grpc_max_connection_age_s > 0:
            options["grpc.max_connection_age_ms"] = int(self.grpc_max_connection_age_s * 1000)
            options["grpc.max_connection_age_grace_ms"] = 30_000  # requests in flight then finish
        return options

    def initial_models(self) -> tuple[list[ModelConfig], str | None]:
        """The models to serve at start, and the config file text they came from (None without one:
        the config-file poller compares against exactly what was applied)."""
        if self.models:
            return self.models, None
        if self.model_config_file is not None:
            if self.model_path is not None:
                raise UsageError("give either --model_config_file or a model path, not both")
            text = model_config.read_text(self.model_config_file)
            return model_config.parse(text, str(self.model_config_file)), text
        if self.model_path is None:
            if self.preloaded:
                return [], None
            raise UsageError("nothing to serve: give a model repository, --model_base_path or --model_config_file")
        models = [replace(m, policy=self.version_policy) for m in discover(self.model_path, self.model_name)]
        return _with_labels(models, self.labels), None


def warn_if_open(config: ServerConfig) -> None:
    """One warning when the ports listen beyond this machine without TLS: anyone who reaches them
    can call every API, unauthenticated and unencrypted."""
    if config.tls is None and not _loopback(config.host):
        log.warning(
            "listening on %s without TLS: the gRPC and REST APIs are open to the network and unauthenticated "
            "(use --ssl_cert_file/--ssl_key_file, and --ssl_client_ca_file to require client certificates)",
            config.host,
        )


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def _with_labels(models: list[ModelConfig], labels: list[tuple[str | None, str, int]]) -> list[ModelConfig]:
    by_name = {m.name: dict(m.labels) for m in models}
    for model, label, version in labels:
        if model is None:
            if len(models) != 1:
                raise UsageError(f"label {label}={version}: several models are served; write MODEL:{label}={version}")
            model = models[0].name
        if model not in by_name:
            raise UsageError(f"label {label}: no model named {model!r} (serving: {', '.join(by_name)})")
        by_name[model][label] = version
    return [replace(m, labels=by_name[m.name]) for m in models]
