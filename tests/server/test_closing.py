"""Closing the REST port (deploykit.server.closing) on real sockets: a connection the server had
just accepted when the stop came is answered, not reset (issue 13 item 10).

asyncio accepts a connection in one loop turn and attaches it to its server in a task that runs the
next; a close in between drops it (python/cpython#109564) and the kernel later resets it with the
request unread. The test closes the port 0-4 loop turns after a client connected and sent its
request, so one of the cases lands in that window by construction, whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import time

import pytest
from aiohttp import web

from deploykit.server.closing import close_rest_listeners

REQUEST = b"GET / HTTP/1.1\r\nHost: deploykit\r\n\r\n"


async def _draining(request: web.Request) -> web.Response:
    response = web.Response(status=503, text="draining")
    response.force_close()  # as deploykit answers while draining: the connection closes after it
    return response


async def _close_after_turns(turns: int) -> bytes:
    """What a client that connected ``turns`` loop turns before the close receives."""
    app = web.Application()
    app.router.add_get("/", _draining)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    # A blocking connect returns once the kernel completed the handshake: the connection waits in the
    # listener's queue, and the loop sees it on its next turn.
    with socket.create_connection(("127.0.0.1", runner.addresses[0][1])) as client:
        client.sendall(REQUEST)
        for _ in range(turns):
            await asyncio.sleep(0)
        await close_rest_listeners(runner, time.monotonic() + 5)
        await runner.cleanup()
        gc.collect()  # a dropped connection's socket is closed (reset) here at the latest
        client.settimeout(5)
        answer = b""
        while chunk := client.recv(4096):
            answer += chunk
        return answer


@pytest.mark.parametrize("turns", range(5))
def test_a_connection_accepted_as_the_port_closes_is_answered_not_reset(turns: int) -> None:
    answer = asyncio.run(_close_after_turns(turns))
    assert answer.startswith(b"HTTP/1.1 503"), answer
    assert answer.endswith(b"draining"), answer
