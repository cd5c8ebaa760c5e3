"""What every command shares: turning :class:`DeployKitError` into one line and an exit code."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from deploykit.errors import DeployKitError

P = ParamSpec("P")
R = TypeVar("R")

#: Diagnostics go to stderr so stdout stays parseable (``--json``).
err_console = Console(stderr=True)


def exits_on_error(command: Callable[P, R]) -> Callable[P, R]:
    """Decorate a command: a :class:`DeployKitError` prints ``error: <message>`` and exits with its
    ``exit_code``; anything else is a bug and keeps its traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except DeployKitError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper
