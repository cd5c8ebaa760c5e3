"""Keep the event loop free: work proportional to a request's size runs in a thread above a size.

Both front ends share one asyncio loop (gRPC, REST, health, the native plane's dispatch). Parsing
a 100 MB JSON body or decoding a 1 GiB tensor on it would stall every other client for seconds
(DESIGN.md §3.10), while a thread hop (~50 us) would double the cost of a small request. So
:func:`run` decides by size: small inline, large in the loop's default executor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: Work on more bytes than this (request body, decoded tensors, response) runs off the event loop.
OFFLOAD_BYTES = 256 * 1024


async def run(size: int, function: Callable[..., T], *args) -> T:
    """``function(*args)``: inline when ``size`` is at most :data:`OFFLOAD_BYTES`, else in a thread."""
    if size <= OFFLOAD_BYTES:
        return function(*args)
    return await asyncio.to_thread(function, *args)
