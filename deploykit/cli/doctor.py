"""``deploykit doctor``: what this machine can run."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from deploykit.cli.common import exits_on_error, make_console


@exits_on_error
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Show Python and package versions, ONNX Runtime providers that really work, GPUs, and whether
    tensorflow_model_server and a Docker engine are available."""
    from deploykit.doctor import examine

    report = examine()
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return

    console = make_console()
    console.print(f"[bold]Python[/] {report.python} on {report.platform}")
    packages = Table("package", "version", title="Packages", title_justify="left")
    for name, version in report.packages.items():
        packages.add_row(name, version or "[dim]not installed[/]")
    console.print(packages)

    def found(value: str | None, missing: str) -> str:
        return f"[green]{value}[/]" if value else f"[yellow]{missing}[/]"

    facts = Table("check", "result", title="Serving", title_justify="left")
    working = report.onnxruntime_working_providers
    facts.add_row("ONNX Runtime providers (working)", found(", ".join(working), "onnxruntime not installed"))
    unusable = [p for p in report.onnxruntime_built_providers if p not in working]
    if unusable:
        facts.add_row("ONNX Runtime providers (built, not usable here)", ", ".join(unusable))
    facts.add_row("GPUs", found("; ".join(report.gpus), "none seen (nvidia-smi)"))
    facts.add_row("tensorflow_model_server", found(report.tensorflow_model_server, "not on PATH"))
    engine = report.docker_engine and f"engine {report.docker_engine}"
    docker_missing = "client only, no engine reachable" if report.docker_client else "not installed"
    facts.add_row("Docker", found(engine, docker_missing))
    console.print(facts)
