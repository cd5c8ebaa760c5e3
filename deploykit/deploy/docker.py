"""``deploykit docker``: a build context with the serving images and a compose file for a model
repository: ONNX Runtime on GPU (CUDA runtime base, onnxruntime-gpu, the serve extra only: no
TensorFlow, no PyTorch) and on CPU, TF Serving with the SavedModels baked in, Triton with its model
repository (when one exists), and a compose file that runs the servers and a load test.

The generic images in the repository's ``docker/`` are this module's output for a checkout (models
mounted at /models at run time): :func:`onnx_dockerfile` is their one home.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from deploykit.deploy.servers import (
    CPU_BASE,
    CUDA_BASE,
    GRPC_PORT,
    REST_PORT,
    TFSERVING_IMAGE,
    TRITON_GRPC,
    TRITON_HTTP,
    TRITON_IMAGE,
    TRITON_METRICS,
    ServerImage,
    servers,
)
from deploykit.errors import UsageError

#: The command every ONNX image runs (the tests run it too, against a local repository).
SERVE_COMMAND = [
    "deploykit",
    "serve",
    "/models",
    "--host",
    "0.0.0.0",
    "--port",
    str(GRPC_PORT),
    "--rest_api_port",
    str(REST_PORT),
]
SOURCE_FILES = ("pyproject.toml", "constraints.txt", "README.md")


def onnx_dockerfile(gpu: bool, *, source: str, models: str | None) -> str:
    """The ONNX Runtime serving image. ``source``: deploykit's source in the build context;
    ``models``: a repository to bake in (None: mount one at /models)."""
    extra = "serve-gpu" if gpu else "serve"
    if gpu:
        base = [
            f"FROM {CUDA_BASE}",
            "# Ubuntu's Python 3.12 in a virtual environment; apt versions follow the pinned base image.",
            "# hadolint ignore=DL3008",
            "RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \\",
            "    && rm -rf /var/lib/apt/lists/* && python3 -m venv /opt/venv",
        ]
    else:
        base = [f"FROM {CPU_BASE}", "RUN python -m venv /opt/venv"]
    lines = [
        f"# deploykit serve on ONNX Runtime ({'CUDA/TensorRT, falls back to CPU' if gpu else 'CPU'}): "
        f"the '{extra}' extra only, no TensorFlow, no PyTorch.",
        *base,
        'ENV PATH="/opt/venv/bin:$PATH" PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1',
        f"COPY {source} /src",
        "# Exact versions from constraints.txt (DL3013: pinned there, not on this line).",
        "# hadolint ignore=DL3013",
        f'RUN pip install --no-cache-dir -c /src/constraints.txt "/src[{extra}]" && rm -rf /src',
    ]
    if models:
        lines.append(f"COPY {models} /models")
    lines += [
        "RUN useradd --create-home --uid 10001 deploykit",
        "USER 10001",
        f"EXPOSE {GRPC_PORT} {REST_PORT}",
        "# gRPC health (standard service) and REST status are what Kubernetes probes.",
        'HEALTHCHECK --interval=10s --timeout=3s --start-period=30s CMD ["python", "-c", '
        f"\"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{REST_PORT}/monitoring/prometheus/metrics')\"]",
        "ENTRYPOINT " + _json(SERVE_COMMAND[:2]),
        "CMD " + _json(SERVE_COMMAND[2:]),
    ]
    return "\n".join(lines) + "\n"


def _json(argv: list[str]) -> str:
    return "[" + ", ".join(f'"{a}"' for a in argv) + "]"


def tfserving_dockerfile() -> str:
    return (
        "\n".join(
            [
                "# TensorFlow Serving with the repository's SavedModels baked in (deploykit tfserving-deploy layout).",
                f"FROM {TFSERVING_IMAGE}",
                "COPY tfserving /models",
                f"EXPOSE {GRPC_PORT} {REST_PORT}",
                'ENTRYPOINT ["tensorflow_model_server"]',
                f'CMD ["--port={GRPC_PORT}", "--rest_api_port={REST_PORT}", '
                '"--model_config_file=/models/models.docker.config", '
                '"--monitoring_config_file=/models/monitoring.config"]',
            ]
        )
        + "\n"
    )


def triton_dockerfile() -> str:
    return (
        "\n".join(
            [
                "# NVIDIA Triton with its model repository",
                "# (deploykit triton-deploy's layout: NAME/config.pbtxt, NAME/VERSION/).",
                f"FROM {TRITON_IMAGE}",
                "COPY triton /models",
                f"EXPOSE {TRITON_HTTP} {TRITON_GRPC} {TRITON_METRICS}",
                'ENTRYPOINT ["tritonserver"]',
                'CMD ["--model-repository=/models", "--strict-readiness=true"]',
            ]
        )
        + "\n"
    )


def compose(images: list[ServerImage], load_duration: str = "30s") -> dict:
    """Compose: every server (the GPU ones under the 'gpu' profile) and a load test comparing them."""
    services: dict = {}
    targets = []
    host_port = 8500
    for image in images:
        service: dict = {"build": {"context": ".", "dockerfile": image.dockerfile}, "image": f"{image.name}:latest"}
        if image.name == "triton":
            service["ports"] = [
                f"{host_port + i}:{p}" for i, p in enumerate((TRITON_HTTP, TRITON_GRPC, TRITON_METRICS))
            ]
        else:
            service["ports"] = [f"{host_port}:{GRPC_PORT}", f"{host_port + 1}:{REST_PORT}"]
        host_port += 10
        if image.gpu:
            service["profiles"] = ["gpu"]
            service["deploy"] = {
                "resources": {"reservations": {"devices": [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]}}
            }
        services[image.name] = service
        if not image.gpu and image.name != "triton":
            targets += [f"grpc://{image.name}:{GRPC_PORT}/{model}" for model in image.models]
    cpu = next((i for i in images if i.name == "deploykit-onnx-cpu"), None)
    if cpu and len(targets) >= 2:
        services["loadtest"] = {
            "image": f"{cpu.name}:latest",
            "depends_on": {i.name: {"condition": "service_started"} for i in images if not i.gpu},
            "entrypoint": ["deploykit"],
            "command": [
                "compare",
                *targets,
                "--concurrency",
                "4",
                "--duration",
                load_duration,
                "--wait-ready",  # "service_started" is not "serving": models may still be loading
                "120s",
                "-o",
                "/reports/compare.html",
                "-o",
                "/reports/compare.json",
                "-o",
                "/reports/compare.md",
            ],
            "volumes": ["./reports:/reports"],
            "profiles": ["loadtest"],
        }
    # "version" is obsolete for Compose v2 (ignored there) but lets Compose v1 (Debian's
    # docker-compose 1.29) read profiles and device reservations too.
    return {"version": "3.9", "services": services}


def _link_tree(src: Path, dst: Path) -> None:
    """Hard links where possible (no copy of large weights), copies across file systems."""

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def source_root() -> Path:
    """The deploykit checkout this module runs from (pyproject.toml beside the package)."""
    root = Path(__file__).resolve().parents[2]
    missing = [f for f in SOURCE_FILES if not (root / f).is_file()]
    if missing:
        raise UsageError(f"deploykit docker needs deploykit's source checkout; {root} lacks {', '.join(missing)}")
    return root


def write(repo: Path, out: Path, triton_repo: Path | None = None, force: bool = False) -> list[Path]:
    """Write the build context into ``out``; returns the files written (Dockerfiles and compose)."""
    repo, out = Path(repo), Path(out)
    if triton_repo is not None and not Path(triton_repo).is_dir():
        raise UsageError(f"--triton-repo {triton_repo}: no such directory")
    images = servers(repo, triton_repo)
    if out.exists():
        if not force:
            raise UsageError(f"{out} exists; pass --force to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    root = source_root()
    (out / "src").mkdir()
    for name in SOURCE_FILES:
        shutil.copy2(root / name, out / "src" / name)
    _link_tree(root / "deploykit", out / "src" / "deploykit")
    written = []
    names = {i.name for i in images}
    if names & {"deploykit-onnx-cpu", "deploykit-onnx-gpu"}:
        onnx_models = next(i.models for i in images if i.name.startswith("deploykit-onnx"))
        (out / "models").mkdir()
        for model in onnx_models:
            _link_tree(repo / model, out / "models" / model)
        for gpu in (False, True):
            path = out / f"Dockerfile.onnx-{'gpu' if gpu else 'cpu'}"
            path.write_text(onnx_dockerfile(gpu, source="src", models="models"))
            written.append(path)
    if "tfserving" in names:
        from deploykit.tfserving import deployment

        deployment.write(deployment.plan(repo), out / "tfserving")
        (out / "Dockerfile.tfserving").write_text(tfserving_dockerfile())
        written.append(out / "Dockerfile.tfserving")
    if "triton" in names:
        _link_tree(Path(triton_repo), out / "triton")
        (out / "Dockerfile.triton").write_text(triton_dockerfile())
        written.append(out / "Dockerfile.triton")
    (out / "compose.yaml").write_text(yaml.safe_dump(compose(images), sort_keys=False))
    (out / ".dockerignore").write_text("reports\n")
    written.append(out / "compose.yaml")
    return written
