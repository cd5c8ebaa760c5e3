"""``deploykit triton-deploy`` on the exported zoo: Triton's layout, config.pbtxt files that parse
with Triton's own ModelConfig message (the one tritonclient ships), field by field, and the exact
tritonserver / docker command lines. (Triton itself cannot be installed here; the launcher test
uses a stand-in.)

(This directory is not named ``triton``: tests/ is on sys.path, and torch would take a ``triton``
namespace package there for OpenAI's Triton compiler and fail importing ``triton.language``.)"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
from google.protobuf import text_format
from typer.testing import CliRunner

from deploykit.cli import app
from deploykit.server.model_config import VersionPolicy
from deploykit.triton import repository
from deploykit.triton.repository import Options

mc = pytest.importorskip("tritonclient.grpc.model_config_pb2")

pytestmark = pytest.mark.slow  # needs the exported zoo (session fixture)


@pytest.fixture(scope="module")
def mlp_repo(exported_zoo, tmp_path_factory) -> Path:
    """The MLP's exports only (every format), as links: a small repository with every case."""
    zoo, _ = exported_zoo
    root = tmp_path_factory.mktemp("triton") / "models"
    for model in sorted(zoo.iterdir()):
        if model.name.startswith("mlp-"):
            root.mkdir(parents=True, exist_ok=True)
            (root / model.name).symlink_to(model, target_is_directory=True)
    return root


def _config(out: Path, name: str):
    return text_format.Parse((out / "models" / name / "config.pbtxt").read_text(), mc.ModelConfig())


def test_layout_skips_and_configs_parse_with_tritons_message(mlp_repo, tmp_path) -> None:
    plan = repository.plan(mlp_repo, Options(preferred_batch_sizes=(4,), max_queue_delay_microseconds=250))
    written = repository.write(plan, tmp_path / "triton")
    out = written.out
    assert sorted(m.name for m in plan.models) == ["mlp-tf-onnx", "mlp-torch-onnx", "mlp-torch-torchscript"]
    skipped = "\n".join(plan.skipped)
    assert "mlp-tf-savedmodel v1: SavedModel: Triton deprecated its TensorFlow backend in 25.03" in skipped
    assert "mlp-torch-pt2 v1: torch.export program run eagerly" in skipped
    onnx_file = out / "models" / "mlp-torch-onnx" / "1" / "model.onnx"
    assert os.stat(onnx_file).st_ino == os.stat(mlp_repo / "mlp-torch-onnx" / "1" / "model.onnx").st_ino  # hard link
    assert (out / "models" / "mlp-torch-torchscript" / "1" / "model.pt").is_file()

    config = _config(out, "mlp-torch-onnx")
    assert (config.name, config.platform, config.max_batch_size) == ("mlp-torch-onnx", "onnxruntime_onnx", 8)
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [("x", mc.TYPE_FP32, [64])]
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [("logits", mc.TYPE_FP32, [10])]
    assert list(config.dynamic_batching.preferred_batch_size) == [4]
    assert config.dynamic_batching.max_queue_delay_microseconds == 250
    assert [(g.kind, g.count) for g in config.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, 1)]
    assert config.version_policy.latest.num_versions == 1
    (warmup,) = config.model_warmup
    assert (warmup.batch_size, warmup.count) == (1, 1)
    sample = warmup.inputs["x"]
    assert (sample.data_type, list(sample.dims), sample.input_data_file) == (mc.TYPE_FP32, [64], "x")
    assert (out / "models" / "mlp-torch-onnx" / "warmup" / "x").stat().st_size == 64 * 4
    assert _config(out, "mlp-torch-torchscript").platform == "pytorch_libtorch"


def test_gpu_tensorrt_tensorflow_and_version_policy(mlp_repo, tmp_path) -> None:
    options = Options(
        policy=VersionPolicy("all"),
        gpu=True,
        instance_count=2,
        tensorrt="FP16",
        allow_tensorflow=True,
        dynamic_batching=False,
    )
    plan = repository.plan(mlp_repo, options, only=("mlp-torch-onnx", "mlp-tf-savedmodel"))
    assert any("TensorFlow backend" in w for w in plan.warnings)
    out = repository.write(plan, tmp_path / "gpu").out
    config = _config(out, "mlp-torch-onnx")
    assert [(g.kind, g.count) for g in config.instance_group] == [(mc.ModelInstanceGroup.KIND_GPU, 2)]
    (trt,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert trt.name == "tensorrt" and trt.parameters["precision_mode"] == "FP16"
    assert config.version_policy.HasField("all") and not config.HasField("dynamic_batching")
    assert config.max_batch_size == 8
    saved = _config(out, "mlp-tf-savedmodel")
    assert saved.platform == "tensorflow_savedmodel"
    assert (out / "models" / "mlp-tf-savedmodel" / "1" / "model.savedmodel" / "saved_model.pb").is_file()
    assert not saved.optimization.execution_accelerators.gpu_execution_accelerator  # TensorRT is ONNX Runtime's


def test_cli_prints_the_exact_commands(mlp_repo, tmp_path) -> None:
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app, ["triton-deploy", str(mlp_repo), "--out", str(out), "--triton-version", "25.02", "--gpu"]
    )
    assert result.exit_code == 0, result.output
    repo_path = f"{out.resolve()}/models"
    binary, docker = result.stdout.strip().splitlines()
    assert shlex.split(binary) == [
        "tritonserver",
        f"--model-repository={repo_path}",
        "--http-port=8000",
        "--grpc-port=8001",
        "--metrics-port=8002",
        "--model-control-mode=none",
        "--strict-readiness=true",
    ]
    assert shlex.split(docker) == [
        "docker", "run", "--rm", "--gpus=all",
        "-p", "8000:8000", "-p", "8001:8001", "-p", "8002:8002",
        "-v", f"{repo_path}:/models:ro",
        "nvcr.io/nvidia/tritonserver:25.02-py3",
        "tritonserver", "--model-repository=/models", "--http-port=8000", "--grpc-port=8001",
        "--metrics-port=8002", "--model-control-mode=none", "--strict-readiness=true",
    ]  # fmt: skip
    run_sh = (out / "run.sh").read_text()
    assert binary in run_sh and docker in run_sh and os.access(out / "run.sh", os.X_OK)
    assert "skipped mlp-torch-pt2 v1" in result.stderr
    again = CliRunner().invoke(app, ["triton-deploy", str(mlp_repo), "--out", str(out)])
    assert again.exit_code == 2 and "give --force" in again.stderr
    bad = CliRunner().invoke(app, ["triton-deploy", str(mlp_repo), "--out", str(tmp_path / "x"), "--tensorrt", "FP16"])
    assert bad.exit_code == 2 and "--tensorrt needs --gpu" in bad.stderr
