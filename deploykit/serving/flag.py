"""The vocabulary of a declared option: :class:`Flag` metadata on a pydantic field, and its rule for
the real TensorFlow Serving (:class:`Rule`). The helpers read it from any pydantic model class, so a
command's options and their spellings, messages and TF Serving rules come from the model alone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pydantic import BaseModel


class Rule(enum.Enum):
    """What happens to a flag when the real TensorFlow Serving runs."""

    #: Passed to ``tensorflow_model_server`` under its own name (the field's name).
    PASSED = "passed"
    #: Refused (when not at its default): TF Serving has no equivalent.
    REFUSED = "refused"
    #: Only deploykit's server uses it; TF Serving runs without it.
    DEPLOYKIT = "deploykit"
    #: Read by deploykit itself whichever engine serves (engine choice, address, what to serve).
    LAUNCH = "launch"


@dataclass(frozen=True)
class Flag:
    """How a field appears on the command line and to TF Serving."""

    help: str
    tfserving: Rule
    #: Click spellings (``"--a/--no-a"`` for a switch); default ``--NAME`` (``--NAME/--no-NAME``
    #: for booleans), NAME with dashes for fields that are neither TF Serving flags nor ``dashes``.
    cli: tuple[str, ...] = ()
    #: Also accept the spelling with dashes (``--rest-api-port`` beside ``--rest_api_port``).
    dashes: bool = False
    panel: str | None = None
    metavar: str | None = None
    #: The positional argument (not an option).
    argument: bool = False
    #: Passed to TF Serving even at its default (the ports, the model name and base path).
    always: bool = False
    #: TF Serving takes an integer (a whole float is passed as one).
    integer: bool = False
    #: A host path: refused with ``--docker`` (the container sees only the served directory).
    host_path: bool = False
    #: A deployment directory fixes it (its models.config, batching and monitoring files).
    fixed_by_deployment: bool = False
    #: :attr:`Rule.REFUSED`: the message, with ``{flag}`` and ``{value}``.
    refused: str = ""
    #: A TF Serving flag deploykit's server accepts without effect: why.
    deploykit_ignores: str = ""


def flags(model: type[BaseModel]) -> dict[str, Flag]:
    """Each field's :class:`Flag`, in declaration order."""
    return {name: flag_of(model, name) for name in model.model_fields}


def flag_of(model: type[BaseModel], name: str) -> Flag:
    """The :class:`Flag` of field ``name``."""
    return next(m for m in model.model_fields[name].metadata if isinstance(m, Flag))


def spellings(model: type[BaseModel], name: str) -> tuple[str, ...]:
    """The click declarations of field ``name`` (see :attr:`Flag.cli`)."""
    flag = flag_of(model, name)
    if flag.cli:
        return flag.cli
    option = name if flag.tfserving is Rule.PASSED or flag.dashes else name.replace("_", "-")
    if model.model_fields[name].annotation is bool:
        return (f"--{option}/--no-{option}",)
    return (f"--{option}", f"--{option.replace('_', '-')}") if flag.dashes else (f"--{option}",)


def display(model: type[BaseModel], name: str) -> str:
    """How messages name field ``name``: its first spelling (``--version-policy``)."""
    return spellings(model, name)[0].split("/")[0]


def changed(options: BaseModel, name: str) -> bool:
    """Whether field ``name`` of ``options`` differs from its default (an empty list is the default None)."""
    default = type(options).model_fields[name].default
    value = getattr(options, name)
    return bool(value) if default is None else value != default


def explain(model: type[BaseModel], error: dict) -> str:
    """One pydantic validation error as a message naming the flag."""
    name = str(error["loc"][0]) if error["loc"] else ""
    if name not in model.model_fields:  # a rule across fields: its message names them
        return error["msg"].removeprefix("Value error, ")
    flag = display(model, name)
    value, context = error.get("input"), error.get("ctx") or {}
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    if error["type"] == "greater_than" and context.get("gt") == 0:
        return f"{flag} must be positive, got {shown}"
    if error["type"] == "less_than_equal":
        return f"{flag} must be at most {context['le']}, got {shown}"
    return f"{flag}: {error['msg'].removeprefix('Value error, ')}"
