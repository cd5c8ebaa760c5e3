"""``deploykit serve``: TF Serving's gRPC and REST API over ONNX Runtime, torch and SavedModel runtimes.

The options are generated from :class:`~deploykit.serving.options.ServeOptions` (declared once);
this command parses them and makes one call, :func:`deploykit.serving.serve`, printing its events.
"""

from __future__ import annotations

import typer

from deploykit.cli.common import exits_on_error
from deploykit.cli.model_options import command_from_model
from deploykit.serving.events import Event
from deploykit.serving.options import ServeOptions


@exits_on_error  # outermost: a value the options refuse is a UsageError too
@command_from_model(ServeOptions, ServeOptions.parse)
def serve(options: ServeOptions) -> None:
    """Serve exported models behind TensorFlow Serving's API: gRPC (PredictionService, ModelService,
    health) and REST (/v1/models/...), Prometheus metrics on the REST port.

    The ports open once the initial models are loaded; a model that fails to load is reported in
    its status and the log while the others serve. New versions dropped into a model's directory
    are loaded, warmed up and switched to without failed requests; a broken one leaves the old
    version serving. TF Serving's flag names work unchanged (also as --flag=value, --flag=true).
    SIGINT/SIGTERM stop the server gracefully: health turns NOT_SERVING, new requests are refused
    (UNAVAILABLE / 503), requests in flight finish within --grace_period_seconds.
    """
    from deploykit.serving.api import configure_logging
    from deploykit.serving.api import serve as run

    configure_logging(options)
    code = run(options, _print)
    if code:
        raise typer.Exit(code)


def _print(event: Event) -> None:
    typer.echo(event.line(), err=event.stderr)
