"""What a request asks a server for: a model, a version or label, a signature (base layer).

Shared by the server (front ends decode requests into it), the client and the load tester (they
encode it into requests), so every layer names a servable the same way.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelRef:
    """What a request asks for. ``version`` and ``label`` are exclusive; neither means latest."""

    name: str
    version: int | None = None
    label: str | None = None
    signature: str = ""

    def describe(self) -> str:
        """TF Serving's servable request text: ``Latest(name)`` or ``Specific(name, v)``."""
        if self.version is not None:
            return f"Specific({self.name}, {self.version})"
        return f"Latest({self.name})"
