"""The servers a model repository deploys to, as both container and Kubernetes files see them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploykit.errors import UsageError

#: Pinned base images (a floating tag would change the deployment under the same files).
CUDA_BASE = "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04"
CPU_BASE = "python:3.11-slim-bookworm"
TFSERVING_IMAGE = "tensorflow/serving:2.19.0"
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:25.01-py3"
GRPC_PORT, REST_PORT = 8500, 8501
TRITON_HTTP, TRITON_GRPC, TRITON_METRICS = 8000, 8001, 8002
#: Where ``deploykit triton-deploy`` writes its model repository by default (read generically:
#: any Triton model repository directory works).
TRITON_REPOSITORY = Path("serving/triton")


@dataclass(frozen=True)
class ServerImage:
    """One server image: what it serves and how it is probed."""

    name: str  # image / service / Deployment name
    dockerfile: str
    gpu: bool
    grpc_port: int
    http_port: int
    #: Readiness: an HTTP path on http_port, or None for the standard gRPC health service on grpc_port.
    ready_path: str | None
    live_path: str | None
    models: tuple[str, ...]
    metrics_path: str


def model_names(repo: Path) -> list[str]:
    """Model directories of a repository (those with at least one integer version directory)."""
    repo = Path(repo)
    if not repo.is_dir():
        raise UsageError(f"{repo}: no such model repository")
    names = sorted(d.name for d in repo.iterdir() if d.is_dir() and any(v.name.isdigit() for v in d.iterdir()))
    if not names:
        raise UsageError(f"{repo}: found no models (expected NAME/VERSION/ directories with integer versions)")
    return names


def servers(repo: Path, triton_repo: Path | None) -> list[ServerImage]:
    """Every server image the repository deploys to."""
    names = model_names(repo)
    onnx = tuple(n for n in names if n.endswith("-onnx"))
    saved = tuple(n for n in names if n.endswith("-savedmodel"))
    found = []
    for gpu in (False, True):
        if onnx:
            found.append(
                ServerImage(
                    f"deploykit-onnx-{'gpu' if gpu else 'cpu'}",
                    f"Dockerfile.onnx-{'gpu' if gpu else 'cpu'}",
                    gpu,
                    GRPC_PORT,
                    REST_PORT,
                    None,
                    None,
                    onnx,
                    "/monitoring/prometheus/metrics",
                )
            )
    if saved:
        found.append(
            ServerImage(
                "tfserving",
                "Dockerfile.tfserving",
                False,
                GRPC_PORT,
                REST_PORT,
                f"/v1/models/{saved[0]}",
                f"/v1/models/{saved[0]}",
                saved,
                "/monitoring/prometheus/metrics",
            )
        )
    if triton_repo is not None:
        triton_models = tuple(sorted(d.name for d in Path(triton_repo).iterdir() if (d / "config.pbtxt").is_file()))
        found.append(
            ServerImage(
                "triton",
                "Dockerfile.triton",
                True,
                TRITON_GRPC,
                TRITON_HTTP,
                "/v2/health/ready",
                "/v2/health/live",
                triton_models,
                "/metrics",
            )
        )
    return found
