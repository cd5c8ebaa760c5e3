"""``deploykit serve --engine tfserving|auto``: run the real TensorFlow Serving, or say why not.

:func:`launch` checks the options, chooses and prepares the engine (:mod:`~deploykit.tfserving.engine`),
then runs and watches ``tensorflow_model_server`` or its Docker image (:mod:`~deploykit.serving.process`)
until SIGINT/SIGTERM. When TF Serving cannot serve it returns a :class:`Fallback` instead, for
deploykit's own server. It reports what happens as :class:`~deploykit.serving.events.Event` s: the
engine and its command line, skipped versions, readiness, the server's own output lines, the stop.
TF Serving does not name itself in responses, so the engine is reported here (load-test reports say
"not self-reported").
"""

from __future__ import annotations

import os
import shutil

from deploykit.errors import UsageError
from deploykit.serving.deployment_files import shell_line
from deploykit.serving.events import Event, Listener, log_event
from deploykit.serving.options import ServeOptions
from deploykit.serving.process import ServerProcess, check_ports_free, local_address, run_until_signal
from deploykit.tfserving import deployment
from deploykit.tfserving.commands import binary_command, docker_command, no_effect_on_tfserving
from deploykit.tfserving.engine import (
    BINARY,
    EngineChoice,
    Fallback,
    ServingTarget,
    check_for_tf_serving,
    check_request,
    choose_engine,
    pass_through,
    resolve_target,
)

__all__ = ["Fallback", "launch"]


def launch(options: ServeOptions, on_event: Listener = log_event) -> Fallback | None:
    """Serve with TF Serving until SIGINT/SIGTERM (returns None), or return a :class:`Fallback`."""
    check_request(options)
    choice = choose_engine(options.engine, binary=options.tfserving_binary, docker=options.docker)
    if choice.kind == "deploykit":
        return Fallback.because(options, choice.reason)
    if not options.port:
        raise UsageError("TF Serving needs its gRPC port (--port, not 0): readiness is checked over gRPC")
    check_for_tf_serving(options)
    check_ports_free(local_address(options.host), [p for p in (options.port, options.rest_api_port) if p])
    target = resolve_target(options)
    try:
        not_served = target.unservable or (target.skipped if options.engine == "auto" else [])
        if options.engine == "auto" and not_served:
            source = options.served_path if options.model_config_file is None else options.model_config_file
            return Fallback.because(options, f"TF Serving cannot serve everything in {source} ({_list(not_served)})")
        if target.unservable:
            raise UsageError(
                f"{options.model_config_file} selects versions TF Serving cannot load ({_list(target.unservable)}); "
                "change their version policies, or use --engine auto or deploykit"
            )
        for skipped in target.skipped:
            on_event(Event("skipped", f"skipped {skipped}"))
        unused = no_effect_on_tfserving(options)
        if unused:
            on_event(Event("note", f"{', '.join(unused)}: deploykit's server only; TensorFlow Serving runs without"))
        target.host_flags = pass_through(options, target.host_flags)
        if target.container_flags is not None:
            target.container_flags = pass_through(options, target.container_flags)
        _run(options, choice, target, on_event)
        return None
    finally:
        if target.temporary is not None:
            shutil.rmtree(target.temporary, ignore_errors=True)


def _list(skipped: list[deployment.Skipped]) -> str:
    return "; ".join(map(str, skipped[:3])) + ("; ..." if len(skipped) > 3 else "")


def _run(options: ServeOptions, choice: EngineChoice, target: ServingTarget, on_event: Listener) -> None:
    if choice.kind == "docker":
        assert target.container_flags is not None  # targets are resolved with container flags for Docker
        name = f"deploykit-tfserving-{os.getpid()}"
        image = options.tfserving_image
        argv = docker_command(
            str(target.mount),
            target.container_flags,
            image=image,
            grpc_port=options.port,
            rest_port=options.rest_api_port,
            publish_host=options.host,
            name=name,
        )
        server = ServerProcess(argv, f"docker {image}", cleanup=["docker", "rm", "-f", name], on_event=on_event)
        engine = f"TensorFlow Serving in Docker ({image})"
    else:
        assert choice.binary is not None  # kind "binary" names its binary
        argv = binary_command(choice.binary, target.host_flags)
        server = ServerProcess(argv, BINARY, on_event=on_event)
        engine = f"TensorFlow Serving ({choice.binary}; listens on all interfaces, --host does not apply)"
    on_event(
        Event("engine", f"engine {engine}; it does not name itself in responses (load-test reports: not self-reported)")
    )
    on_event(Event("engine", f"running: {shell_line(argv)}"))
    local = local_address(options.host)
    rest = f"REST {local}:{options.rest_api_port}" if options.rest_api_port else "REST off"
    ready = f"TensorFlow Serving ready on gRPC {local}:{options.port}, {rest}; models: {', '.join(target.models)}"
    run_until_signal(server, f"{local}:{options.port}", target.models, ready, on_event)
