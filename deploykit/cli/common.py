"""What every command shares: turning :class:`DeployKitError` into one line and an exit code."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from deploykit.errors import DeployKitError
from deploykit.extras import missing_extra

P = ParamSpec("P")
R = TypeVar("R")

#: Width used when output is not a terminal (CI logs, pipes): rich would assume 80 columns and
#: wrap the result tables into unreadable slivers.
PIPE_WIDTH = 130


def make_console(stderr: bool = False) -> Console:
    """A rich console; wide when writing to a pipe or a CI log."""
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console = Console(stderr=stderr, width=PIPE_WIDTH)
    return console


#: Diagnostics go to stderr so stdout stays parseable (``--json``).
err_console = make_console(stderr=True)


def _fail(message: str, code: int):
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def exits_on_error(command: Callable[P, R]) -> Callable[P, R]:
    """Decorate a command: a :class:`DeployKitError` prints ``error: <message>`` and exits with its
    ``exit_code``; a missing optional dependency names the extra to install (exit 2); an operating
    system error (permissions, a file where a directory is expected, a full disk) is one line
    (exit 1). Anything else is a bug and keeps its traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except DeployKitError as exc:
            raise _fail(str(exc), exc.exit_code) from None
        except ModuleNotFoundError as exc:
            install = missing_extra(exc)
            if install is None:
                raise
            raise _fail(f"this command needs {exc.name!r}, which is not installed: {install}", 2) from None
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise _fail(f"{exc.strerror or exc}{where}", 1) from None

    return wrapper


def never_truncate_option_names() -> None:
    """Make ``--help`` wrap rather than cut option names (``--batching_paramete…``) at any width.

    Typer draws each help panel as a rich ``Table`` whose columns it never configures: rich then
    shortens a cell that does not fit with an ellipsis. Here each alias of an option goes on its own
    line and every column folds instead of cutting, so no character of a name is ever lost.
    """
    from rich.table import Table
    from rich.text import Text
    from typer import rich_utils

    if getattr(rich_utils.Table, "keeps_names", False):
        return

    def one_alias_per_line(cell):
        if isinstance(cell, Text) and "," in cell.plain and cell.plain.startswith("-"):
            return rich_utils.highlighter(Text(",\n".join(cell.plain.split(",")), style=cell.style))
        for part in getattr(cell, "renderables", [cell]):  # a description is Columns of Text
            if isinstance(part, Text):
                part.overflow = "fold"  # long words in descriptions too (flag names, URLs)
        return cell

    class HelpTable(Table):
        keeps_names = True

        def add_row(self, *renderables, **kwargs) -> None:
            super().add_row(*(one_alias_per_line(cell) for cell in renderables), **kwargs)
            for column in self.columns:
                column.overflow = "fold"

    rich_utils.Table = HelpTable  # type: ignore[misc]  # typer builds its help tables from this name


def parity_table(title: str, rows):
    """Worst-case parity per (artifact, output) across batch sizes, from
    :class:`~deploykit.export.parity.OutputParity` rows labelled by artifact."""
    from rich.table import Table

    def worst(values) -> str:
        known = [v for v in values if v is not None]
        return f"{max(known):.1e}" if known else "-"

    groups: dict[tuple[str, str], list] = {}
    for label, row in rows:
        groups.setdefault((label, row.output), []).append(row)
    table = Table(title=title, title_justify="left")
    table.add_column("artifact", no_wrap=True)
    table.add_column("output")
    for column in ("batch", "max abs", "max rel", "needed atol", "atol/rtol"):
        table.add_column(column, justify="right")
    table.add_column("result")
    for (label, output), group in groups.items():
        failed = [r for r in group if not r.passed]
        verdict = (
            "[green]pass[/]"
            if not failed
            else "[red]FAIL[/] " + escape("; ".join(r.problem or f"batch {r.batch_size}" for r in failed))
        )
        table.add_row(
            label,
            output,
            ",".join(str(r.batch_size) for r in group),
            worst(r.max_abs for r in group),
            worst(r.max_rel for r in group),
            worst(r.needed_atol for r in group),
            f"{group[0].atol:g}/{group[0].rtol:g}",
            verdict,
        )
    return table


def csv_ints(text: str | None) -> tuple[int, ...]:
    """``"1,2,4"`` as ``(1, 2, 4)`` (empty or None: ``()``); a usage error names anything else."""
    if not text:
        return ()
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {text!r}") from None


def report_written(written, skipped) -> None:
    """What a deployment writer did (stderr) and the binary and Docker commands that run it (stdout)."""
    from deploykit.serving.deployment_files import shell_line

    for item in skipped:
        typer.echo(f"skipped {item}", err=True)
    typer.echo(
        f"wrote {written.out} ({written.linked_files} files hard-linked, {written.copied_files} copied); "
        "run it with one of:",
        err=True,
    )
    typer.echo(shell_line(written.binary_command))
    typer.echo(shell_line(written.docker_command))
