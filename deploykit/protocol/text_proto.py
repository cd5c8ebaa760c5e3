"""TF Serving's text-format configuration files (model config, batching, monitoring, SSL), read one way.

Every file fails the same way: ``cannot read FLAG PATH: reason`` when it cannot be read, and TF
Serving's own ``Error parsing text-format tensorflow.serving.MESSAGE: PATH: detail`` when it does
not parse (deploykit's copies of the messages carry TF Serving's message names).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from google.protobuf import text_format
from google.protobuf.message import Message

from deploykit.errors import UsageError

M = TypeVar("M", bound=Message)


def parse_error_prefix(message_class: type[Message]) -> str:
    """TF Serving's message for an unparsable file of this message type."""
    return f"Error parsing text-format tensorflow.serving.{message_class.DESCRIPTOR.name}"


def read_text(path: Path, flag: str) -> str:
    """The text of the file given with ``flag``; :class:`UsageError` when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"cannot read {flag} {path}: {reason}") from None


def parse(text: str, message_class: type[M], source: str) -> M:
    """Parse ``text`` into a new ``message_class``; errors name ``source``."""
    message: M = message_class()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise UsageError(f"{parse_error_prefix(message_class)}: {source}: {exc}") from None
    return message


def read(path: Path, message_class: type[M], flag: str) -> M:
    """Read and parse the file given with ``flag``."""
    return parse(read_text(path, flag), message_class, str(path))
