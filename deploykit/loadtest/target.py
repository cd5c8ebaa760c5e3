"""Load-test targets written as URLs.

``grpc(s)://HOST:PORT/MODEL[/versions/N|/labels/L]`` or
``http(s)://HOST:PORT/v1/models/MODEL[/versions/N|/labels/L]`` (TF Serving's REST path) for TF
Serving's API; ``v2+grpc(s)://HOST:PORT/MODEL[/versions/N]`` or
``v2+http(s)://HOST:PORT/v2/models/MODEL[/versions/N]`` for the Open Inference Protocol (KServe v2:
Triton, KServe, MLServer, deploykit serve). grpcs:// and https:// targets carry their TLS material
(:class:`~deploykit.tls.ClientTls`) to every process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from deploykit.client import client_tls, parse_target, split_protocol
from deploykit.errors import UsageError
from deploykit.tls import ClientTls

_GRPC_PATH = re.compile(r"^/(?P<model>[^/]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/]+))?/?$")
_REST_PATH = re.compile(r"^/v1/models/(?P<model>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?/?$")
_V2_REST_PATH = re.compile(r"^/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/]+))?/?$")


@dataclass(frozen=True)
class LoadTarget:
    """An endpoint plus the model (and version or label) the load is aimed at."""

    endpoint: str  # grpc(s)://host:port or http(s)://host:port
    model: str
    version: int | None = None
    label: str | None = None
    signature: str = ""
    tls: ClientTls | None = None
    protocol: str = "tfserving"  # or "v2" (the Open Inference Protocol)

    @property
    def is_rest(self) -> bool:
        return self.endpoint.startswith("http")

    @property
    def client_target(self) -> str:
        """The endpoint as :class:`~deploykit.client.Client` takes it (with its protocol prefix)."""
        return self.endpoint if self.protocol == "tfserving" else f"{self.protocol}+{self.endpoint}"

    def __str__(self) -> str:
        suffix = (
            f"/versions/{self.version}" if self.version is not None else (f"/labels/{self.label}" if self.label else "")
        )
        models = ("/v2/models" if self.protocol == "v2" else "/v1/models") if self.is_rest else ""
        return f"{self.client_target}{models}/{self.model}{suffix}"


def parse_load_target(
    text: str,
    signature: str = "",
    *,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
) -> LoadTarget:
    """A target URL; ``ca_file``/``cert_file``/``key_file`` as for :class:`~deploykit.client.Client`."""
    protocol, rest = split_protocol(text)
    url = urlparse(rest)
    rest_path = _V2_REST_PATH if protocol == "v2" else _REST_PATH
    pattern = rest_path if url.scheme in ("http", "https") else _GRPC_PATH if url.scheme in ("grpc", "grpcs") else None
    match = pattern.match(url.path) if pattern and protocol in ("tfserving", "v2") else None
    if not match:
        raise UsageError(
            f"cannot parse target {text!r}; expected grpc(s)://HOST:PORT/MODEL[/versions/N|/labels/L], "
            "http://HOST:PORT/v1/models/MODEL[/versions/N|/labels/L], v2+grpc(s)://HOST:PORT/MODEL[/versions/N] "
            "or v2+http(s)://HOST:PORT/v2/models/MODEL[/versions/N]"
        )
    endpoint = parse_target(f"{url.scheme}://{url.netloc}")
    return LoadTarget(
        f"{endpoint.scheme}://{endpoint.address}",
        match["model"],
        int(match["version"]) if match["version"] else None,
        match["label"],
        signature,
        client_tls(endpoint, ca_file, cert_file, key_file),
        protocol,
    )
