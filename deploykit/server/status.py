"""The one table mapping deploykit errors to gRPC status codes and HTTP statuses.

Codes follow TF Serving's choices (reference/tfserving-api.md §1.3) and HTTP statuses its
``ToHTTPStatusCode`` (§1.6). Messages are cut at 1024 characters like TF Serving's.
"""

from __future__ import annotations

import grpc

from deploykit.errors import (
    DeadlineExceeded,
    DeployKitError,
    FailedPrecondition,
    InvalidInput,
    ModelNotReady,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    RuntimeFailure,
    Unimplemented,
)

GRPC_CODES: dict[type[DeployKitError], grpc.StatusCode] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    ModelNotReady: grpc.StatusCode.UNAVAILABLE,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    RuntimeFailure: grpc.StatusCode.INTERNAL,
}

#: gRPC code -> HTTP status, as TF Serving's http_server.cc.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

MAX_MESSAGE = 1024
TRUNCATED = "...TRUNCATED"


def grpc_code(error: BaseException) -> grpc.StatusCode:
    """gRPC code of an error; anything unexpected is INTERNAL."""
    for cls in type(error).__mro__:
        if cls in GRPC_CODES:
            return GRPC_CODES[cls]
    return grpc.StatusCode.INTERNAL


def http_status(code: grpc.StatusCode) -> int:
    return HTTP_STATUS.get(code, 500)


def message(error: BaseException) -> str:
    """The error's text, cut at 1024 characters with TF Serving's marker."""
    text = str(error) or type(error).__name__
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + TRUNCATED
