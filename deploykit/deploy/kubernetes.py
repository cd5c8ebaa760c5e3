"""``deploykit manifests``: Kubernetes manifests for the servers of a model repository.

Per server image (:mod:`deploykit.deploy.servers`): a Deployment (readiness and liveness probes on
the server's health endpoints, resource requests, a GPU for the GPU images), a Service, and a
HorizontalPodAutoscaler scaling on in-flight requests (deploykit serve's
``deploykit_requests_in_flight``) or queue time (Triton's ``nv_inference_queue_duration_us``) read
from the Prometheus metrics through a custom-metrics adapter (prometheus-adapter); TF Serving, which
exports neither, scales on CPU. Plus a KServe ``InferenceService`` speaking the v2 protocol.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from deploykit.deploy.servers import ServerImage, servers

#: HPA metric per server kind: (metric name, average value per pod).
SCALING_METRICS = {
    "deploykit": ("deploykit_requests_in_flight", "4"),
    "triton": ("nv_inference_queue_duration_us", "50000"),
}


def _probe(image: ServerImage, path: str | None, initial_delay: int) -> dict:
    if path is None:  # deploykit serve implements the standard gRPC health service
        probe: dict = {"grpc": {"port": image.grpc_port}}
    else:
        probe = {"httpGet": {"path": path, "port": image.http_port}}
    return {**probe, "initialDelaySeconds": initial_delay, "periodSeconds": 10, "timeoutSeconds": 3}


def deployment(image: ServerImage, registry: str) -> dict:
    labels = {"app.kubernetes.io/name": image.name, "app.kubernetes.io/part-of": "deploykit"}
    resources: dict = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}
    if image.gpu:
        resources["requests"]["nvidia.com/gpu"] = 1
        resources["limits"]["nvidia.com/gpu"] = 1
    container = {
        "name": image.name,
        "image": f"{registry}{image.name}:latest",
        "ports": [
            {"name": "grpc", "containerPort": image.grpc_port},
            {"name": "http", "containerPort": image.http_port},
        ],
        "resources": resources,
        "readinessProbe": _probe(image, image.ready_path, 5),
        "livenessProbe": _probe(image, image.live_path, 30),
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": image.name.startswith("deploykit")},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": image.name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(image.http_port if image.name != "triton" else 8002),
                        "prometheus.io/path": image.metrics_path,
                    },
                },
                # SIGTERM drains in-flight requests (deploykit serve: --grace_period_seconds, default 10).
                "spec": {"terminationGracePeriodSeconds": 30, "containers": [container]},
            },
        },
    }


def service(image: ServerImage) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": image.name},
        "spec": {
            "selector": {"app.kubernetes.io/name": image.name},
            "ports": [
                {"name": "grpc", "port": image.grpc_port, "targetPort": "grpc"},
                {"name": "http", "port": image.http_port, "targetPort": "http"},
            ],
        },
    }


def autoscaler(image: ServerImage) -> dict:
    kind = "triton" if image.name == "triton" else "deploykit" if image.name.startswith("deploykit") else None
    if kind is None:
        metric = {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
        }
    else:
        name, value = SCALING_METRICS[kind]
        metric = {
            "type": "Pods",
            "pods": {"metric": {"name": name}, "target": {"type": "AverageValue", "averageValue": value}},
        }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": image.name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": image.name},
            "minReplicas": 1,
            "maxReplicas": 8,
            "metrics": [metric],
        },
    }


def inference_service(model: str, storage_uri: str) -> dict:
    """A KServe InferenceService serving an ONNX model over the v2 (Open Inference) protocol."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": model},
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "model": {
                    "modelFormat": {"name": "onnx"},
                    "protocolVersion": "v2",
                    "storageUri": storage_uri,
                    "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "4Gi"}},
                },
            }
        },
    }


def manifests(repo: Path, triton_repo: Path | None, registry: str, storage: str) -> dict[str, list[dict]]:
    """``{file name: documents}``: one file per server plus ``kserve.yaml``."""
    files: dict[str, list[dict]] = {}
    images = servers(repo, triton_repo)
    for image in images:
        files[f"{image.name}.yaml"] = [deployment(image, registry), service(image), autoscaler(image)]
    onnx = next((i.models for i in images if i.name.startswith("deploykit-onnx")), ())
    if onnx:
        files["kserve.yaml"] = [inference_service(m, f"{storage.rstrip('/')}/{m}") for m in onnx]
    return files


def write(
    repo: Path, out: Path, triton_repo: Path | None = None, registry: str = "", storage: str = "pvc://models"
) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, documents in manifests(repo, triton_repo, registry, storage).items():
        path = out / name
        path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
        written.append(path)
    return written
