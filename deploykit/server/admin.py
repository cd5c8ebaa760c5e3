"""The one permission rule for administrative APIs (DESIGN.md §3.10: safe by default).

Administrative APIs change what a server serves: Triton's repository load/unload (v2 gRPC
``RepositoryModelLoad``/``Unload``, REST ``/v2/repository/models/M/load|unload``) and, with the
hardening issue, TF Serving's ``HandleReloadConfigRequest``. They are refused with
PERMISSION_DENIED / 403 unless the server was started with :data:`ADMIN_FLAG`; every front end
calls :func:`require_admin` so the rule and its message live here only.
"""

from __future__ import annotations

from deploykit.errors import PermissionDenied

#: The ``deploykit serve`` flag that enables administrative APIs (``ServerConfig.admin_apis``).
ADMIN_FLAG = "--enable-admin-apis"


def require_admin(enabled: bool, api: str) -> None:
    """Raise :class:`PermissionDenied` naming ``api`` and the flag unless administrative APIs are enabled."""
    if not enabled:
        raise PermissionDenied(
            f"{api} is an administrative API and is disabled on this server; start it with {ADMIN_FLAG} to allow it"
        )
