"""One exception tree for deploykit.

::

    DeployKitError                 exit 1 unless stated
    ├── UsageError                 exit 2: bad option value, unknown model name, unparsable spec
    ├── DataError                  exit 1: a dataset that cannot be used (missing keys, NaN, ...)
    ├── WeightTransferError        exit 1: twin weights do not map one-to-one
    ├── TrainingError              exit 1: a framework failed while training
    ├── ExportError                exit 1: a source that cannot be loaded, a converter that failed
    │   └── ValidationError        exit 1: an artifact that does not compute what its source does
    ├── ServingError               what a server answers a bad request with (gRPC code, HTTP status)
    │   ├── InvalidInput           INVALID_ARGUMENT / 400
    │   ├── NotFound               NOT_FOUND / 404 (e.g. a file a TensorFlow op reads)
    │   │   └── ModelNotFound      (unknown model or version)
    │   ├── FailedPrecondition     FAILED_PRECONDITION / 400 (e.g. a label on an unavailable version)
    │   │   └── SignatureNotFound  (Predict: unknown signature, as TF Serving)
    │   ├── ModelNotReady          UNAVAILABLE / 503
    │   ├── ResourceExhausted      RESOURCE_EXHAUSTED / 429
    │   ├── DeadlineExceeded       DEADLINE_EXCEEDED / 504
    │   ├── Unimplemented          UNIMPLEMENTED / 501
    │   ├── PermissionDenied       PERMISSION_DENIED / 403 (an administrative API that is not enabled)
    │   └── RuntimeFailure         INTERNAL / 500
    ├── FrameworkMissing           exit 1: a model's framework is not installed (names the extra)
    └── Unreachable                exit 3: a client could not reach its target

Every error carries a message that names what was wrong and what was expected. The command-line
interface prints that message on one line and exits with ``exit_code``; transport layers (added with
the server) map the same classes to gRPC and HTTP status codes in exactly one table.
"""

from __future__ import annotations


class DeployKitError(Exception):
    """Base class of every error deploykit raises on purpose."""

    #: Process exit code the CLI uses for this error (DESIGN.md §3.8).
    exit_code: int = 1


class UsageError(DeployKitError):
    """The caller asked for something that cannot be done as asked (exit code 2)."""

    exit_code = 2


class DataError(DeployKitError):
    """A dataset is unusable: missing keys, wrong shapes or ranks, NaN/Inf, empty."""


class WeightTransferError(DeployKitError):
    """Weights of one twin cannot be mapped onto the other exactly, tensor by tensor."""


class TrainingError(DeployKitError):
    """A framework raised while training."""


class ExportError(DeployKitError):
    """A model could not be loaded or converted; the message names the artifact and the cause."""


class ValidationError(ExportError):
    """An artifact's outputs, files or hashes do not match what was recorded or expected."""


# ----------------------------------------------------------------------------------------------
# Serving errors: each maps to one gRPC code and one HTTP status in deploykit.protocol.status_codes.
# ----------------------------------------------------------------------------------------------


class ServingError(DeployKitError):
    """Base of the errors a server returns to a client."""


class InvalidInput(ServingError):
    """A malformed request or tensors that do not fit the signature (INVALID_ARGUMENT / 400)."""


class NotFound(ServingError):
    """Something the request needs does not exist (NOT_FOUND / 404)."""


class ModelNotFound(NotFound):
    """Unknown model or version (NOT_FOUND / 404)."""


class FailedPrecondition(ServingError):
    """The request cannot run in the server's current state (FAILED_PRECONDITION / 400)."""


class SignatureNotFound(FailedPrecondition):
    """Predict named a signature the model does not have (FAILED_PRECONDITION / 400)."""


class ModelNotReady(ServingError):
    """The model exists but cannot serve now (UNAVAILABLE / 503)."""


class ResourceExhausted(ServingError):
    """A queue or size limit was hit (RESOURCE_EXHAUSTED / 429)."""


class DeadlineExceeded(ServingError):
    """The request's deadline passed before its answer was ready (DEADLINE_EXCEEDED / 504)."""


class Unimplemented(ServingError):
    """The request asks for an operation the server or the model does not implement (UNIMPLEMENTED / 501)."""


class PermissionDenied(ServingError):
    """The request calls an administrative API the server was not started to allow (PERMISSION_DENIED / 403)."""


class RuntimeFailure(ServingError):
    """The model's framework raised while computing (INTERNAL / 500)."""


class FrameworkMissing(DeployKitError):
    """An artifact's framework is not installed; the message names the extra that installs it."""


class LaunchError(DeployKitError):
    """A launched server (the real TF Serving) failed: it exited before it was ready, or a model
    failed to load in it (exit code 1)."""


class Unreachable(DeployKitError):
    """A client could not reach its target within its deadline (exit code 3)."""

    exit_code = 3
