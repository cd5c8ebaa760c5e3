"""The Open Inference Protocol's gRPC method paths and deploykit's messages that travel on them.

The wire path is ``/inference.GRPCInferenceService/<Method>`` (Triton's, KServe's and MLServer's);
the messages are deploykit's copies under the proto package ``deploykit.v2`` (see
``protos/v2_service.proto`` for why). Server (generic handlers) and client (``channel.unary_unary``)
share this one table.
"""

from __future__ import annotations

from deploykit.protocol.grpc_paths import Method
from deploykit.protocol.protos import v2_service_pb2 as pb

SERVICE = "inference.GRPCInferenceService"


def _method(name: str, request: str | None = None, response: str | None = None) -> Method:
    return Method(SERVICE, name, getattr(pb, request or f"{name}Request"), getattr(pb, response or f"{name}Response"))


SERVER_LIVE = _method("ServerLive")
SERVER_READY = _method("ServerReady")
MODEL_READY = _method("ModelReady")
SERVER_METADATA = _method("ServerMetadata")
MODEL_METADATA = _method("ModelMetadata")
MODEL_INFER = _method("ModelInfer")
MODEL_CONFIG = _method("ModelConfig")
MODEL_STATISTICS = _method("ModelStatistics")
REPOSITORY_INDEX = _method("RepositoryIndex")
REPOSITORY_MODEL_LOAD = _method("RepositoryModelLoad")
REPOSITORY_MODEL_UNLOAD = _method("RepositoryModelUnload")

METHODS = (
    SERVER_LIVE,
    SERVER_READY,
    MODEL_READY,
    SERVER_METADATA,
    MODEL_METADATA,
    MODEL_INFER,
    MODEL_CONFIG,
    MODEL_STATISTICS,
    REPOSITORY_INDEX,
    REPOSITORY_MODEL_LOAD,
    REPOSITORY_MODEL_UNLOAD,
)

#: What ServerMetadata lists (Triton's names for the extensions deploykit implements).
EXTENSIONS = (
    "binary_tensor_data",
    "model_configuration",
    "model_repository",
    "statistics",
    "schedule_policy",
)
