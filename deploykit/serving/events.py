"""What serving reports while it runs: status lines and a launched server's output, as values.

Library code hands :class:`Event` s to a callback instead of printing; ``deploykit serve`` prints
them on stderr (and a launched server's stdout lines on stdout), a program may log or show them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("deploykit.serving")

PROGRAM = "deploykit serve"


@dataclass(frozen=True)
class Event:
    """One thing that happened.

    ``kind`` is one of ``engine`` (which engine serves and how), ``fallback`` (deploykit's server
    serves in TF Serving's place: why), ``skipped`` (a version TF Serving cannot load), ``note``,
    ``ready``, ``stopping``, ``stopped`` and ``output`` (a line of a launched server's output,
    ``stderr`` telling which stream).
    """

    kind: str
    message: str
    #: The engine a ``ready`` line names in its prefix (deploykit's server).
    engine: str | None = None
    stderr: bool = True

    def line(self) -> str:
        """The line ``deploykit serve`` prints."""
        if self.kind == "output":
            return self.message
        engine = f" (engine {self.engine})" if self.engine else ""
        return f"{PROGRAM}{engine}: {self.message}"


#: Receives every :class:`Event`.
Listener = Callable[[Event], None]


def log_event(event: Event) -> None:
    """The default listener: the standard logging module."""
    log.log(logging.WARNING if event.kind == "fallback" else logging.INFO, "%s", event.line())
