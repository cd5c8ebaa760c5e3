"""The one table between deploykit's errors and gRPC codes / HTTP statuses, read both ways.

A server maps a raised :class:`~deploykit.errors.DeployKitError` to a code (:func:`grpc_code`) and
a code to an HTTP status (:func:`http_status`); a client maps a status it received back to the
error class it raises (:func:`code_for_http`, :func:`error_for`). Codes follow TF Serving's choices
(reference/tfserving-api.md §1.3), HTTP statuses its ``ToHTTPStatusCode`` (§1.6). Messages are cut
at 1024 characters like TF Serving's.
"""

from __future__ import annotations

import grpc

from deploykit.errors import (
    DeadlineExceeded,
    DeployKitError,
    FailedPrecondition,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    RuntimeFailure,
    ServingError,
    Unimplemented,
)

Code = grpc.StatusCode

#: Error class -> gRPC code. A subclass takes the code of its nearest listed base.
GRPC_CODES: dict[type[DeployKitError], grpc.StatusCode] = {
    InvalidInput: Code.INVALID_ARGUMENT,
    NotFound: Code.NOT_FOUND,
    FailedPrecondition: Code.FAILED_PRECONDITION,
    ModelNotReady: Code.UNAVAILABLE,
    ResourceExhausted: Code.RESOURCE_EXHAUSTED,
    DeadlineExceeded: Code.DEADLINE_EXCEEDED,
    Unimplemented: Code.UNIMPLEMENTED,
    PermissionDenied: Code.PERMISSION_DENIED,
    RuntimeFailure: Code.INTERNAL,
}

#: gRPC code -> the error class a client raises: :data:`GRPC_CODES` inverted, except NOT_FOUND,
#: which a server answers to a well-formed request almost only for an unknown model or version
#: (ModelNotFound is a NotFound, so ``except NotFound`` still catches it).
ERRORS: dict[grpc.StatusCode, type[ServingError]] = {
    **{code: cls for cls, code in GRPC_CODES.items() if issubclass(cls, ServingError)},
    Code.NOT_FOUND: ModelNotFound,
}

#: gRPC code -> HTTP status, as TF Serving's http_server.cc. Several codes share a status; the
#: first one listed for a status is how a client reads it back (:func:`code_for_http`).
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    Code.OK: 200,
    Code.INVALID_ARGUMENT: 400,
    Code.NOT_FOUND: 404,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.CANCELLED: 499,
    Code.INTERNAL: 500,
    Code.UNIMPLEMENTED: 501,
    Code.UNAVAILABLE: 503,
    Code.DEADLINE_EXCEEDED: 504,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.UNAUTHENTICATED: 401,
    # sharing a status with a code above
    Code.FAILED_PRECONDITION: 400,
    Code.OUT_OF_RANGE: 400,
    Code.UNKNOWN: 500,
    Code.DATA_LOSS: 500,
    Code.ABORTED: 409,
}

#: HTTP status -> gRPC code: the first code :data:`HTTP_STATUS` lists for it.
CODES_BY_HTTP: dict[int, grpc.StatusCode] = {}
for _code, _status in HTTP_STATUS.items():
    CODES_BY_HTTP.setdefault(_status, _code)

MAX_MESSAGE = 1024
TRUNCATED = "...TRUNCATED"


def grpc_code(error: BaseException, codes: dict[type[DeployKitError], grpc.StatusCode] = GRPC_CODES) -> grpc.StatusCode:
    """gRPC code of an error in ``codes`` (by its nearest listed class); anything unexpected is INTERNAL."""
    for cls in type(error).__mro__:
        if cls in codes:
            return codes[cls]
    return Code.INTERNAL


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status a REST answer with ``code`` carries (500 for anything unlisted)."""
    return HTTP_STATUS.get(code, 500)


def code_for_http(status: int) -> grpc.StatusCode:
    """The gRPC code a REST answer's HTTP status stands for (UNKNOWN for anything unlisted)."""
    return CODES_BY_HTTP.get(status, Code.UNKNOWN)


def error_for(code: grpc.StatusCode, message: str) -> ServingError:
    """The error a client raises for an answer with ``code``: :data:`ERRORS`, else ServingError."""
    return ERRORS.get(code, ServingError)(message)


def message(error: BaseException) -> str:
    """The error's text, cut at 1024 characters with TF Serving's marker."""
    text = str(error) or type(error).__name__
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + TRUNCATED
