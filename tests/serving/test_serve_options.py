"""``ServeOptions``: the one declaration of ``deploykit serve``'s flags, and what is derived from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from deploykit.cli import app, tfserving_flags
from deploykit.errors import UsageError
from deploykit.serving.api import ignored_by_deploykit, server_config
from deploykit.serving.events import Event
from deploykit.serving.flag import Rule, display, flags, spellings
from deploykit.serving.options import ServeOptions
from deploykit.serving.tfserving_flags import IGNORED, RENAMED
from deploykit.tfserving.commands import fixed_by_deployment, no_effect_on_tfserving, refusals, tfserving_argv


def test_defaults_are_tf_servings_where_it_has_the_flag() -> None:
    options = ServeOptions()
    assert (options.port, options.rest_api_port, options.host) == (8500, 8501, "127.0.0.1")
    assert options.model_config_file_poll_wait_seconds == 0 and options.file_system_poll_wait_seconds == 1
    assert options.rest_api_timeout_in_ms == 30000 and options.enable_model_warmup is True
    assert options.max_request_bytes == 2**31 - 1 and options.engine == "deploykit"
    # --model_base_path without --model_name: TF Serving's "default".
    assert ServeOptions(model_base_path=Path("m")).model_name == "default"
    assert ServeOptions(model_base_path=Path("m"), model_name="m").model_name == "m"


def test_every_field_declares_its_flag_once() -> None:
    seen: dict[str, str] = {}
    for name, flag in flags(ServeOptions).items():
        assert flag.help and isinstance(flag.tfserving, Rule)
        for declaration in spellings(ServeOptions, name):
            for spelling in declaration.split("/"):
                assert spelling not in seen, f"{spelling} of {name} already belongs to {seen.get(spelling)}"
                seen[spelling] = name
        if flag.tfserving is Rule.PASSED:  # a TF Serving flag is the field's name, and serve accepts it
            assert f"--{name}" in seen
        if flag.tfserving is Rule.REFUSED:
            assert flag.refused, f"{name}: a refused flag says why"
    assert not set(seen) & (set(IGNORED) | set(RENAMED)), "a flag is either an option or translated, not both"
    assert set(RENAMED.values()) <= set(seen)


def test_the_typer_command_is_generated_from_the_fields() -> None:
    command = typer.main.get_command(app).commands["serve"]
    params = {param.name: param for param in command.params}
    assert list(params) == list(ServeOptions.model_fields)
    for name, param in params.items():
        assert param.default == ServeOptions.model_fields[name].default or param.default is None
    assert params["version_policy"].opts == ["--version-policy", "--version_policy"]
    assert params["enable_model_warmup"].secondary_opts == ["--no-enable_model_warmup"]
    assert params["path"].param_type_name == "argument"


def test_tf_serving_argv_carries_what_was_given_in_declaration_order() -> None:
    assert tfserving_argv(ServeOptions()) == ["--port=8500", "--rest_api_port=8501"]
    options = ServeOptions(
        model_base_path=Path("/m"),
        file_system_poll_wait_seconds=5.0,
        enable_model_warmup=False,
        rest_api_enable_cors_support=True,
        rest_api_timeout_in_ms=1000,
        workers=2,  # not a TF Serving flag: refused, never passed
        providers="CPUExecutionProvider",  # deploykit only
    )
    assert tfserving_argv(options) == [
        "--port=8500",
        "--rest_api_port=8501",
        "--model_name=default",
        "--model_base_path=/m",
        "--file_system_poll_wait_seconds=5",  # whole seconds as an integer
        "--enable_model_warmup=false",
        "--rest_api_enable_cors_support=true",
        "--rest_api_timeout_in_ms=1000",
    ]
    assert no_effect_on_tfserving(options) == ["--providers"]


def test_refusals_when_tf_serving_is_to_run() -> None:
    assert refusals(ServeOptions(), docker=True) == []
    assert refusals(ServeOptions(workers=3), docker=False) == [
        "--workers 3: TensorFlow Serving is one process with its own thread pools (it has no such flag); "
        "drop --workers, or use --engine deploykit"
    ]
    tls = refusals(ServeOptions(ssl_cert_file=Path("c"), ssl_key_file=Path("k")), docker=False)
    assert len(tls) == 1 and tls[0].startswith("the --ssl_* flags with --engine tfserving")  # one line for all
    assert refusals(ServeOptions(model_config_file_poll_wait_seconds=0.5), docker=False) == [
        "--model_config_file_poll_wait_seconds 0.5: TensorFlow Serving takes whole seconds"
    ]
    (docker,) = refusals(ServeOptions(monitoring_config_file=Path("m"), grpc_socket_path=Path("s")), docker=True)
    assert docker.startswith("--monitoring_config_file, --grpc_socket_path with --docker: the container sees only")
    assert fixed_by_deployment(ServeOptions(label=["stable=1"], enable_batching=True)) == [
        "--label",
        "--enable_batching",
    ]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"workers": 0}, "--workers must be positive, got 0"),
        ({"grace_period_seconds": -1.5}, "--grace_period_seconds must be positive, got -1.5"),
        ({"max_request_bytes": 2**31}, "--max_request_bytes must be at most 2147483647, got 2147483648"),
        ({"path": Path("a"), "model_base_path": Path("b")}, "give either PATH or --model_base_path, not both"),
        ({"version_policy": "newest"}, "version policy 'newest': expected latest, latest:N, all or specific"),
        ({"label": ["stable"]}, "label 'stable': expected \\[MODEL:\\]LABEL=VERSION"),
        ({"grpc_channel_arguments": "grpc.keepalive"}, "'grpc.keepalive' is not key=value"),
        ({"log_level": "loud"}, "--log-level: expected debug, info, warning or error, got 'loud'"),
    ],
)
def test_bad_values_are_one_usage_error_naming_the_flag(values: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        ServeOptions.parse(**values)


def test_equivalent_version_policies_are_the_default() -> None:
    assert not ServeOptions.parse(version_policy="latest:1").changed("version_policy")
    assert ServeOptions.parse(version_policy="specific:2,1").version_policy == "specific:1,2"


def test_server_config_is_derived_from_the_options(tmp_path: Path) -> None:
    options = ServeOptions.parse(
        path=tmp_path,
        port=0,
        rest_api_port=0,
        grpc_socket_path=tmp_path / "s.sock",
        rest_api_timeout_in_ms=1500,
        enable_model_warmup=False,
        label=["stable=1"],
        version_policy="all",
        providers="CPUExecutionProvider",
        grpc_channel_arguments="grpc.max_connection_age_ms=2000",
    )
    config = server_config(options)
    assert (config.grpc_port, config.rest_port, config.model_path) == (None, None, tmp_path)
    assert config.rest_timeout_s == 1.5 and config.warmup_requests == 0 and config.providers == ["CPUExecutionProvider"]
    assert config.labels == [(None, "stable", 1)] and config.version_policy.kind == "all"
    assert config.grpc_channel_arguments == [("grpc.max_connection_age_ms", 2000)]
    with pytest.raises(UsageError, match="nothing would listen"):
        server_config(ServeOptions(path=tmp_path, port=0, rest_api_port=0))
    assert ignored_by_deploykit(options) == []


def test_a_tensorflow_model_server_command_line_translates_from_the_declarations() -> None:
    serve = typer.main.get_command(app).commands["serve"]
    translated, notes = tfserving_flags.translate(
        ["--rest_api_enable_cors_support=false", "--tensorflow_inter_op_parallelism=3", "--grpc_max_threads", "8"],
        serve,
    )
    assert translated == ["--no-rest_api_enable_cors_support", "--inter_op_threads=3"]
    assert notes == ["ignoring TF Serving flag --grpc_max_threads (the gRPC front end is asynchronous)"]


def test_events_print_as_serve_always_did() -> None:
    assert Event("ready", "ready on gRPC h:1", engine="deploykit").line() == (
        "deploykit serve (engine deploykit): ready on gRPC h:1"
    )
    assert Event("skipped", "skipped m v2").line() == "deploykit serve: skipped m v2"
    assert Event("output", "[tensorflow_model_server] hi", stderr=False).line() == "[tensorflow_model_server] hi"
    assert display(ServeOptions, "allow_version_labels_for_unavailable_models") == (
        "--allow_version_labels_for_unavailable_models"
    )


def test_rest_api_num_threads_reaches_tf_serving_and_is_noted_by_deploykit(tmp_path: Path) -> None:
    """A flag added by declaring one field: parsed, passed to TF Serving, noted by deploykit's server."""
    serve = typer.main.get_command(app).commands["serve"]
    translated, notes = tfserving_flags.translate(["--rest_api_num_threads=16"], serve)
    assert translated == ["--rest_api_num_threads=16"] and notes == []  # no longer dropped
    options = ServeOptions.parse(path=tmp_path, rest_api_num_threads=16)
    assert tfserving_argv(options)[-1] == "--rest_api_num_threads=16"
    assert ignored_by_deploykit(options) == ["ignoring TF Serving flag --rest_api_num_threads (asynchronous REST)"]
    assert "--rest_api_num_threads" not in " ".join(tfserving_argv(ServeOptions()))
    with pytest.raises(UsageError, match="--rest_api_num_threads must be positive, got 0"):
        ServeOptions.parse(rest_api_num_threads=0)
