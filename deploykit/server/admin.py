"""The one permission rule for administrative APIs (DESIGN.md §3.10: safe by default).

Administrative APIs change what a server serves: TF Serving's ``HandleReloadConfigRequest`` and
Triton's repository load/unload (v2 gRPC ``RepositoryModelLoad``/``Unload``, REST
``/v2/repository/models/M/load|unload``). A model's graph runs during warm-up, so loading a
directory an attacker chose runs the attacker's code (a SavedModel's ``ReadFile``/``WriteFile``
ops). They are refused with PERMISSION_DENIED / 403 unless the server was started with
:data:`ADMIN_FLAG` or from a ``--model_config_file`` (TF Serving's way of running with reloads);
even then every base path must resolve (real path, symbolic links followed) inside the model roots
the server started with or ``--admin_model_roots``, and unloading every model needs
``--admin_allow_unload_all``. Every front end calls :func:`require_admin` or an
:class:`AdminPolicy`, so the rule and its messages live here only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from deploykit.errors import PermissionDenied

#: The ``deploykit serve`` flag that enables administrative APIs (``ServerConfig.admin_apis``).
ADMIN_FLAG = "--enable-admin-apis"


def require_admin(enabled: bool, api: str) -> None:
    """Raise :class:`PermissionDenied` naming ``api`` and the flag unless administrative APIs are enabled."""
    if not enabled:
        raise PermissionDenied(
            f"{api} is an administrative API and is disabled on this server; start it with {ADMIN_FLAG} to allow it"
        )


@dataclass(frozen=True)
class AdminPolicy:
    """Whether administrative APIs are enabled, where they may load models from (real paths),
    and whether they may unload every model."""

    enabled: bool = False
    roots: tuple[str, ...] = ()
    allow_unload_all: bool = False

    @classmethod
    def build(cls, enabled: bool, roots: Iterable[Path], allow_unload_all: bool = False) -> AdminPolicy:
        """A policy whose ``roots`` are resolved now (a later symlink swap does not widen them)."""
        return cls(enabled, tuple(sorted({os.path.realpath(root) for root in roots})), allow_unload_all)

    def require(self, api: str) -> None:
        """:func:`require_admin` for this server."""
        require_admin(self.enabled, api)

    def check_models(self, api: str, models: Iterable) -> None:
        """Refuse (PERMISSION_DENIED) a new model set (``ModelConfig``-like: ``name``, ``base_path``)
        that is empty without the opt-in, or has a base path outside the roots."""
        self.require(api)
        models = list(models)
        if not models and not self.allow_unload_all:
            raise PermissionDenied(
                f"{api} with no models would unload every model; start the server with --admin_allow_unload_all "
                "to allow that"
            )
        for model in models:
            self.check_path(api, model.name, model.base_path)

    def check_path(self, api: str, name: str, base_path: Path | str) -> None:
        """Refuse a base path whose real path is not inside one of the roots."""
        real = os.path.realpath(base_path)
        if not any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in self.roots):
            roots = ", ".join(self.roots) or "none"
            raise PermissionDenied(
                f"{api}: model {name!r} base path {str(base_path)!r} (real path {real!r}) is outside the server's "
                f"model roots ({roots}); add a root with --admin_model_roots"
            )
