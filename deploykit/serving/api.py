"""``serve(options)``: choose the engine, fall back when TF Serving cannot serve, serve until a signal.

deploykit's own server (:mod:`deploykit.server`) serves unless ``--engine tfserving|auto`` (or
``--tfserving-binary`` / ``--docker``) asks for the real TensorFlow Serving; then the launcher
(:mod:`deploykit.tfserving.launcher`) runs it, or returns a fallback which deploykit's server serves
in its place, with the reason reported once. Heavy modules (grpc, aiohttp, the runtimes) are imported
inside the calls, so importing this module (and the command line) stays light.
"""

from __future__ import annotations

import logging

from deploykit.serving.events import Event, Listener, log_event
from deploykit.serving.flag import flags
from deploykit.serving.options import ServeOptions
from deploykit.serving.tfserving_flags import parse_grpc_channel_arguments


def serve(options: ServeOptions, on_event: Listener = log_event) -> int:
    """Serve ``options`` until SIGINT/SIGTERM; returns the exit status (0, or a worker's failure).

    Raises :class:`~deploykit.errors.UsageError` for options no engine can honour and
    :class:`~deploykit.errors.LaunchError` when a launched TF Serving fails.
    """
    if options.engine == "triton" or options.triton_binary:  # NVIDIA Triton: deploykit/triton/launcher.py
        from deploykit.triton.launcher import launch as launch_triton

        triton_fallback = launch_triton(options, on_event)
        if triton_fallback is None:  # Triton served until SIGINT/SIGTERM
            return 0
        on_event(Event("fallback", triton_fallback.message))
        options = triton_fallback.apply(options)
    elif options.engine != "deploykit" or options.tfserving_binary or options.docker:
        from deploykit.tfserving.launcher import launch

        tfserving_fallback = launch(options, on_event)
        if tfserving_fallback is None:  # TF Serving served until SIGINT/SIGTERM
            return 0
        on_event(Event("fallback", tfserving_fallback.message))
        options = tfserving_fallback.apply(options)
    return _serve_deploykit(options, on_event)


def ignored_by_deploykit(options: ServeOptions) -> list[str]:
    """Notes for the TF Serving options given that deploykit's server accepts without effect."""
    return [
        f"ignoring TF Serving flag --{name} ({flag.deploykit_ignores})"
        for name, flag in flags(ServeOptions).items()
        if flag.deploykit_ignores and options.changed(name)
    ]


def server_config(options: ServeOptions):
    """deploykit's :class:`~deploykit.server.ServerConfig` for ``options`` (reads the TLS, batching
    and monitoring files they name)."""
    from deploykit.errors import UsageError
    from deploykit.server import ServerConfig
    from deploykit.server.batching import options as batching
    from deploykit.server.metrics import monitoring_path

    config = ServerConfig(
        model_path=options.served_path,
        model_name=options.model_name,
        host=options.host,
        grpc_port=options.port or None,
        rest_port=options.rest_api_port or None,
        providers=options.providers.split(",") if options.providers else None,
        intra_op_threads=options.intra_op_threads,
        inter_op_threads=options.inter_op_threads,
        inference_threads=options.inference_threads,
        dataplane=options.dataplane,
        model_config_file=options.model_config_file,
        model_config_poll_seconds=options.model_config_file_poll_wait_seconds,
        file_system_poll_seconds=options.file_system_poll_wait_seconds,
        version_policy=options.policy,
        labels=list(options.labels),
        allow_labels_for_unavailable=options.allow_version_labels_for_unavailable_models,
        warmup_requests=3 if options.enable_model_warmup else 0,
        batching=batching.resolve(options.enable_batching, options.batching_parameters_file),
        max_message_bytes=options.max_request_bytes,
        rest_timeout_s=options.rest_api_timeout_in_ms / 1000,
        grace_period_s=options.grace_period_seconds,
        metrics_path=monitoring_path(options.monitoring_config_file),
        tls=_server_tls(options),
        grpc_socket_path=options.grpc_socket_path,
        grpc_channel_arguments=parse_grpc_channel_arguments(options.grpc_channel_arguments),
        tensor_content_outputs=options.enable_serialization_as_tensor_content,
        rest_cors=options.rest_api_enable_cors_support,
        admin_apis=options.enable_admin_apis,
        admin_model_roots=list(options.admin_model_roots or []),
        admin_allow_unload_all=options.admin_allow_unload_all,
        max_tensor_bytes=options.max_decoded_tensor_bytes,
        max_inflated_body_bytes=options.max_inflated_body_bytes,
        rest_idle_timeout_s=options.rest_idle_timeout_seconds,
        rest_body_timeout_s=options.rest_body_timeout_seconds,
        grpc_keepalive_s=options.grpc_keepalive_seconds,
        grpc_keepalive_timeout_s=options.grpc_keepalive_timeout_seconds,
        grpc_max_connection_idle_s=options.grpc_max_connection_idle_seconds,
        grpc_max_connection_age_s=options.grpc_max_connection_age_seconds,
    )
    if config.grpc_port is None and config.rest_port is None and config.grpc_socket_path is None:
        raise UsageError("both --port and --rest_api_port are 0 and no --grpc_socket_path: nothing would listen")
    return config


def _server_tls(options: ServeOptions):
    """The server's TLS material from the --ssl_* options, or None for plaintext."""
    from deploykit.errors import UsageError
    from deploykit.tls import ServerTls

    cert, key, client_ca = options.ssl_cert_file, options.ssl_key_file, options.ssl_client_ca_file
    if options.ssl_config_file is not None:
        if cert or key or client_ca:
            raise UsageError("give either --ssl_config_file or --ssl_cert_file/--ssl_key_file, not both")
        return ServerTls.from_ssl_config(options.ssl_config_file)
    if cert is None and key is None:
        if client_ca is not None:
            raise UsageError("--ssl_client_ca_file needs --ssl_cert_file and --ssl_key_file")
        return None
    if cert is None or key is None:
        raise UsageError("TLS needs both --ssl_cert_file and --ssl_key_file")
    return ServerTls.from_files(cert, key, client_ca)


def _serve_deploykit(options: ServeOptions, on_event: Listener) -> int:
    from deploykit.server.config import warn_if_open
    from deploykit.server.workers import Supervisor, describe_models, serve_until_signal

    for note in ignored_by_deploykit(options):
        on_event(Event("note", note))
    config = server_config(options)
    warn_if_open(config)  # once, whatever the number of workers
    security = "" if config.tls is None else " (mutual TLS)" if config.tls.client_ca else " (TLS)"
    host = options.host

    def ready(grpc_port, rest_port, models: str, pids: str = "") -> None:
        message = f"ready on gRPC {host}:{grpc_port}, REST {host}:{rest_port}{security}; models: {models}{pids}"
        on_event(Event("ready", message, engine="deploykit"))

    def stopping() -> None:
        on_event(Event("stopping", "shutting down"))

    if options.workers == 1:
        serve_until_signal(
            config, lambda server: ready(server.grpc_port, server.rest_port, describe_models(server)), stopping
        )
        return 0
    supervisor = Supervisor(config, options.workers, options.log_level)
    started = supervisor.start()
    ready(
        supervisor.config.grpc_port,
        supervisor.config.rest_port,
        started[0][1],
        "; workers: " + ", ".join(str(pid) for pid, _ in started),
    )
    code = supervisor.run()
    stopping()
    return code


def configure_logging(options: ServeOptions) -> None:
    """The process's log format and ``--log-level`` (for programs that want ``serve``'s own)."""
    logging.basicConfig(level=options.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
