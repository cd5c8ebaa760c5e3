"""``deploykit serve``: TF Serving's gRPC and REST API over ONNX Runtime, torch and SavedModel runtimes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deploykit.cli.common import exits_on_error


@exits_on_error
def serve(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="A model repository NAME/VERSION/... or one model directory VERSION/...", show_default=False
        ),
    ] = None,
    port: Annotated[int, typer.Option("--port", help="gRPC port (0 disables gRPC, as in TF Serving).")] = 8500,
    rest_api_port: Annotated[
        int, typer.Option("--rest_api_port", "--rest-api-port", help="REST port (0 disables REST).")
    ] = 8501,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 in containers.")] = "127.0.0.1",
    model_name: Annotated[
        str | None,
        typer.Option("--model_name", "--model-name", help="Name of the single model at --model_base_path (or PATH)."),
    ] = None,
    model_base_path: Annotated[
        Path | None,
        typer.Option(
            "--model_base_path", "--model-base-path", help="Directory of one model's versions (TF Serving flag)."
        ),
    ] = None,
    providers: Annotated[
        str | None,
        typer.Option(
            help="ONNX Runtime providers, comma-separated, in order (default: best working of TensorRT, CUDA, CPU)."
        ),
    ] = None,
    intra_op_threads: Annotated[
        int,
        typer.Option(
            "--intra_op_threads", "--intra-op-threads", help="ONNX Runtime intra-op threads (0 = its default)."
        ),
    ] = 0,
    inter_op_threads: Annotated[
        int,
        typer.Option(
            "--inter_op_threads", "--inter-op-threads", help="ONNX Runtime inter-op threads (0 = its default)."
        ),
    ] = 0,
    inference_threads: Annotated[int, typer.Option(help="Threads running model calls off the event loop.")] = 4,
    model_config_file: Annotated[
        Path | None,
        typer.Option(
            "--model_config_file",
            help="TF Serving ModelServerConfig text proto: several models, version policies, labels.",
            rich_help_panel="Models and versions",
        ),
    ] = None,
    model_config_file_poll_wait_seconds: Annotated[
        float,
        typer.Option(
            "--model_config_file_poll_wait_seconds",
            help="Re-read --model_config_file this often and apply changes (0: read once, TF Serving's default).",
            rich_help_panel="Models and versions",
        ),
    ] = 0,
    file_system_poll_wait_seconds: Annotated[
        float,
        typer.Option(
            "--file_system_poll_wait_seconds",
            help="Look for new model versions this often; a new version serves once loaded and warmed up, "
            "the old one retires after (0: only at start).",
            rich_help_panel="Models and versions",
        ),
    ] = 1,
    version_policy: Annotated[
        str,
        typer.Option(
            "--version-policy",
            "--version_policy",
            help="Versions to serve from a model path: latest, latest:N, all or specific:V1,V2 "
            "(--model_config_file sets it per model).",
            rich_help_panel="Models and versions",
        ),
    ] = "latest",
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label",
            metavar="[MODEL:]LABEL=VERSION",
            help="Version label [MODEL:]LABEL=VERSION (repeatable), addressed as /labels/LABEL or version_label.",
            rich_help_panel="Models and versions",
        ),
    ] = None,
    allow_version_labels_for_unavailable_models: Annotated[
        bool,
        typer.Option(
            "--allow_version_labels_for_unavailable_models/--no-allow_version_labels_for_unavailable_models",
            help="Let a label point at a version that is not loaded (yet).",
            rich_help_panel="Models and versions",
        ),
    ] = False,
    enable_model_warmup: Annotated[
        bool,
        typer.Option(
            "--enable_model_warmup/--no-enable_model_warmup",
            help="Run a few requests through each new version before it goes live.",
            rich_help_panel="Models and versions",
        ),
    ] = True,
    enable_batching: Annotated[
        bool,
        typer.Option(
            "--enable_batching",
            "--enable-batching",
            help="Batch concurrent requests per model signature (TF Serving flag).",
        ),
    ] = False,
    batching_parameters_file: Annotated[
        Path | None,
        typer.Option(
            "--batching_parameters_file",
            "--batching-parameters-file",
            help="Text-format BatchingParameters (TF Serving's file); without it batching uses TF Serving's defaults.",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Server processes sharing the ports (SO_REUSEPORT), restarted if they die.")
    ] = 1,
    grpc_socket_path: Annotated[
        Path | None,
        typer.Option("--grpc_socket_path", help="Also serve gRPC (plaintext) on this unix socket (TF Serving flag)."),
    ] = None,
    grpc_channel_arguments: Annotated[
        str,
        typer.Option(
            "--grpc_channel_arguments",
            help="Extra gRPC server options, key=value comma-separated (TF Serving flag), "
            "e.g. grpc.max_connection_age_ms=2000.",
        ),
    ] = "",
    enable_serialization_as_tensor_content: Annotated[
        bool,
        typer.Option(
            "--enable_serialization_as_tensor_content/--no-enable_serialization_as_tensor_content",
            help="Predict outputs as tensor_content bytes instead of typed fields (TF Serving flag).",
        ),
    ] = False,
    rest_api_enable_cors_support: Annotated[
        bool,
        typer.Option(
            "--rest_api_enable_cors_support/--no-rest_api_enable_cors_support",
            help="CORS headers on REST answers and preflight requests (TF Serving flag).",
        ),
    ] = False,
    grace_period_seconds: Annotated[
        float,
        typer.Option(
            "--grace_period_seconds",
            "--grace-period-seconds",
            help="On SIGTERM/SIGINT: time in-flight requests get to finish (new ones are refused).",
        ),
    ] = 10.0,
    rest_api_timeout_in_ms: Annotated[
        int,
        typer.Option(
            "--rest_api_timeout_in_ms", "--rest-api-timeout-in-ms", help="REST predict deadline; 504 after it."
        ),
    ] = 30000,
    max_request_bytes: Annotated[
        int,
        typer.Option(
            "--max_request_bytes",
            "--max-request-bytes",
            help="Largest gRPC message / REST body; larger is RESOURCE_EXHAUSTED / 429.",
        ),
    ] = 2**31 - 1,
    monitoring_config_file: Annotated[
        Path | None,
        typer.Option(
            "--monitoring_config_file",
            "--monitoring-config-file",
            help="MonitoringConfig text proto (TF Serving): enable/disable Prometheus, its path. "
            "Default: enabled at /monitoring/prometheus/metrics on the REST port.",
        ),
    ] = None,
    ssl_cert_file: Annotated[
        Path | None, typer.Option("--ssl_cert_file", "--ssl-cert-file", help="Server certificate (PEM): TLS.")
    ] = None,
    ssl_key_file: Annotated[
        Path | None, typer.Option("--ssl_key_file", "--ssl-key-file", help="Server private key (PEM).")
    ] = None,
    ssl_client_ca_file: Annotated[
        Path | None,
        typer.Option(
            "--ssl_client_ca_file", "--ssl-client-ca-file", help="CA for client certificates (PEM): mutual TLS."
        ),
    ] = None,
    ssl_config_file: Annotated[
        Path | None,
        typer.Option(
            "--ssl_config_file",
            "--ssl-config-file",
            help="TF Serving's SSLConfig text proto (server_key, server_cert, custom_ca, client_verify).",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    engine: Annotated[
        str,
        typer.Option(
            help="deploykit (this server), tfserving (the real TensorFlow Serving: binary, or Docker with "
            "--docker; falls back to deploykit when neither exists) or auto (tfserving when it can serve "
            "every model)."
        ),
    ] = "deploykit",
    tfserving_binary: Annotated[
        str | None, typer.Option(help="tensorflow_model_server to run (default: the one on PATH).")
    ] = None,
    docker: Annotated[
        bool, typer.Option(help="Run TF Serving's official Docker image (needs a reachable Docker engine).")
    ] = False,
    tfserving_image: Annotated[str, typer.Option(help="Docker image for --docker.")] = "tensorflow/serving:latest",
) -> None:
    """Serve exported models behind TensorFlow Serving's API: gRPC (PredictionService, ModelService,
    health) and REST (/v1/models/...), Prometheus metrics on the REST port.

    The ports open once the initial models are loaded; a model that fails to load is reported in
    its status and the log while the others serve. New versions dropped into a model's directory
    are loaded, warmed up and switched to without failed requests; a broken one leaves the old
    version serving. TF Serving's flag names work unchanged (also as --flag=value, --flag=true).
    SIGINT/SIGTERM stop the server gracefully: health turns NOT_SERVING, new requests are refused
    (UNAVAILABLE / 503), requests in flight finish within --grace_period_seconds.
    """
    import logging

    from deploykit.errors import UsageError
    from deploykit.server import ServerConfig
    from deploykit.server.app import parse_grpc_channel_arguments
    from deploykit.server.batching import options as batching
    from deploykit.server.metrics import monitoring_path
    from deploykit.server.model_config import VersionPolicy, parse_label
    from deploykit.server.workers import Supervisor, describe_models, serve_until_signal

    if path is not None and model_base_path is not None:
        raise UsageError("give either PATH or --model_base_path, not both")
    if model_base_path is not None and model_name is None:
        model_name = "default"  # TF Serving's default model name
    policy, labels = VersionPolicy.parse(version_policy), tuple(parse_label(text) for text in label or [])
    if engine != "deploykit" or tfserving_binary or docker:  # the real TF Serving: deploykit/tfserving/launcher.py
        from deploykit.tfserving.launcher import LaunchRequest, launch

        fallback = launch(
            LaunchRequest(
                engine,
                model_base_path or path,
                model_name,
                host,
                port,
                rest_api_port,
                binary=tfserving_binary,
                docker=docker,
                image=tfserving_image,
                model_config_file=model_config_file,
                model_config_file_poll_wait_seconds=model_config_file_poll_wait_seconds,
                file_system_poll_wait_seconds=file_system_poll_wait_seconds,
                version_policy=policy,
                labels=labels,
                allow_version_labels_for_unavailable_models=allow_version_labels_for_unavailable_models,
                enable_batching=enable_batching,
                batching_parameters_file=batching_parameters_file,
                monitoring_config_file=monitoring_config_file,
                tls=any((ssl_cert_file, ssl_key_file, ssl_client_ca_file, ssl_config_file)),
                workers=workers,
                grpc_socket_path=grpc_socket_path,
                grpc_channel_arguments=grpc_channel_arguments,
                enable_serialization_as_tensor_content=enable_serialization_as_tensor_content,
                rest_api_enable_cors_support=rest_api_enable_cors_support,
            )
        )
        if fallback is None:  # TF Serving served until SIGINT/SIGTERM
            return
        typer.echo(fallback.line, err=True)
        path, model_base_path = fallback.path, None
        if fallback.config_file is not None:  # a deployment: served with its own config, batching, monitoring
            model_config_file, path, monitoring_config_file = fallback.config_file, None, fallback.monitoring_file
            enable_batching, batching_parameters_file = fallback.batching_file is not None, fallback.batching_file
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _check_positive(
        workers=workers,
        grace_period_seconds=grace_period_seconds,
        rest_api_timeout_in_ms=rest_api_timeout_in_ms,
        max_request_bytes=max_request_bytes,
    )
    if max_request_bytes > 2**31 - 1:
        raise UsageError(f"--max_request_bytes must be at most {2**31 - 1} (gRPC's limit), got {max_request_bytes}")
    config = ServerConfig(
        model_path=model_base_path or path,
        model_name=model_name,
        host=host,
        grpc_port=port or None,
        rest_port=rest_api_port or None,
        providers=providers.split(",") if providers else None,
        intra_op_threads=intra_op_threads,
        inter_op_threads=inter_op_threads,
        inference_threads=inference_threads,
        model_config_file=model_config_file,
        model_config_poll_seconds=model_config_file_poll_wait_seconds,
        file_system_poll_seconds=file_system_poll_wait_seconds,
        version_policy=policy,
        labels=list(labels),
        allow_labels_for_unavailable=allow_version_labels_for_unavailable_models,
        warmup_requests=3 if enable_model_warmup else 0,
        batching=batching.resolve(enable_batching, batching_parameters_file),
        max_message_bytes=max_request_bytes,
        rest_timeout_s=rest_api_timeout_in_ms / 1000,
        grace_period_s=grace_period_seconds,
        metrics_path=monitoring_path(monitoring_config_file),
        tls=_server_tls(ssl_cert_file, ssl_key_file, ssl_client_ca_file, ssl_config_file),
        grpc_socket_path=grpc_socket_path,
        grpc_channel_arguments=parse_grpc_channel_arguments(grpc_channel_arguments),
        tensor_content_outputs=enable_serialization_as_tensor_content,
        rest_cors=rest_api_enable_cors_support,
    )
    if config.grpc_port is None and config.rest_port is None and grpc_socket_path is None:
        raise UsageError("both --port and --rest_api_port are 0 and no --grpc_socket_path: nothing would listen")
    security = "" if config.tls is None else " (mutual TLS)" if config.tls.client_ca else " (TLS)"

    def ready(grpc_port, rest_port, models: str, pids: str = "") -> None:
        typer.echo(
            f"deploykit serve (engine deploykit): ready on gRPC {host}:{grpc_port}, REST {host}:{rest_port}"
            f"{security}; models: {models}{pids}",
            err=True,
        )

    def stopping() -> None:
        typer.echo("deploykit serve: shutting down", err=True)

    if workers == 1:
        serve_until_signal(
            config, lambda server: ready(server.grpc_port, server.rest_port, describe_models(server)), stopping
        )
        return
    supervisor = Supervisor(config, workers, log_level)
    started = supervisor.start()
    pids = "; workers: " + ", ".join(str(pid) for pid, _ in started)
    ready(supervisor.config.grpc_port, supervisor.config.rest_port, started[0][1], pids)
    code = supervisor.run()
    stopping()
    if code:
        raise typer.Exit(code)


def _check_positive(**values: float) -> None:
    from deploykit.errors import UsageError

    for name, value in values.items():
        if value <= 0:
            raise UsageError(f"--{name} must be positive, got {value:g}")


def _server_tls(cert: Path | None, key: Path | None, client_ca: Path | None, ssl_config: Path | None):
    """The server's TLS material from the --ssl_* flags, or None for plaintext."""
    from deploykit.errors import UsageError
    from deploykit.tls import ServerTls

    if ssl_config is not None:
        if cert or key or client_ca:
            raise UsageError("give either --ssl_config_file or --ssl_cert_file/--ssl_key_file, not both")
        return ServerTls.from_ssl_config(ssl_config)
    if cert is None and key is None:
        if client_ca is not None:
            raise UsageError("--ssl_client_ca_file needs --ssl_cert_file and --ssl_key_file")
        return None
    if cert is None or key is None:
        raise UsageError("TLS needs both --ssl_cert_file and --ssl_key_file")
    return ServerTls.from_files(cert, key, client_ca)
