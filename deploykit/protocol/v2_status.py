"""Status codes on the Open Inference Protocol side, as Triton answers them.

Triton has fewer codes than gRPC (INVALID_ARG, NOT_FOUND, UNAVAILABLE, UNSUPPORTED, INTERNAL,
UNKNOWN, ALREADY_EXISTS, CANCELLED) and its HTTP statuses come from ``HttpCodeFromError``
(server ``src/http_server.cc``): NOT_FOUND 404, UNAVAILABLE 503, UNSUPPORTED 501, INTERNAL 500,
everything else 400. deploykit's errors map onto those, so a v2 client sees what Triton would send:
a full batch queue is UNAVAILABLE / 503 (Triton's "Exceeds maximum queue size"), not TF Serving
API's RESOURCE_EXHAUSTED / 429. Two codes Triton lacks are kept because they say more:
DEADLINE_EXCEEDED on gRPC (503 on REST, like Triton's "Request timeout expired") and
PERMISSION_DENIED / 403 for a disabled administrative API (Triton's restricted APIs answer 403 on
REST and UNAVAILABLE on gRPC).
"""

from __future__ import annotations

import grpc

from deploykit.errors import DeployKitError, FailedPrecondition, ResourceExhausted
from deploykit.protocol import status_codes

Code = grpc.StatusCode

#: deploykit error -> the gRPC code Triton's server sends for the same case: TF Serving API's table
#: (:data:`deploykit.protocol.status_codes.GRPC_CODES`) but for the two cases Triton answers otherwise.
GRPC_CODES: dict[type[DeployKitError], grpc.StatusCode] = {
    **status_codes.GRPC_CODES,
    FailedPrecondition: Code.INVALID_ARGUMENT,
    ResourceExhausted: Code.UNAVAILABLE,
}

#: gRPC code -> HTTP status (Triton's HttpCodeFromError; anything else is 400).
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    Code.OK: 200,
    Code.NOT_FOUND: 404,
    Code.UNAVAILABLE: 503,
    Code.DEADLINE_EXCEEDED: 503,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.PERMISSION_DENIED: 403,
}


def grpc_code(error: BaseException) -> grpc.StatusCode:
    """The v2 gRPC code of an error; anything unexpected is INTERNAL."""
    return status_codes.grpc_code(error, GRPC_CODES)


def http_status(code: grpc.StatusCode) -> int:
    """The v2 REST status of a gRPC code."""
    return HTTP_STATUS.get(code, 400)
