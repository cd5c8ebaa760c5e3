"""A Typer command whose options are generated from a pydantic model's fields.

Each field carries a :class:`~deploykit.serving.flag.Flag` (spellings, help, panel); the generated
function's signature is what Typer reads, so ``--help``, parsing and defaults all follow the model.
The command receives the validated model: ``run(model.parse(**values))``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel

from deploykit.serving.flag import flag_of, spellings

M = TypeVar("M", bound=BaseModel)


def command_from_model(model: type[M], parse: Callable[..., M]) -> Callable[[Callable[[M], Any]], Callable[..., Any]]:
    """Decorate ``run(options)``: the result is a Typer command with one parameter per field of
    ``model`` that calls ``run(parse(**values))``. ``run``'s docstring is the command's help."""

    def decorate(run: Callable[[M], Any]) -> Callable[..., Any]:
        def command(**values: Any) -> Any:
            return run(parse(**values))

        parameters = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=field.default,
                annotation=Annotated[field.annotation, _typer_info(model, name)],
            )
            for name, field in model.model_fields.items()
        ]
        command.__name__, command.__qualname__, command.__doc__ = run.__name__, run.__qualname__, run.__doc__
        command.__module__ = run.__module__
        command.__signature__ = inspect.Signature(parameters)
        command.__annotations__ = {p.name: p.annotation for p in parameters}
        return command

    return decorate


def _typer_info(model: type[BaseModel], name: str):
    flag = flag_of(model, name)
    if flag.argument:
        return typer.Argument(help=flag.help, show_default=False)
    return typer.Option(*spellings(model, name), help=flag.help, rich_help_panel=flag.panel, metavar=flag.metavar)
