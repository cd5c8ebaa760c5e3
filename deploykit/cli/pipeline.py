"""``deploykit pipeline run``: from training to a verdict report in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deploykit.cli.common import exits_on_error, make_console

app = typer.Typer(
    help="Train, export, validate, serve, check serving parity, compare under load and report, in one command.",
    no_args_is_help=True,
)


@app.command("run")
@exits_on_error
def run(
    config: Annotated[
        Path | None,
        typer.Argument(
            help="Pipeline YAML (default: the one shipped, deploykit/pipeline/default.yaml).", show_default=False
        ),
    ] = None,
    run_name: Annotated[str | None, typer.Option(help="Name of the run (default: its start time).")] = None,
) -> None:
    """Run the pipeline of CONFIG and write REPORTS_DIR/RUN/report.{html,md,json} and junit.xml.

    Steps per model: train the twins, export every format (each validated against its source),
    re-validate from disk, start the servers (TF Serving's binary or image when present, otherwise
    its compatible mode, labelled; deploykit serve for the rest), wait until ready, check that every
    deploy path answers the golden inputs over gRPC and REST within the recorded tolerances, compare
    the paths under load, stop every server (also on failure or Ctrl-C). The report of the steps
    that ran is written in every case. Exit codes: 0 passed, 1 a step failed (a parity mismatch
    names the path, output and error), 2 configuration error, 130 interrupted.
    """
    from deploykit.pipeline import config as pipeline_config
    from deploykit.pipeline.run import STEP_MARK, run_pipeline

    loaded = pipeline_config.load(config)
    if run_name:
        loaded = pipeline_config.parse(
            {**loaded.model_dump(mode="json", exclude_none=True), "run_name": run_name}, "--run-name"
        )
    console = make_console(stderr=True)
    with console.status("starting") as status:

        def progress(message: str) -> None:
            if message.startswith(STEP_MARK):
                console.print(message, highlight=False, markup=False)
            status.update(message.removeprefix(STEP_MARK))

        report, directory, code = run_pipeline(loaded, progress)
    out = make_console()
    if report["models"] and report["models"][-1].get("verdict"):
        for model in report["models"]:
            out.print(f"{model['name']}: {model['verdict']['text']}", highlight=False, markup=False)
    out.print(
        f"pipeline {report['status']}; report: {directory / 'report.html'} (also report.md, report.json, junit.xml)",
        highlight=False,
        markup=False,
    )
    if code:
        raise typer.Exit(code)
