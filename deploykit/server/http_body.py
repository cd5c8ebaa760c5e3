"""REST request bodies: read with a timeout, inflated (``Content-Encoding``) with a bound.

aiohttp's own decompression has no practical bound (0.5 MB of gzip became 500 MB) and answers 500
for a body that is not really compressed, so the REST front end turns it off and inflates here:
``gzip``, ``deflate`` (zlib-wrapped or raw) and ``br``, at most ``limit`` bytes, in bounded steps.
"""

from __future__ import annotations

import zlib

from deploykit.errors import InvalidInput, ResourceExhausted

#: Default for ``serve --max_inflated_body_bytes``: a compressed body may inflate to this much.
DEFAULT_MAX_INFLATED_BYTES = 256 * 2**20
#: Inflated per step: never more than this above the limit is held.
_STEP = 1 << 20
ENCODINGS = ("gzip", "x-gzip", "deflate", "br", "identity")


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` decoded from ``encoding`` (a Content-Encoding header value, possibly a list),
    at most ``limit`` bytes: larger is :class:`ResourceExhausted` naming the limit, a body that is
    not in the encoding it claims is :class:`InvalidInput`."""
    codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
    for coding in reversed(codings):  # applied in order, so undone last-first
        if coding not in ENCODINGS:
            raise InvalidInput(f"Content-Encoding {coding!r} is not supported; expected one of {', '.join(ENCODINGS)}")
        if coding == "identity":
            continue
        try:
            body = _brotli(body, limit) if coding == "br" else _zlib(body, coding, limit)
        except (zlib.error, ValueError) as exc:
            raise InvalidInput(f"request body is not valid {coding} data (Content-Encoding: {coding}): {exc}") from None
    return body


def _too_large(limit: int) -> ResourceExhausted:
    return ResourceExhausted(f"inflated body exceeds {limit} bytes (--max_inflated_body_bytes)")


def _zlib(body: bytes, coding: str, limit: int) -> bytes:
    # 47: a gzip or zlib header, detected; HTTP "deflate" is zlib-wrapped, but some clients send raw.
    try:
        return _zlib_with(body, 47, limit)
    except zlib.error:
        if coding != "deflate":
            raise
        return _zlib_with(body, -zlib.MAX_WBITS, limit)


def _zlib_with(body: bytes, wbits: int, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    parts, size, pending = [], 0, body
    while pending:
        part = inflater.decompress(pending, _STEP)
        size += len(part)
        if size > limit:
            raise _too_large(limit)
        parts.append(part)
        pending = inflater.unconsumed_tail
        if inflater.eof:
            break
    if not inflater.eof:
        raise ValueError("the compressed stream is truncated")
    if inflater.unused_data:
        raise ValueError(f"{len(inflater.unused_data)} bytes follow the compressed stream")
    return b"".join(parts)


def _brotli(body: bytes, limit: int) -> bytes:
    try:
        import brotli
    except ImportError:  # aiohttp's speedups; without it br is refused, not guessed at
        raise InvalidInput("Content-Encoding br is not supported by this server (pip install brotli)") from None
    inflater = brotli.Decompressor()
    parts, size = [], 0
    try:
        part = inflater.process(body, output_buffer_limit=_STEP)
        while True:
            size += len(part)
            if size > limit:
                raise _too_large(limit)
            parts.append(part)
            if inflater.can_accept_more_data():
                break
            part = inflater.process(b"", output_buffer_limit=_STEP)
        if not inflater.is_finished():
            raise ValueError("the compressed stream is truncated")
    except brotli.error as exc:
        raise ValueError(str(exc)) from None
    return b"".join(parts)
