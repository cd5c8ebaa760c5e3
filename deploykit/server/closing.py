"""Closing the ports at the end of a drain so that no client sees a reset or a CANCELLED.

:meth:`deploykit.server.server.Server.stop` first drains (new requests UNAVAILABLE / 503, the ones in
flight finish), then closes both ports with :func:`stop_grpc` and :func:`close_rest_listeners`.
What a client sees, and why each step is needed, is in their docstrings; README "Shutdown".
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import socket
import struct
import sys
import time

import grpc
from aiohttp import web

from deploykit.server.admission import Admission
from deploykit.server.native_dataplane import NativeGrpcServer

log = logging.getLogger(__name__)

#: Time given to send the last responses after the grace period ran out.
FLUSH_S = 0.5
#: Longest wait, after the drain, for clients to close their REST keep-alive connections.
LINGER_S = 1.0
#: While closing a REST listener: its queue is emptied until no connection joined it for this long.
HANDSHAKE_S = 0.05
#: The gRPC port closes once no new request arrived for this long while new requests are held...
QUIET_S = 0.1
#: ... or at the latest this long after the drain (clients that send without waiting for answers).
HOLD_MAX_S = 1.0


async def stop_grpc(server: grpc.aio.Server | NativeGrpcServer, admission: Admission, deadline: float) -> None:
    """Close the gRPC port without ending a request the application never saw with CANCELLED.

    When gRPC's core starts its shutdown it cancels the calls it has not yet handed to the
    application, and those arriving before the client has read its GOAWAY (grpc/grpc#41785):
    CANCELLED, which clients do not retry. So new requests are held (:meth:`Admission.hold`) until
    none arrived for :data:`QUIET_S` (every client that waits for its answers then waits on a held
    one: none is in transit), the shutdown starts (listeners closed, GOAWAY queued on every
    connection), and only then are the held ones answered UNAVAILABLE, behind the GOAWAY on their
    connection: a client's next call opens a new connection, refused here (UNAVAILABLE) or served
    by another replica. ``deadline`` (:func:`time.monotonic`) bounds the whole.
    """
    admission.hold()
    try:
        until = min(deadline, time.monotonic() + HOLD_MAX_S)
        seen = -1
        while admission.held != seen and time.monotonic() + QUIET_S <= until:
            seen = admission.held
            await asyncio.sleep(QUIET_S)
        # The handlers are done; grpc may still be writing their responses (a moment, at least).
        stopping = await _begin_stop(server, max(deadline - time.monotonic(), FLUSH_S))
    finally:
        admission.release()
    await stopping


async def _begin_stop(server: grpc.aio.Server | NativeGrpcServer, grace: float) -> asyncio.Task:
    """Start stopping a gRPC server; return once its shutdown has begun (listeners closed, GOAWAY sent
    on every connection), the rest of the stop (``grace`` for calls in flight) running in the task."""
    if isinstance(server, NativeGrpcServer):
        server.begin_stop()
        return asyncio.create_task(server.stop(grace))
    stopping = asyncio.create_task(server.stop(grace))
    # grpc.aio's stop() starts the core's shutdown (grpc_server_shutdown_and_notify) in its first
    # step, before anything it awaits; one turn of the loop runs that step.
    await asyncio.sleep(0)
    return stopping


async def close_rest_listeners(runner: web.AppRunner, deadline: float, shared: bool = False) -> None:
    """Stop accepting REST connections, then give the open ones (each answered with
    ``Connection: close`` while draining) until ``deadline``, at most :data:`LINGER_S`, to close
    from the client's side: the runner's cleanup closes what is left, and a request sent on one at
    that moment would be reset instead of answered. ``shared``: the listeners are a supervisor's,
    shared with other workers, which may go on serving: it stops new connections itself when all
    stop (:func:`refuse_new_connections`)."""
    server = runner.server
    for site in list(runner.sites):
        assert server is not None  # a runner has sites only after setup(), which creates its server
        # Closing a listening socket resets the connections still in its accept queue (clients
        # that reconnected after a ``Connection: close``): let none join it, take over those in it,
        # answer them 503.
        listening = site._server
        if not isinstance(listening, asyncio.Server):  # its bind failed (e.g. port in use): nothing to take over
            await site.stop()
            continue
        listeners = [socket.socket(fileno=os.dup(sock.fileno())) for sock in listening.sockets]
        for listener in listeners if not shared else ():
            refuse_new_connections(listener)
        await _let_accepted_connections_attach(listening)
        await site.stop()
        with contextlib.ExitStack() as closing:
            for listener in listeners:
                closing.enter_context(listener)
            # A handshake under way when the filter went on completes within a round trip: the
            # listener closes right after a look at its queue that found it empty that long after.
            until, first = min(deadline, time.monotonic() + LINGER_S), True
            while True:
                late = [connection for listener in listeners for connection in _accept_queued(listener)]
                for connection in late:
                    await asyncio.get_running_loop().connect_accepted_socket(server, connection, ssl=site._ssl_context)
                if (not late and not first) or time.monotonic() >= until:
                    break
                first = False
                await asyncio.sleep(HANDSHAKE_S)
    linger_until = min(deadline, time.monotonic() + LINGER_S)
    while server is not None and server.connections and time.monotonic() < linger_until:
        await asyncio.sleep(0.01)


async def _let_accepted_connections_attach(listening: asyncio.Server) -> None:
    """Accept nothing more on ``listening``, and let the connections it accepted last join the
    server before it closes.

    asyncio accepts a connection in the listener's reader callback but attaches it to its server in
    a task that runs a loop turn later. Closing the server in between makes that task fail on an
    assertion, which asyncio swallows outside debug mode (python/cpython#109564). The connection is
    never read, and the kernel resets it, request unanswered, once the socket is collected. Under
    load that window is hit. So the reader goes first (what is still queued is taken over after),
    and one turn lets the tasks already scheduled attach their connections.
    """
    loop = asyncio.get_running_loop()
    for sock in listening.sockets:
        loop.remove_reader(sock.fileno())
    await asyncio.sleep(0)  # runs after the tasks scheduled so far: they attach in their first step


#: A classic BPF program, run on the TCP header of each packet for a listening socket: drop a SYN
#: without ACK (a new connection), keep the rest (the last ACK of a handshake under way).
_DROP_SYN = ctypes.create_string_buffer(
    b"".join(
        struct.pack("HBBI", *instruction)
        for instruction in (
            (0x30, 0, 0, 13),  # BPF_LD | BPF_B | BPF_ABS: A = the TCP flags (byte 13)
            (0x54, 0, 0, 0x12),  # BPF_ALU | BPF_AND | BPF_K: A &= SYN | ACK
            (0x15, 0, 1, 0x02),  # BPF_JMP | BPF_JEQ | BPF_K: A == SYN? on to the next : skip it
            (0x06, 0, 0, 0),  # BPF_RET | BPF_K: drop
            (0x06, 0, 0, 0xFFFFFFFF),  # BPF_RET | BPF_K: keep
        )
    )
)
_SO_ATTACH_FILTER = 26  # Linux's value; the socket module does not name it


def refuse_new_connections(listener: socket.socket) -> None:
    """Make ``listener`` ignore new connections (Linux). Under load, clients keep completing
    handshakes into the accept queue until the listener is gone, and closing it resets them. With
    the filter none can start (the SYN goes unanswered; the client sends it again a second later and
    is refused by then, or reaches another worker), so once the queue is emptied nothing is reset.
    Elsewhere (no such option) that window stays, as small as it was."""
    if not sys.platform.startswith("linux"):
        return
    program = struct.pack("HL", len(_DROP_SYN) // 8, ctypes.addressof(_DROP_SYN))  # struct sock_fprog
    try:
        listener.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, program)
    except OSError as exc:  # e.g. a sandbox refusing socket filters: the stop goes on without it
        log.debug("cannot filter the REST listener while closing it: %s", exc)


def _accept_queued(listener: socket.socket) -> list[socket.socket]:
    """Accept every connection waiting in ``listener``'s queue."""
    accepted = []
    listener.setblocking(False)
    while True:
        try:
            accepted.append(listener.accept()[0])
        except OSError:  # BlockingIOError: the queue is empty
            return accepted
