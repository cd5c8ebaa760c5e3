"""The options of ``deploykit serve``, declared once.

:class:`ServeOptions` is the single declaration of every ``serve`` flag: its type, default and
validation (pydantic), and in a :class:`Flag` beside it the command-line spellings, help text and
the rule for the real TensorFlow Serving. Everything else is derived from it:

* the Typer options of ``deploykit serve`` (:mod:`deploykit.cli.model_options`);
* deploykit's server configuration (:func:`deploykit.serving.api.server_config`);
* the ``tensorflow_model_server`` argv (:func:`deploykit.tfserving.commands.tfserving_argv`), also
  what ``tfserving-deploy`` prints, and the refusals when TF Serving is to run
  (:func:`deploykit.tfserving.commands.refusals`);
* the translation of a user's ``tensorflow_model_server`` command line
  (:mod:`deploykit.cli.tfserving_flags`, with the renamed and ignored flags of
  :mod:`deploykit.serving.tfserving_flags`).

Adding a flag
-------------
Add one field to :class:`ServeOptions`, ``Annotated[type, Flag(...)] = default``:

* A TF Serving flag is a field named exactly as the flag (``--rest_api_num_threads`` is
  ``rest_api_num_threads``); its default is deploykit's default, and the argv carries the flag only
  when the value differs from it (``always=True``: every time). Give it ``tfserving=Rule.PASSED``.
  If deploykit's own server has no use for it, say why in ``deploykit_ignores`` (serve then notes
  it when given); if it is listed in :data:`~deploykit.serving.tfserving_flags.IGNORED`, remove it from there.
* A flag TF Serving lacks: ``Rule.REFUSED`` with ``refused`` (the message when TF Serving is to run
  and the value is not the default), ``Rule.DEPLOYKIT`` when it only matters to deploykit's server
  (TF Serving runs without it), ``Rule.LAUNCH`` when deploykit itself reads it whichever engine runs
  (engine choice, binding, what to serve).
* Validation is pydantic's (``Field(gt=0)``, ``le=...``, validators): errors become one
  :class:`UsageError` line naming the flag.
* What deploykit's server does with it goes in :func:`deploykit.serving.api.server_config`,
  unless the flag is ignored by it. Nothing else changes: help, parsing, the TF Serving argv, the
  refusal and the command-line translation follow the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import ConfigDict, Field

from deploykit.protocol.wire import MAX_MESSAGE_BYTES  # gRPC's largest message (TF Serving sets INT32_MAX)
from deploykit.serving.flag import Flag, Rule
from deploykit.serving.options_rules import ServeRules

MODELS_PANEL = "Models and versions"
TLS_PANEL = "TLS"
LIMITS_PANEL = "Limits and timeouts"
ADMIN_PANEL = "Administrative APIs"
ENGINE_PANEL = "Engine: the real TensorFlow Serving or NVIDIA Triton"


_TLS_REFUSED = (
    "the --ssl_* flags with --engine tfserving: the launcher checks readiness over plaintext gRPC; run "
    "tensorflow_model_server --ssl_config_file=FILE yourself (see deploykit tfserving-deploy), "
    "or use --engine deploykit"
)


def _tls(help_text: str) -> Flag:
    return Flag(help_text, Rule.REFUSED, dashes=True, panel=TLS_PANEL, refused=_TLS_REFUSED)


class ServeOptions(ServeRules):
    """Everything ``deploykit serve`` can be told (see the module docstring); the checks across
    fields and the derived views are in :class:`~deploykit.serving.options_rules.ServeRules`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Annotated[
        Path | None,
        Flag("A model repository NAME/VERSION/... or one model directory VERSION/...", Rule.LAUNCH, argument=True),
    ] = None
    port: Annotated[int, Flag("gRPC port (0 disables gRPC, as in TF Serving).", Rule.PASSED, always=True)] = 8500
    rest_api_port: Annotated[int, Flag("REST port (0 disables REST).", Rule.PASSED, dashes=True, always=True)] = 8501
    host: Annotated[str, Flag("Address to bind; 0.0.0.0 in containers.", Rule.LAUNCH)] = "127.0.0.1"
    model_name: Annotated[
        str | None,
        Flag("Name of the single model at --model_base_path (or PATH).", Rule.PASSED, dashes=True, always=True),
    ] = None
    model_base_path: Annotated[
        Path | None, Flag("Directory of one model's versions (TF Serving flag).", Rule.PASSED, dashes=True, always=True)
    ] = None
    model_config_file: Annotated[
        Path | None,
        Flag(
            "TF Serving ModelServerConfig text proto: several models, version policies, labels.",
            Rule.PASSED,
            panel=MODELS_PANEL,
            host_path=True,
        ),
    ] = None
    model_config_file_poll_wait_seconds: Annotated[
        float,
        Flag(
            "Re-read --model_config_file this often and apply changes (0: read once, TF Serving's default).",
            Rule.PASSED,
            panel=MODELS_PANEL,
            integer=True,
        ),
    ] = 0
    file_system_poll_wait_seconds: Annotated[
        float,
        Flag(
            "Look for new model versions this often; a new version serves once loaded and warmed up, "
            "the old one retires after (0: only at start).",
            Rule.PASSED,
            panel=MODELS_PANEL,
            integer=True,
        ),
    ] = 1
    version_policy: Annotated[
        str,
        Flag(
            "Versions to serve from a model path: latest, latest:N, all or specific:V1,V2 "
            "(--model_config_file sets it per model).",
            Rule.LAUNCH,  # TF Serving gets it inside a temporary deployment's models.config
            ("--version-policy", "--version_policy"),
            panel=MODELS_PANEL,
            fixed_by_deployment=True,
        ),
    ] = "latest"
    label: Annotated[
        list[str] | None,
        Flag(
            "Version label [MODEL:]LABEL=VERSION (repeatable), addressed as /labels/LABEL or version_label.",
            Rule.LAUNCH,  # as --version-policy
            panel=MODELS_PANEL,
            metavar="[MODEL:]LABEL=VERSION",
            fixed_by_deployment=True,
        ),
    ] = None
    enable_batching: Annotated[
        bool,
        Flag(
            "Batch concurrent requests per model signature (TF Serving flag).",
            Rule.PASSED,
            ("--enable_batching", "--enable-batching"),  # a switch without --no- form, as always
            fixed_by_deployment=True,
        ),
    ] = False
    batching_parameters_file: Annotated[
        Path | None,
        Flag(
            "Text-format BatchingParameters (TF Serving's file); without it batching uses TF Serving's defaults.",
            Rule.PASSED,
            dashes=True,
            host_path=True,
            fixed_by_deployment=True,
        ),
    ] = None
    monitoring_config_file: Annotated[
        Path | None,
        Flag(
            "MonitoringConfig text proto (TF Serving): enable/disable Prometheus, its path. "
            "Default: enabled at /monitoring/prometheus/metrics on the REST port.",
            Rule.PASSED,
            dashes=True,
            host_path=True,
            fixed_by_deployment=True,
        ),
    ] = None
    allow_version_labels_for_unavailable_models: Annotated[
        bool, Flag("Let a label point at a version that is not loaded (yet).", Rule.PASSED, panel=MODELS_PANEL)
    ] = False
    enable_model_warmup: Annotated[
        bool, Flag("Run a few requests through each new version before it goes live.", Rule.PASSED, panel=MODELS_PANEL)
    ] = True
    grpc_socket_path: Annotated[
        Path | None,
        Flag("Also serve gRPC (plaintext) on this unix socket (TF Serving flag).", Rule.PASSED, host_path=True),
    ] = None
    grpc_channel_arguments: Annotated[
        str,
        Flag(
            "Extra gRPC server options, key=value comma-separated (TF Serving flag), "
            "e.g. grpc.max_connection_age_ms=2000.",
            Rule.PASSED,
        ),
    ] = ""
    enable_serialization_as_tensor_content: Annotated[
        bool, Flag("Predict outputs as tensor_content bytes instead of typed fields (TF Serving flag).", Rule.PASSED)
    ] = False
    rest_api_enable_cors_support: Annotated[
        bool, Flag("CORS headers on REST answers and preflight requests (TF Serving flag).", Rule.PASSED)
    ] = False
    rest_api_timeout_in_ms: Annotated[
        int, Flag("REST predict deadline; 504 after it.", Rule.PASSED, dashes=True), Field(gt=0)
    ] = 30000
    rest_api_num_threads: Annotated[
        int | None,
        Flag("TF Serving's REST threads (its default: 4 per CPU).", Rule.PASSED, deploykit_ignores="asynchronous REST"),
        Field(gt=0),
    ] = None
    providers: Annotated[
        str | None,
        Flag(
            "ONNX Runtime providers, comma-separated, in order (default: best working of TensorRT, CUDA, CPU).",
            Rule.DEPLOYKIT,
        ),
    ] = None
    intra_op_threads: Annotated[
        int, Flag("ONNX Runtime intra-op threads (0 = its default).", Rule.DEPLOYKIT, dashes=True)
    ] = 0
    inter_op_threads: Annotated[
        int, Flag("ONNX Runtime inter-op threads (0 = its default).", Rule.DEPLOYKIT, dashes=True)
    ] = 0
    inference_threads: Annotated[
        int, Flag("Threads running model calls off the event loop.", Rule.DEPLOYKIT), Field(gt=0)
    ] = 4
    dataplane: Annotated[
        str, Flag("gRPC data plane: native (C++), python, auto (native if built).", Rule.DEPLOYKIT)
    ] = "auto"
    workers: Annotated[
        int,
        Flag(
            "Server processes sharing the ports (SO_REUSEPORT), restarted if they die.",
            Rule.REFUSED,
            refused="{flag} {value}: TensorFlow Serving is one process with its own thread pools (it has no such "
            "flag); drop {flag}, or use --engine deploykit",
        ),
        Field(gt=0),
    ] = 1
    grace_period_seconds: Annotated[
        float,
        Flag(
            "On SIGTERM/SIGINT: time in-flight requests get to finish (new ones are refused).",
            Rule.DEPLOYKIT,
            dashes=True,
        ),
        Field(gt=0),
    ] = 10.0
    max_request_bytes: Annotated[
        int,
        Flag("Largest gRPC message / REST body; larger is RESOURCE_EXHAUSTED / 429.", Rule.DEPLOYKIT, dashes=True),
        Field(gt=0, le=MAX_MESSAGE_BYTES),
    ] = MAX_MESSAGE_BYTES
    enable_admin_apis: Annotated[
        bool,
        Flag(
            "Allow the administrative APIs: TF Serving's HandleReloadConfigRequest and v2 repository "
            "load/unload (else PERMISSION_DENIED / 403; a --model_config_file start allows them too).",
            Rule.DEPLOYKIT,
            ("--enable-admin-apis", "--enable_admin_apis"),
            panel=ADMIN_PANEL,
        ),
    ] = False
    admin_model_roots: Annotated[
        list[Path] | None,
        Flag(
            "A directory administrative APIs may load models from (repeatable), beside the model path or "
            "config the server started with.",
            Rule.DEPLOYKIT,
            dashes=True,
            panel=ADMIN_PANEL,
            metavar="DIR",
        ),
    ] = None
    admin_allow_unload_all: Annotated[
        bool,
        Flag(
            "Let an administrative API unload every model (a reload with an empty config).",
            Rule.DEPLOYKIT,
            ("--admin_allow_unload_all", "--admin-allow-unload-all"),
            panel=ADMIN_PANEL,
        ),
    ] = False
    max_decoded_tensor_bytes: Annotated[
        int,
        Flag(
            "Largest tensor a request may decode to, checked before allocating (INVALID_ARGUMENT / 400); "
            "default 1 GiB.",
            Rule.DEPLOYKIT,
            dashes=True,
            panel=LIMITS_PANEL,
        ),
        Field(gt=0),
    ] = 2**30
    max_inflated_body_bytes: Annotated[
        int,
        Flag(
            "Largest REST body once inflated from Content-Encoding gzip/deflate/br (RESOURCE_EXHAUSTED / 429); "
            "default 256 MiB.",
            Rule.DEPLOYKIT,
            dashes=True,
            panel=LIMITS_PANEL,
        ),
        Field(gt=0),
    ] = 256 * 2**20
    rest_idle_timeout_seconds: Annotated[
        float,
        Flag(
            "Close a REST connection idle (or sending half a header) this long.",
            Rule.DEPLOYKIT,
            dashes=True,
            panel=LIMITS_PANEL,
        ),
        Field(gt=0),
    ] = 75.0
    rest_body_timeout_seconds: Annotated[
        float,
        Flag("A REST body not received within this long is 408.", Rule.DEPLOYKIT, dashes=True, panel=LIMITS_PANEL),
        Field(gt=0),
    ] = 60.0
    grpc_keepalive_seconds: Annotated[
        float,
        Flag(
            "Ping gRPC clients after this long without activity; drop them when unanswered (0: off).",
            Rule.DEPLOYKIT,
            dashes=True,
            panel=LIMITS_PANEL,
        ),
        Field(ge=0),
    ] = 120.0
    grpc_keepalive_timeout_seconds: Annotated[
        float,
        Flag("How long a gRPC keepalive ping may go unanswered.", Rule.DEPLOYKIT, dashes=True, panel=LIMITS_PANEL),
        Field(gt=0),
    ] = 20.0
    grpc_max_connection_idle_seconds: Annotated[
        float,
        Flag(
            "Close a gRPC connection without calls for this long (0: never).",
            Rule.DEPLOYKIT,
            dashes=True,
            panel=LIMITS_PANEL,
        ),
        Field(ge=0),
    ] = 600.0
    grpc_max_connection_age_seconds: Annotated[
        float,
        Flag(
            "Ask gRPC clients to reconnect after this long, e.g. to rebalance (0: never).",
            Rule.DEPLOYKIT,
            dashes=True,
            panel=LIMITS_PANEL,
        ),
        Field(ge=0),
    ] = 0.0
    ssl_cert_file: Annotated[
        Path | None,
        _tls("Server certificate (PEM): TLS."),
    ] = None
    ssl_key_file: Annotated[Path | None, _tls("Server private key (PEM).")] = None
    ssl_client_ca_file: Annotated[
        Path | None,
        _tls("CA for client certificates (PEM): mutual TLS."),
    ] = None
    ssl_config_file: Annotated[
        Path | None,
        _tls("TF Serving's SSLConfig text proto (server_key, server_cert, custom_ca, client_verify)."),
    ] = None
    log_level: Annotated[str, Flag("debug, info, warning or error.", Rule.LAUNCH)] = "info"
    engine: Annotated[
        str,
        Flag(
            "deploykit (this server), tfserving (the real TensorFlow Serving: binary, or Docker with --docker; "
            "deploykit when neither exists), auto (tfserving if it serves every model), triton (a triton-deploy dir).",
            Rule.LAUNCH,
        ),
    ] = "deploykit"
    tfserving_binary: Annotated[
        str | None, Flag("tensorflow_model_server to run (default: the one on PATH).", Rule.LAUNCH, panel=ENGINE_PANEL)
    ] = None
    docker: Annotated[
        bool,
        Flag(
            "Run TF Serving's official Docker image (needs a reachable Docker engine).", Rule.LAUNCH, panel=ENGINE_PANEL
        ),
    ] = False
    tfserving_image: Annotated[str, Flag("Docker image for --docker.", Rule.LAUNCH, panel=ENGINE_PANEL)] = (
        "tensorflow/serving:latest"
    )
    triton_binary: Annotated[str | None, Flag("tritonserver for --engine triton.", Rule.LAUNCH, panel=ENGINE_PANEL)] = (
        None
    )
    triton_metrics_port: Annotated[
        int, Flag("Triton's --metrics-port.", Rule.LAUNCH, panel=ENGINE_PANEL), Field(gt=0)
    ] = 8002
