"""``deploykit validate``: re-check exported versions without their source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deploykit.cli.common import exits_on_error, make_console, parity_table


@exits_on_error
def validate(
    path: Annotated[
        Path,
        typer.Argument(
            help="A version directory (REPO/NAME/VERSION), a model directory or a whole repository.", show_default=False
        ),
    ],
    against: Annotated[
        Path | None,
        typer.Option(
            help="Golden .npz from elsewhere (e.g. another machine) instead of the one stored with the export."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Re-check exported artifacts from their manifest and golden file alone.

    Verifies the sha256 of every file against deploykit.json, reloads each artifact with its serving
    runtime and compares its outputs on the golden inputs with the golden outputs, at the
    tolerances recorded at export time. Exit 1 if anything differs.
    """
    from deploykit.export.verify import exported_versions, verify

    results = [verify(d, against) for d in exported_versions(path)]
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "path": str(r.path),
                        "name": r.name,
                        "version": r.version,
                        "format": r.format,
                        "passed": r.passed,
                        "file_problems": r.file_problems,
                        "error": r.error,
                        "parity": [p.to_dict() for p in r.parity],
                    }
                    for r in results
                ],
                indent=2,
            )
        )
    else:
        console = make_console()
        rows = [(f"{r.name} v{r.version}", p) for r in results for p in r.parity]
        if rows:
            console.print(parity_table("Parity with the golden outputs", rows))
        for r in results:
            verdict = "[green]pass[/]" if r.passed else "[red]FAILED[/]"
            console.print(f"{verdict} {r.path}", highlight=False)
            for problem in r.file_problems:
                console.print(f"  [red]file[/] {problem}", highlight=False)
            if r.error:
                console.print(f"  [red]error[/] {r.error}", highlight=False)
    if not all(r.passed for r in results):
        raise typer.Exit(1)
