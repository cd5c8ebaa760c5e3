"""The exact ``tensorflow_model_server`` and ``docker run`` command lines.

A TF Serving process is described by :class:`~deploykit.serving.options.ServeOptions` (its
TF Serving fields); :func:`tfserving_argv` turns them into flags. The deployment writer prints the
result and the launcher runs it, so what ``run.sh`` does and what ``deploykit serve --engine
tfserving`` does cannot drift apart. Flags use TF Serving's ``--flag=value`` form
(``model_servers/main.cc``). :func:`refusals` says which ``serve`` options TF Serving cannot honour.
"""

from __future__ import annotations

from collections.abc import Callable

from deploykit.serving.flag import Flag, Rule, display, flags
from deploykit.serving.options import ServeOptions

#: The official image (``tensorflow_serving/tools/docker``); pin a tag for reproducible deployments.
DEFAULT_IMAGE = "tensorflow/serving:latest"
#: Where the official image's convention mounts models (``MODEL_BASE_PATH``), and its ports.
CONTAINER_ROOT = "/models"
CONTAINER_GRPC_PORT = 8500
CONTAINER_REST_PORT = 8501


def tfserving_argv(options: ServeOptions) -> list[str]:
    """``tensorflow_model_server`` flags for ``options``: every :attr:`Rule.PASSED` field that is set
    (given, or ``always``), in declaration order, in TF Serving's ``--flag=value`` form."""
    argv = []
    for name, flag in flags(ServeOptions).items():
        value = getattr(options, name)
        if flag.tfserving is not Rule.PASSED or value is None or not (flag.always or options.changed(name)):
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, float) and value == int(value):
            value = int(value)
        argv.append(f"--{name}={value}")
    return argv


def refusals(options: ServeOptions, *, docker: bool) -> list[str]:
    """Why TF Serving cannot run ``options`` as given, one message per reason (empty: it can)."""
    found: list[str] = []
    for name, flag in flags(ServeOptions).items():
        if not options.changed(name):
            continue
        value = getattr(options, name)
        if flag.tfserving is Rule.REFUSED and flag.refused:
            message = flag.refused.format(flag=display(ServeOptions, name), value=value)
            if message not in found:  # the --ssl_* flags share one
                found.append(message)
        elif flag.integer and value != int(value):
            found.append(f"{display(ServeOptions, name)} {value:g}: TensorFlow Serving takes whole seconds")
    host_files = _given(options, lambda flag: flag.host_path)
    if docker and host_files:
        found.append(
            f"{', '.join(host_files)} with --docker: the container sees only the served directory, not host files; "
            "write a deployment with deploykit tfserving-deploy (it holds models.docker.config, batching and "
            "monitoring files) and serve that"
        )
    return found


def fixed_by_deployment(options: ServeOptions) -> list[str]:
    """The flags given that a deployment directory fixes (its models.config, batching, monitoring)."""
    return _given(options, lambda flag: flag.fixed_by_deployment)


def no_effect_on_tfserving(options: ServeOptions) -> list[str]:
    """The flags given that only deploykit's server uses: TF Serving runs without them."""
    return _given(options, lambda flag: flag.tfserving is Rule.DEPLOYKIT)


def _given(options: ServeOptions, which: Callable[[Flag], bool]) -> list[str]:
    return [display(ServeOptions, n) for n, flag in flags(ServeOptions).items() if which(flag) and options.changed(n)]


def binary_command(binary: str, options: ServeOptions) -> list[str]:
    """``tensorflow_model_server --port=... ...``."""
    return [binary, *tfserving_argv(options)]


def docker_command(
    mount: str,
    options: ServeOptions,
    *,
    image: str = DEFAULT_IMAGE,
    grpc_port: int = CONTAINER_GRPC_PORT,
    rest_port: int = CONTAINER_REST_PORT,
    publish_host: str | None = None,
    name: str | None = None,
) -> list[str]:
    """``docker run`` of the official image with host directory ``mount`` at ``/models`` (read-only).

    ``options`` must use container paths and the container ports (8500/8501); ``grpc_port`` and
    ``rest_port`` are the host ports they are published on (on ``publish_host`` only, when given).
    The entrypoint is set to the binary so every flag is visible here instead of depending on the
    image's entrypoint script and its ``MODEL_NAME``/``MODEL_BASE_PATH`` variables.
    """
    bind = f"{publish_host}:" if publish_host else ""
    command = ["docker", "run", "--rm"]
    if name:
        command += ["--name", name]
    command += ["-p", f"{bind}{grpc_port}:{options.port}"]
    if options.rest_api_port:
        command += ["-p", f"{bind}{rest_port}:{options.rest_api_port}"]
    command += ["-v", f"{mount}:{CONTAINER_ROOT}:ro", "--entrypoint", "tensorflow_model_server", image]
    return command + tfserving_argv(options)
