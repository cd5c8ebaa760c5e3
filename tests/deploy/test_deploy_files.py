"""Container, Kubernetes and CI files, checked offline: no Docker engine, cluster or GitHub runner
exists here, so each file is checked with the tool its consumer trusts (hadolint, the compose
spec, Kubernetes' schemas, GitHub's workflow schemas) and the commands inside are run for real."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploykit.deploy import docker, kubernetes
from deploykit.deploy.servers import GRPC_PORT
from deploykit.ports import free_ports
from tests.conftest import TFSERVING_TESTDATA
from tests.onnx_builders import add_version

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _repo(tmp_path: Path, triton: bool = False) -> tuple[Path, Path | None]:
    """A repository with an ONNX model and a (real, tiny) SavedModel; optionally a Triton repository."""
    repo = tmp_path / "models"
    add_version(repo / "affine-onnx", 1)
    # TF Serving's own test SavedModel (tests/data/tfserving), version 123 as it ships
    shutil.copytree(TFSERVING_TESTDATA / "saved_model_half_plus_three", repo / "half-savedmodel")
    triton_repo = None
    if triton:  # deploykit triton-deploy's layout: NAME/config.pbtxt, NAME/VERSION/model.onnx
        triton_repo = tmp_path / "triton"
        (triton_repo / "affine-onnx" / "1").mkdir(parents=True)
        (triton_repo / "affine-onnx" / "config.pbtxt").write_text('name: "affine-onnx"\nbackend: "onnxruntime"\n')
        shutil.copy(repo / "affine-onnx" / "1" / "model.onnx", triton_repo / "affine-onnx" / "1" / "model.onnx")
    return repo, triton_repo


def _hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "hadolint"), str(path)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("docker")
    repo, triton_repo = _repo(tmp, triton=True)
    docker.write(repo, tmp / "context", triton_repo)
    return tmp / "context"


def test_dockerfiles_lint_clean(context: Path) -> None:
    files = sorted(context.glob("Dockerfile.*")) + sorted((ROOT / "docker").glob("Dockerfile.*"))
    assert {p.name for p in files} >= {
        "Dockerfile.onnx-gpu",
        "Dockerfile.onnx-cpu",
        "Dockerfile.tfserving",
        "Dockerfile.triton",
    }
    for path in files:
        result = _hadolint(path)
        assert result.returncode == 0, f"{path}: {result.stdout}{result.stderr}"


def test_checked_in_images_are_the_generator_output() -> None:
    for gpu in (False, True):
        path = ROOT / "docker" / f"Dockerfile.onnx-{'gpu' if gpu else 'cpu'}"
        assert path.read_text() == docker.onnx_dockerfile(gpu, source=".", models=None)


def test_gpu_image_is_slim_and_files_referenced_exist(context: Path) -> None:
    gpu = (context / "Dockerfile.onnx-gpu").read_text()
    assert "FROM nvidia/cuda:" in gpu and "-runtime-" in gpu and "[serve-gpu]" in gpu
    for text in (gpu, (context / "Dockerfile.onnx-cpu").read_text()):
        assert "torch" not in text and "tensorflow" not in text and "[all]" not in text
    for dockerfile in context.glob("Dockerfile.*"):
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY "):
                assert (context / line.split()[1]).exists(), f"{dockerfile.name}: {line}"
    assert (context / "tfserving" / "models.docker.config").is_file()
    assert (context / "triton" / "affine-onnx" / "config.pbtxt").is_file()
    assert (context / "models" / "affine-onnx" / "1" / "model.onnx").is_file()
    assert "half-savedmodel" in (context / "tfserving" / "models.docker.config").read_text()


def test_compose_parses(context: Path) -> None:
    compose = context / "compose.yaml"
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(compose)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    if shutil.which("docker-compose"):  # Debian's docker-compose parses it without an engine
        result = subprocess.run(["docker-compose", "-f", str(compose), "config", "-q"], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    services = yaml.safe_load(compose.read_text())["services"]
    assert services["deploykit-onnx-gpu"]["profiles"] == ["gpu"]
    for service in services.values():
        if "build" in service:
            assert (context / service["build"]["dockerfile"]).is_file()


def test_entrypoint_is_the_command_that_serves(tmp_path: Path) -> None:
    """The ONNX images' ENTRYPOINT + CMD, run here with the repository at /models's place and
    loopback ports, serve; the compose load test's command then measures them."""
    repo, _ = _repo(tmp_path)
    grpc_port, rest_port = free_ports(2)
    argv = [str(BIN / "deploykit")] + docker.SERVE_COMMAND[1:]
    argv = [str(repo) if a == "/models" else "127.0.0.1" if a == "0.0.0.0" else a for a in argv]
    argv[argv.index(str(GRPC_PORT))] = str(grpc_port)
    argv[argv.index("--rest_api_port") + 1] = str(rest_port)
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        images = docker.servers(repo, None)
        command = docker.compose(images, load_duration="1s")["services"]["loadtest"]["command"]
        targets = [t for t in command if t.startswith("grpc://") and "onnx" in t.split("/")[-1]]
        targets = [t.replace("deploykit-onnx-cpu:8500", f"127.0.0.1:{grpc_port}") for t in targets] * 2
        out = tmp_path / "compare.json"
        result = subprocess.run(
            [
                str(BIN / "deploykit"),
                command[0],
                *targets,
                "--concurrency",
                "1",
                "--duration",
                "1s",
                "--rounds",
                "1",
                "--wait-ready",  # the server may still be loading its models (TensorFlow takes seconds)
                "120s",
                "-o",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode in (0, 4), result.stderr  # 4: a short run on a busy machine may be unstable
        assert json.loads(out.read_text())["levels"][0]["count"]["ok"] > 0
    finally:
        server.terminate()
        server.wait(30)


def test_manifests_validate_against_kubernetes_schemas(tmp_path: Path) -> None:
    import kubernetes_validate

    repo, triton_repo = _repo(tmp_path, triton=True)
    written = kubernetes.write(repo, tmp_path / "k8s", triton_repo)
    kinds = {}
    for path in written:
        for doc in yaml.safe_load_all(path.read_text()):
            kinds.setdefault(doc["kind"], []).append(doc)
            if doc["kind"] == "InferenceService":
                continue  # a CRD: Kubernetes' schemas do not have it (checked below)
            kubernetes_validate.validate(doc, "1.30.0", strict=True)
    assert len(kinds["Deployment"]) == len(kinds["Service"]) == len(kinds["HorizontalPodAutoscaler"]) == 4
    by_name = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0] for d in kinds["Deployment"]}
    assert by_name["deploykit-onnx-gpu"]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in by_name["deploykit-onnx-cpu"]["resources"]["limits"]
    assert by_name["deploykit-onnx-cpu"]["readinessProbe"]["grpc"]["port"] == GRPC_PORT
    assert by_name["triton"]["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert by_name["tfserving"]["livenessProbe"]["httpGet"]["path"] == "/v1/models/half-savedmodel"
    metrics = {h["metadata"]["name"]: h["spec"]["metrics"][0] for h in kinds["HorizontalPodAutoscaler"]}
    assert metrics["deploykit-onnx-cpu"]["pods"]["metric"]["name"] == "deploykit_requests_in_flight"
    assert metrics["triton"]["pods"]["metric"]["name"] == "nv_inference_queue_duration_us"
    (service,) = kinds["InferenceService"]
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    model = service["spec"]["predictor"]["model"]
    assert model["protocolVersion"] == "v2" and model["modelFormat"]["name"] == "onnx" and model["storageUri"]


@pytest.mark.parametrize(
    ("path", "schema"),
    [
        (".github/workflows/deploykit.yml", "vendor.github-workflows"),
        (".github/actions/deploykit-gate/action.yml", "vendor.github-actions"),
    ],
)
def test_ci_files_check_clean(path: str, schema: str) -> None:
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", schema, str(ROOT / path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    steps = yaml.safe_load((ROOT / ".github/actions/deploykit-gate/action.yml").read_text())["runs"]["steps"]
    commands = " ".join(s.get("run", "") for s in steps)
    for command in (
        "deploykit export",
        "deploykit validate",
        "deploykit compare",
        "--threshold",
        "GITHUB_STEP_SUMMARY",
    ):
        assert command in commands


def test_cli_commands_write_files(tmp_path: Path) -> None:
    repo, _ = _repo(tmp_path)
    for command, out in (("docker", tmp_path / "ctx"), ("manifests", tmp_path / "k8s")):
        result = subprocess.run(
            [str(BIN / "deploykit"), command, str(repo), "--out", str(out)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        assert any(out.iterdir())
    result = subprocess.run(
        [str(BIN / "deploykit"), "docker", str(repo), "--out", str(tmp_path / "ctx")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "--force" in result.stderr
