"""TLS material for the server and the client: PEM files read once, turned into gRPC credentials and
``ssl`` contexts (aiohttp / httpx), with precise errors for missing or unusable files.

Server side: a certificate and key, and optionally a client CA, which turns on mutual TLS (a client
without a certificate signed by that CA is refused). TF Serving's ``--ssl_config_file`` (an
``SSLConfig`` text proto holding the PEM texts themselves) maps onto the same :class:`ServerTls`.
Client side: the CA that signed the server's certificate (default: the system's trust store) and,
for mutual TLS, the client's certificate and key.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploykit.errors import UsageError


def read_pem(path: str | Path, what: str) -> bytes:
    """A PEM file's bytes; :class:`UsageError` naming the option when it cannot be read or is not PEM."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from exc
    if b"-----BEGIN " not in data:
        raise UsageError(f"{what} {path} is not a PEM file (no '-----BEGIN' line)")
    return data


@dataclass(frozen=True)
class ServerTls:
    """A server's certificate chain and key (PEM bytes); ``client_ca`` set = mutual TLS required."""

    cert: bytes
    key: bytes
    client_ca: bytes | None = None

    @classmethod
    def from_files(cls, cert_file: Path, key_file: Path, client_ca_file: Path | None = None) -> ServerTls:
        return cls(
            read_pem(cert_file, "--ssl_cert_file"),
            read_pem(key_file, "--ssl_key_file"),
            read_pem(client_ca_file, "--ssl_client_ca_file") if client_ca_file else None,
        )

    @classmethod
    def from_ssl_config(cls, config_file: Path) -> ServerTls:
        """TF Serving's ``--ssl_config_file``: ``server_key``, ``server_cert``, ``custom_ca``, ``client_verify``."""
        from deploykit.protocol import text_proto
        from deploykit.protocol.protos import config_pb2

        config = text_proto.read(config_file, config_pb2.SSLConfig, "--ssl_config_file")
        if not config.server_cert or not config.server_key:
            raise UsageError(f"--ssl_config_file {config_file} needs both server_cert and server_key (PEM text)")
        if config.client_verify and not config.custom_ca:
            raise UsageError(f"--ssl_config_file {config_file}: client_verify needs custom_ca to verify clients with")
        client_ca = config.custom_ca.encode() if config.client_verify else None
        return cls(config.server_cert.encode(), config.server_key.encode(), client_ca)

    def grpc_credentials(self) -> Any:
        """``grpc.ServerCredentials`` for ``add_secure_port``."""
        import grpc

        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.client_ca, require_client_auth=self.client_ca is not None
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A server-side context for aiohttp, requiring a client certificate when ``client_ca`` is set."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        _load_chain(context, self.cert, self.key)
        if self.client_ca is not None:
            context.load_verify_locations(cadata=self.client_ca.decode())
            context.verify_mode = ssl.CERT_REQUIRED
        return context


@dataclass(frozen=True)
class ClientTls:
    """What a client trusts (``ca``: None = system store) and presents (``cert``/``key`` for mutual TLS)."""

    ca: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None

    @classmethod
    def from_files(
        cls, ca_file: Path | str | None = None, cert_file: Path | str | None = None, key_file: Path | str | None = None
    ) -> ClientTls:
        if (cert_file is None) != (key_file is None):
            raise UsageError("a client certificate needs its key and a key its certificate (give both or neither)")
        return cls(
            read_pem(ca_file, "CA file") if ca_file else None,
            read_pem(cert_file, "client certificate") if cert_file else None,
            read_pem(key_file, "client key") if key_file else None,
        )

    def grpc_credentials(self) -> Any:
        """``grpc.ChannelCredentials`` for ``secure_channel``."""
        import grpc

        return grpc.ssl_channel_credentials(self.ca, private_key=self.key, certificate_chain=self.cert)

    def ssl_context(self) -> ssl.SSLContext:
        """A client-side context for httpx."""
        context = ssl.create_default_context(cadata=self.ca.decode() if self.ca else None)
        if self.cert is not None:
            _load_chain(context, self.cert, self.key)
        return context


def _load_chain(context: ssl.SSLContext, cert: bytes, key: bytes | None) -> None:
    # ssl only loads chains from files: write them to a private temporary directory for the call.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="deploykit-tls-") as tmp:
        cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert_path.write_bytes(cert)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key or b"")
        try:
            context.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as exc:
            raise UsageError(f"the TLS certificate and key do not form a usable pair: {exc}") from exc
