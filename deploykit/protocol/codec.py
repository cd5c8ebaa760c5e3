"""The client's extension point: a wire protocol is a :class:`Codec`; bytes travel on a transport.

:class:`deploykit.client.Client` and :class:`~deploykit.client.AsyncClient` are one shell: every
method (predict, classify, regress, metadata, status, wait_until_ready) is written once, asks the
target's codec for a :class:`WireRequest` (a path, the serialised body, how to read the answer)
and hands it to a transport (:mod:`deploykit.transports`: blocking or asyncio, gRPC or HTTP) that
moves bytes and knows nothing of any message. The load tester takes the same requests from the
same codec and sends their bytes itself (serialised once, outside the hot loop).

Adding a protocol (e.g. the Open Inference Protocol, KServe v2) is one module per wire family in
``deploykit/protocol/`` with a class satisfying :class:`Codec` (``wire = "grpc"`` or ``"http"``),
registered in :data:`deploykit.client.CODECS` under a name the target selects; no client code
changes. A method the protocol lacks (v2 has no Classify) raises
:class:`~deploykit.errors.Unimplemented` from the codec. Errors need nothing new: transports report
gRPC codes (HTTP statuses are read back through :mod:`deploykit.protocol.status_codes`), and the
shell raises the error class the shared table names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from deploykit.model_ref import ModelRef
from deploykit.tensors import Signature, Tensors

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

Classifications = list[list[tuple[str, float]]]


@dataclass(frozen=True)
class VersionStatus:
    """One model version's state, as GetModelStatus / the REST status document report it."""

    version: int
    state: str  # AVAILABLE, LOADING, END, ...
    error_code: str
    error_message: str


@dataclass(frozen=True)
class WireRequest(Generic[T]):
    """One request serialised once: where it goes, its bytes, and how to read a successful answer."""

    path: str  # gRPC method path (/package.Service/Method) or HTTP URL path
    body: bytes | None  # serialised message or JSON document; None: an HTTP GET
    decode: Callable[[bytes], T]  # the answer's bytes -> the client's value
    metadata: tuple[tuple[str, str], ...] = ()  # gRPC request metadata / HTTP request headers


def raw(path: str, body: bytes | None, metadata: tuple[tuple[str, str], ...] = ()) -> WireRequest[bytes]:
    """A request whose answer is returned as bytes (the load tester's pre-built payloads)."""
    return WireRequest(path, body, bytes, metadata)


class Codec(Protocol):
    """One wire protocol on one wire family: builds every request of the client's API."""

    #: Which transports carry it: "grpc" (method path + protobuf bytes) or "http" (URL path + JSON).
    wire: Literal["grpc", "http"]
    #: True when predict answers cannot be decoded without the model's signatures (TF Serving's
    #: REST JSON carries no dtypes): the shell then fetches (and caches) metadata first.
    predict_needs_signatures: bool

    def predict(
        self,
        ref: ModelRef,
        inputs: Tensors,
        output_filter: list[str] | None,
        signatures: dict[str, Signature] | None,
    ) -> WireRequest[Tensors]: ...

    def classify(self, ref: ModelRef, examples: list[dict], context: dict | None) -> WireRequest[Classifications]: ...

    def regress(self, ref: ModelRef, examples: list[dict], context: dict | None) -> WireRequest[list[float]]: ...

    def metadata(self, ref: ModelRef) -> WireRequest[dict[str, Signature]]: ...

    def status(self, ref: ModelRef) -> WireRequest[list[VersionStatus]]: ...
