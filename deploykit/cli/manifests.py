"""``deploykit manifests``: Kubernetes and KServe manifests for a model repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deploykit.cli.common import exits_on_error, make_console
from deploykit.cli.docker import Repo, TritonRepo, triton_repository


@exits_on_error
def manifests(
    repo: Repo,
    out: Annotated[Path, typer.Option(help="Directory to write the YAML files into.")] = Path("serving/kubernetes"),
    triton_repo: TritonRepo = None,
    registry: Annotated[str, typer.Option(help="Image registry prefix, e.g. registry.example.com/team/.")] = "",
    storage: Annotated[str, typer.Option(help="KServe storageUri prefix of the model repository.")] = "pvc://models",
) -> None:
    """Per server: a Deployment (readiness/liveness probes on the health endpoints, resource
    requests, a GPU for GPU images), a Service and a HorizontalPodAutoscaler (in-flight requests or
    queue time from the Prometheus metrics via a custom-metrics adapter; CPU for TF Serving); plus a
    KServe InferenceService per ONNX model (v2 protocol). Apply with `kubectl apply -f OUT`."""
    from deploykit.deploy import kubernetes

    console = make_console()
    for path in kubernetes.write(repo, out, triton_repository(triton_repo), registry, storage):
        console.print(f"wrote {path}", highlight=False)
