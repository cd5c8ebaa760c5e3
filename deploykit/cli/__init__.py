"""The ``deploykit`` command line.

One module per command; each parses its options and makes one call into the Python API, importing
heavy frameworks only inside that call, so ``deploykit --help`` stays fast and framework-free.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from deploykit import __version__
from deploykit.cli import (
    bench,
    docker,
    doctor,
    export,
    loadtest,
    manifests,
    pipeline,
    predict,
    profile,
    serve,
    tfserving_deploy,
    tfserving_flags,
    train,
    triton_deploy,
    validate,
)
from deploykit.cli.common import never_truncate_option_names

never_truncate_option_names()

app = typer.Typer(
    name="deploykit",
    help=(
        "Train twin PyTorch/TensorFlow models, export them to every format, prove each export "
        "equal to its source, serve them and measure which deploy path is best.\n\n"
        "Exit codes: 0 ok, 1 failure, 2 usage or configuration error, 3 target unreachable, "
        "4 load-test run invalid, 99 load-test thresholds failed."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"deploykit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            help="Show the native libraries' own log lines (TensorFlow's C++ logging, CUDA probes); "
            "put it before the command: deploykit --verbose export ...",
        ),
    ] = False,
) -> None:
    """deploykit: which framework and format deploys best, for this model, measured."""
    if not verbose:
        from deploykit.quiet import quiet_tensorflow

        quiet_tensorflow()


app.command("doctor")(doctor.doctor)
app.command("train")(train.train)
app.command("export")(export.export)
app.command("validate")(validate.validate)
app.command("serve")(serve.serve)
app.command("tfserving-deploy")(tfserving_deploy.tfserving_deploy)
app.command("triton-deploy")(triton_deploy.triton_deploy)
app.command("predict")(predict.predict)
app.command("loadtest")(loadtest.loadtest)
app.command("compare")(loadtest.compare)
app.command("profile")(profile.profile)
app.add_typer(pipeline.app, name="pipeline")
app.command("docker")(docker.docker)
app.command("manifests")(manifests.manifests)
app.command("bench")(bench.bench)


def main() -> None:
    """Console-script entry point."""
    command = typer.main.get_group(app)
    argv = sys.argv[1:]
    if argv and argv[0] == "serve":  # a tensorflow_model_server command line works as it is
        translated, notes = tfserving_flags.translate(argv[1:], command.commands["serve"])
        for note in notes:
            typer.echo(f"deploykit serve: {note}", err=True)
        argv = ["serve", *translated]
    command(args=argv, prog_name="deploykit")
