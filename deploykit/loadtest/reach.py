"""Before any load: is something listening, and does it speak the transport security we speak?

A refused port is answered at once (exit 3) instead of after the client's retry deadline, unless the
caller asked to wait for the server (``wait_s``, e.g. a server that is still loading its models). A
TLS handshake or certificate failure is named as such: gRPC reports every one of them as
"UNAVAILABLE: Socket closed" after retrying until its deadline.
"""

from __future__ import annotations

import socket
import ssl
import time
from urllib.parse import urlsplit

from deploykit.errors import Unreachable
from deploykit.loadtest.target import LoadTarget

#: Seconds a connection or handshake attempt may take (loopback and LAN answer in milliseconds).
CONNECT_TIMEOUT_S = 5.0
#: After a TLS 1.3 handshake, how long to wait for the server's verdict on our certificate (the
#: server sends "certificate required" only once it has read our Finished message).
VERDICT_WAIT_S = 0.5
RETRY_EVERY_S = 0.2


def check(target: LoadTarget, wait_s: float = 0.0) -> None:
    """Raise :class:`Unreachable` (exit 3) when ``target`` refuses connections (for longer than
    ``wait_s``) or its TLS handshake fails; return when a connection with the right security works."""
    url = urlsplit(target.endpoint)
    host, port = url.hostname or "127.0.0.1", url.port or (443 if url.scheme in ("https", "grpcs") else 80)
    _connect(target, host, port, wait_s).close()
    if target.tls is not None:
        _check_tls(target, host, port)
    elif _speaks_tls(host, port):
        secure = target.endpoint.replace("grpc://", "grpcs://", 1).replace("http://", "https://", 1)
        raise Unreachable(
            f"{target}: the server at {host}:{port} speaks TLS, the target is plaintext; use {secure}... "
            "(and --ca-file, plus --cert-file/--key-file if it asks for a client certificate)"
        )


def _connect(target: LoadTarget, host: str, port: int, wait_s: float) -> socket.socket:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
        except OSError as exc:
            if time.monotonic() + RETRY_EVERY_S > deadline:
                hint = " (nothing listens there?)" if isinstance(exc, ConnectionRefusedError) else ""
                waited = f" after waiting {wait_s:g} s" if wait_s else "; --wait-ready 30s waits for a starting server"
                raise Unreachable(
                    f"{target} unreachable: cannot connect to {host}:{port}: {exc.strerror or exc}{hint}{waited}"
                ) from None
            time.sleep(RETRY_EVERY_S)


def _check_tls(target: LoadTarget, host: str, port: int) -> None:
    context = target.tls.ssl_context()
    context.set_alpn_protocols(["h2"] if not target.is_rest else ["http/1.1"])
    try:
        with (
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            tls.settimeout(VERDICT_WAIT_S)
            try:
                # A TLS 1.3 server judges our certificate after the handshake: an alert, or (gRPC's
                # BoringSSL) the connection closed at once. A server that accepts us sends data
                # (HTTP/2 settings) or waits for our request.
                closed = tls.recv(1) == b""
            except TimeoutError:
                closed = False
            if closed:
                raise ssl.SSLError(1, "CERTIFICATE_REFUSED" if target.tls.cert is not None else "CERTIFICATE_REQUIRED")
    except ssl.SSLCertVerificationError as exc:
        raise Unreachable(
            f"{target}: TLS handshake failed: the server's certificate is not trusted ({exc.verify_message}); "
            "give the CA that signed it with --ca-file"
        ) from None
    except ssl.SSLError as exc:
        raise Unreachable(f"{target}: TLS handshake failed: {_tls_reason(exc)}") from None
    except (ConnectionResetError, BrokenPipeError) as exc:
        raise Unreachable(f"{target}: TLS handshake failed: the server closed the connection ({exc})") from None


def _tls_reason(exc: ssl.SSLError) -> str:
    reason = (getattr(exc, "reason", None) or str(exc)).upper()
    if "CERTIFICATE_REQUIRED" in reason:
        return "the server requires a client certificate (give --cert-file and --key-file)"
    if any(k in reason for k in ("CERTIFICATE_REFUSED", "UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN")):
        return "the server refused our client certificate (not signed by a CA it trusts?)"
    if any(k in reason for k in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG")):
        return "the server does not speak TLS; use a plaintext target (grpc:// or http://)"
    return f"{getattr(exc, 'reason', None) or exc}"


def _speaks_tls(host: str, port: int) -> bool:
    """Whether the server completes a TLS handshake (certificates not checked: this only tells a TLS
    server from a plaintext one, whose answer to a ClientHello is an error or a closed connection)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except ssl.SSLError as exc:  # a TLS alert is a TLS answer (e.g. a TLS 1.2 server wanting a certificate)
        return "ALERT" in (getattr(exc, "reason", None) or "").upper()
    except OSError:
        return False
