"""Small variants of resnet50 and bert, end to end: `train --epochs 0` writes seeded twins, every
format (AOTInductor and XLA SavedModels included) exports and validates, deploykit serve answers
each of them as its golden file says, and `profile` explains each one.

Slow: two AOTInductor compiles (~30 s each on 2 idle cores, minutes on a loaded machine), once
per module.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deploykit.cli import app
from deploykit.client import Client
from deploykit.errors import UsageError
from deploykit.export.golden import load_golden
from deploykit.repository import GOLDEN, MANIFEST, read_manifest
from deploykit.runtimes import load_runtime
from deploykit.runtimes.base import DEFAULT_SIGNATURE, Runtime, engine_label
from deploykit.server import ServerConfig, ServerThread
from deploykit.server.model_config import ModelConfig

pytestmark = pytest.mark.slow

MODELS = ("resnet50", "bert")
ARTIFACTS = (
    "torch-torchscript",
    "torch-pt2",
    "torch-aoti",
    "torch-onnx",
    "tf-savedmodel",
    "tf-onnx",
    "tf-savedmodel-xla",
)
runner = CliRunner()


@pytest.fixture(scope="module")
def big_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("big")
    repo = root / "models"
    for model in MODELS:
        run = root / "runs" / model
        result = runner.invoke(app, ["train", "--model", model, "--size", "small", "--epochs", "0", "--out", str(run)])
        assert result.exit_code == 0, result.output
        formats = [a for f in ("torchscript", "pt2", "aoti", "onnx", "savedmodel") for a in ("--format", f)]
        result = runner.invoke(app, ["export", str(run), "--repo", str(repo), *formats])
        assert result.exit_code == 0, result.output
        result = runner.invoke(
            app, ["export", str(run), "--repo", str(repo), "--framework", "tf", "--format", "savedmodel", "--xla"]
        )
        assert result.exit_code == 0, result.output
    return repo


def test_train_epochs_0_needs_no_data_and_refuses_training() -> None:
    result = runner.invoke(app, ["train", "--model", "bert", "--epochs", "2", "--out", "unused"])
    assert result.exit_code == 2 and "use --epochs 0" in result.output
    result = runner.invoke(app, ["train", "--model", "mlp", "--size", "small", "--out", "unused"])
    assert result.exit_code == 2 and "--size applies to resnet50 and bert" in result.output


@pytest.mark.parametrize("model", MODELS)
def test_every_format_exports_validates_and_records_its_runtime(big_repo: Path, model: str) -> None:
    assert sorted(p.name for p in big_repo.iterdir() if p.name.startswith(model)) == sorted(
        f"{model}-{a}" for a in ARTIFACTS
    )
    for artifact in ARTIFACTS:
        manifest = json.loads((big_repo / f"{model}-{artifact}" / "1" / MANIFEST).read_text())
        assert manifest["validation"]["passed"] is True
        assert manifest["validation"]["runtime_options"]["engine"]
    aoti = json.loads((big_repo / f"{model}-torch-aoti" / "1" / MANIFEST).read_text())
    assert aoti["artifact"] == "model.aoti.pt2" and aoti["converter"]["device"] == "cpu"
    assert aoti["converter"]["compile_s"] > 0 and aoti["converter"]["package_bytes"] > 0
    onnx_options = json.loads((big_repo / f"{model}-tf-onnx" / "1" / MANIFEST).read_text())["validation"]
    assert onnx_options["runtime_options"]["session_options"]["graph_optimization_level"] == "ORT_ENABLE_ALL"
    xla = json.loads((big_repo / f"{model}-tf-savedmodel-xla" / "1" / MANIFEST).read_text())
    assert xla["converter"]["jit_compile"] is True
    assert xla["validation"]["runtime_options"]["xla_jit_compile"] is True
    if model == "bert":
        signature = aoti["signature"]["inputs"]
        assert [(t["name"], t["dtype"]) for t in signature] == [("input_ids", "int64"), ("attention_mask", "int64")]


def test_aoti_runtime_contract(big_repo: Path) -> None:
    """tests/runtimes/test_contract.py's contract, for the AOTInductor runtime."""
    version_dir = big_repo / "bert-torch-aoti" / "1"
    manifest = read_manifest(version_dir)
    runtime = load_runtime("aoti", version_dir / manifest.artifact, manifest.signature)
    try:
        assert isinstance(runtime, Runtime) and runtime.advisory_shapes is False
        assert runtime.signature == runtime.signatures[DEFAULT_SIGNATURE]
        description = runtime.describe()
        assert json.loads(json.dumps(description)) == description
        assert description["engine"] == "torch.aoti" and description["device"] == "cpu"
        assert engine_label(description) == manifest.validation.runtime
        for inputs, expected in load_golden(version_dir / GOLDEN).values():
            for got in (runtime.predict(inputs), runtime.predict(inputs, DEFAULT_SIGNATURE)):
                np.testing.assert_allclose(got["logits"], expected["logits"], atol=1e-5, rtol=1e-5)
        with pytest.raises(UsageError, match="no signature 'nope'"):
            runtime.predict(inputs, "nope")
    finally:
        runtime.close()


def test_every_format_serves_its_golden_outputs(big_repo: Path) -> None:
    models = [ModelConfig(p.name, p) for p in sorted(big_repo.iterdir())]
    with (
        ServerThread(ServerConfig(models=models, grpc_port=0, rest_port=None)) as server,
        Client(server.grpc_target) as client,
    ):
        for config in models:
            golden = load_golden(config.base_path / "1" / GOLDEN)
            tolerance = 1e-4 if config.name.startswith("resnet50") else 1e-5
            for inputs, expected in golden.values():
                got = client.predict(config.name, inputs)
                np.testing.assert_allclose(got["logits"], expected["logits"], atol=tolerance, rtol=tolerance)
            # Batch 1: torch.export traced at batch 2; batch 1 must work too.
            one = {k: v[:1] for k, v in golden[2][0].items()}
            assert client.predict(config.name, one)["logits"].shape[0] == 1


@pytest.mark.parametrize(
    "artifact", ["resnet50-tf-onnx", "resnet50-torch-aoti", "bert-torch-torchscript", "bert-tf-savedmodel"]
)
def test_profile_names_top_operators_and_threads(big_repo: Path, artifact: str) -> None:
    result = runner.invoke(app, ["profile", str(big_repo / artifact), "--runs", "2", "--warmup", "1", "--json"])
    assert result.exit_code == 0, result.output
    profile = json.loads(result.stdout[result.stdout.index("{") :])
    assert profile["ops"] and profile["wall_ms_per_run"] > 0 and profile["threads"]
    if artifact == "resnet50-tf-onnx":
        assert any(op["op"] in ("Conv", "FusedConv") for op in profile["ops"])
        assert profile["threads"]["intra_op_num_threads"] >= 1


def test_profile_refuses_what_is_not_an_export(tmp_path: Path) -> None:
    result = runner.invoke(app, ["profile", str(tmp_path)])
    assert result.exit_code == 2 and "expected a model directory" in result.output
