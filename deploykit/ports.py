"""Free ports for servers that bind them themselves (subprocesses, worker processes), which cannot be
handed a socket bound to port 0."""

from __future__ import annotations

import contextlib
import socket


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports on ``host`` that were free a moment ago.

    They are chosen while all are held bound: asked one at a time, the kernel may hand the port it
    just released out again, and a server given the same port twice (say, for gRPC and HTTP) fails
    to start. Another process can still take one before the server binds it; the server then says so.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket(family)) for _ in range(count)]
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]


def free_port(host: str = "127.0.0.1") -> int:
    """One port on ``host`` that was free a moment ago (:func:`free_ports`)."""
    return free_ports(1, host)[0]
