"""`deploykit export` / `deploykit validate` through the CLI: user models, failures, versions, tampering."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import TFSERVING_TESTDATA
from typer.testing import CliRunner

from deploykit.cli import app
from deploykit.export import convert as convert_module
from deploykit.export.golden import load_golden, save_golden
from deploykit.repository import GOLDEN, MANIFEST

runner = CliRunner()

USER_MODEL = textwrap.dedent(
    '''
    import torch
    from torch import nn


    class TwoHeads(nn.Module):
        """A user model with two inputs and two outputs."""

        def __init__(self):
            super().__init__()
            self.body = nn.Linear(6, 8)
            self.scores = nn.Linear(8, 3)
            self.value = nn.Linear(8, 1)

        def forward(self, features, bias):
            hidden = torch.tanh(self.body(features) + bias)
            return self.scores(hidden), self.value(hidden)


    def build():
        return TwoHeads()


    def broken():
        raise RuntimeError("cannot build: missing vocabulary")


    class FixedBatch(nn.Module):
        """Hard-codes batch size 2: traces fine at 2, fails at any other batch size."""

        def forward(self, x):
            return x.reshape(2, -1).sum(dim=1, keepdim=True)


    def fixed_batch():
        return FixedBatch()
    '''
)


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An importable user module and a weights file for it (safetensors)."""
    import torch
    from safetensors.torch import save_file

    (tmp_path / "usermodels.py").write_text(USER_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module("usermodels")
    torch.manual_seed(0)
    save_file(module.build().state_dict(), str(tmp_path / "weights.safetensors"))
    return tmp_path


def _export(*args: str):
    return runner.invoke(app, ["export", *args])


def test_user_factory_exports_and_validates(user_package: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    result = _export(
        "usermodels:build",
        "--weights",
        str(user_package / "weights.safetensors"),
        "--name",
        "twoheads",
        "--input",
        "features:float32[-1,6]",
        "--input",
        "bias:float32[-1,8]",
        "--output",
        "scores",
        "--output",
        "value",
        "--repo",
        str(repo),
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and {a["name"] for a in report["artifacts"]} == {
        "twoheads-torch-torchscript",
        "twoheads-torch-pt2",
        "twoheads-torch-onnx",
    }
    manifest = json.loads((repo / "twoheads-torch-onnx" / "1" / MANIFEST).read_text())
    assert [t["name"] for t in manifest["signature"]["outputs"]] == ["scores", "value"]
    assert manifest["source"]["weights_sha256"]
    result = runner.invoke(app, ["validate", str(repo)])
    assert result.exit_code == 0, result.output


def test_keras_file_exports(tmp_path: Path, zoo_runs) -> None:
    repo = tmp_path / "repo"
    result = _export(str(zoo_runs["mlp"] / "model.keras"), "--name", "kmlp", "--repo", str(repo), "--json")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in repo.iterdir()) == ["kmlp-tf-onnx", "kmlp-tf-savedmodel"]


def test_reference_savedmodel_exports_to_onnx(tmp_path: Path) -> None:
    """A TF1 SavedModel produced by TF Serving's own tooling (shared testdata)."""
    source = TFSERVING_TESTDATA / "saved_model_half_plus_two_cpu" / "00000123"
    repo = tmp_path / "repo"
    result = _export(str(source), "--name", "hp2", "--repo", str(repo), "--json")
    assert result.exit_code == 0, result.output
    golden = load_golden(repo / "hp2-tf-onnx" / "1" / GOLDEN)
    for inputs, outputs in golden.values():
        np.testing.assert_allclose(outputs["y"], inputs["x"] * 0.5 + 2, rtol=1e-6)


def _perturb_onnx(path: Path) -> None:
    """Add 0.01 to one weight of an ONNX model (the first float initializer with data)."""
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        array = onnx.numpy_helper.to_array(init)
        if array.dtype == np.float32 and array.size > 1:
            array = array.copy()
            array.flat[0] += 0.01
            init.CopyFrom(onnx.numpy_helper.from_array(array, init.name))
            break
    onnx.save(model, str(path))


def test_perturbed_artifact_fails_export_and_is_not_published(
    zoo_runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = convert_module.CONVERTERS[("torch", "onnx")]

    def perturbed(source, dest, opset):
        converted = original(source, dest, opset)
        _perturb_onnx(dest / converted.artifact)
        return converted

    monkeypatch.setitem(convert_module.CONVERTERS, ("torch", "onnx"), perturbed)
    repo = tmp_path / "repo"
    result = _export(str(zoo_runs["mlp"]), "--framework", "torch", "--repo", str(repo))
    assert result.exit_code == 1
    assert "mlp-torch-onnx: validation failed" in result.output
    assert not (repo / "mlp-torch-onnx").exists()  # nothing published, no staging left
    assert (repo / "mlp-torch-pt2" / "1" / MANIFEST).is_file()  # the good artifacts are

    result = _export(
        str(zoo_runs["mlp"]), "--framework", "torch", "--format", "onnx", "--repo", str(repo), "--allow-mismatch"
    )
    assert result.exit_code == 1
    manifest = json.loads((repo / "mlp-torch-onnx" / "1" / MANIFEST).read_text())
    assert manifest["validation"]["passed"] is False
    # The manifest records by how much it failed.
    assert max(row["needed_atol"] for row in manifest["validation"]["outputs"]) > 1e-5  # > atol: by how much


def test_converter_failure_midway_leaves_nothing(zoo_runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crashes(source, dest, opset):
        (dest / "model.onnx").write_bytes(b"half a model")
        raise RuntimeError("converter crashed")

    monkeypatch.setitem(convert_module.CONVERTERS, ("tf", "onnx"), crashes)
    repo = tmp_path / "repo"
    result = _export(str(zoo_runs["mlp"]), "--framework", "tf", "--format", "onnx", "--repo", str(repo))
    assert result.exit_code == 1
    assert "mlp-tf-onnx: RuntimeError while converting: converter crashed" in result.output
    assert not repo.exists() or not any(repo.rglob("*"))


def test_versions_increment_and_are_never_overwritten(zoo_runs, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    args = [str(zoo_runs["mlp"]), "--framework", "torch", "--format", "torchscript", "--repo", str(repo)]
    assert _export(*args).exit_code == 0
    assert _export(*args).exit_code == 0
    assert sorted(p.name for p in (repo / "mlp-torch-torchscript").iterdir()) == ["1", "2"]
    before = (repo / "mlp-torch-torchscript" / "1" / MANIFEST).read_text()
    result = _export(*args, "--version", "1")
    assert result.exit_code == 2 and "already exists; versions are never overwritten" in result.output
    assert (repo / "mlp-torch-torchscript" / "1" / MANIFEST).read_text() == before
    assert _export(*args, "--version", "7").exit_code == 0
    assert sorted(p.name for p in (repo / "mlp-torch-torchscript").iterdir()) == ["1", "2", "7"]


@pytest.fixture
def one_export(zoo_runs, tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    result = _export(str(zoo_runs["cnn"]), "--framework", "torch", "--format", "onnx", "--repo", str(repo))
    assert result.exit_code == 0, result.output
    return repo / "cnn-torch-onnx" / "1"


def test_validate_detects_a_changed_weight(one_export: Path) -> None:
    assert runner.invoke(app, ["validate", str(one_export)]).exit_code == 0
    _perturb_onnx(one_export / "model.onnx")
    result = runner.invoke(app, ["validate", str(one_export), "--json"])
    assert result.exit_code == 1
    (outcome,) = json.loads(result.stdout)
    assert outcome["file_problems"][0].startswith("model.onnx: sha256")
    assert not all(row["passed"] for row in outcome["parity"])  # the numbers show it too


def test_validate_detects_a_tampered_golden_file(one_export: Path) -> None:
    shutil.copy(one_export / GOLDEN, one_export.parent / "golden-copy.npz")
    cases = load_golden(one_export / GOLDEN)
    cases[2][1]["logits"] = cases[2][1]["logits"] + 1.0
    save_golden(one_export / GOLDEN, cases)
    result = runner.invoke(app, ["validate", str(one_export)])
    assert result.exit_code == 1
    assert "golden.npz: sha256" in result.output


def test_validate_against_golden_from_elsewhere(one_export: Path, tmp_path: Path) -> None:
    same = tmp_path / "same.npz"
    shutil.copy(one_export / GOLDEN, same)
    assert runner.invoke(app, ["validate", str(one_export), "--against", str(same)]).exit_code == 0
    cases = load_golden(same)
    cases[7][1]["logits"] = cases[7][1]["logits"] * 1.01
    other = tmp_path / "other.npz"
    save_golden(other, cases)
    result = runner.invoke(app, ["validate", str(one_export), "--against", str(other), "--json"])
    assert result.exit_code == 1
    failed = [row for row in json.loads(result.stdout)[0]["parity"] if not row["passed"]]
    assert [row["batch_size"] for row in failed] == [7]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["usermodels:broken", "--input", "x:float32[-1,6]"],
            1,
            "raised RuntimeError: cannot build: missing vocabulary",
        ),
        (["usermodels:nope", "--input", "x:float32[-1,6]"], 1, "cannot import factory"),
        (
            [
                "usermodels:build",
                "--input",
                "features:float32[-1,6]",
                "--input",
                "bias:float32[-1,8]",
                "--weights",
                "missing.safetensors",
            ],
            1,
            "does not exist",
        ),
        (
            [
                "usermodels:build",
                "--input",
                "features:float32[-1,6]",
                "--input",
                "bias:float32[-1,8]",
                "--weights",
                "wrong.safetensors",
            ],
            1,
            "do not fit the model",
        ),
        (["usermodels:build"], 2, "needs its input signature"),
        (["usermodels:build", "--input", "x:float33[-1,6]"], 2, "unknown dtype 'float33'"),
        (["usermodels:build", "--input", "x:float32(-1,6)"], 2, "cannot parse tensor spec"),
        (
            [
                "usermodels:build",
                "--input",
                "features:float32[-1,6]",
                "--input",
                "bias:float32[-1,8]",
                "--format",
                "savedmodel",
            ],
            2,
            "none of the formats",
        ),
        (
            [
                "usermodels:build",
                "--input",
                "features:float32[-1,6]",
                "--input",
                "bias:float32[-1,8]",
                "--format",
                "tflite",
            ],
            2,
            "unknown format",
        ),
        (["usermodels:build", "--batch-sizes", "4"], 2, "at least two different"),
        (["no/such/dir"], 2, "cannot export"),
    ],
)
def test_bad_input_gives_a_precise_error(
    user_package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args, code: int, message: str
) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"body.weight": torch.zeros(3, 3)}, str(user_package / "wrong.safetensors"))
    monkeypatch.chdir(user_package)
    result = _export(*args, "--repo", str(tmp_path / "repo"))
    assert result.exit_code == code, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").rglob("*.onnx"))


def test_op_the_converter_cannot_handle_is_named(tmp_path: Path) -> None:
    """Keras's built-in exact GELU lowers to TensorFlow's Erfc, which tf2onnx leaves unconverted
    (it 'succeeds' with continue_on_error); export must fail and name the op."""
    from deploykit.zoo.keras_models import keras

    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, keras.layers.Activation("gelu")(keras.layers.Dense(3)(inputs)))
    model.save(tmp_path / "gelu.keras")
    repo = tmp_path / "repo"
    result = _export(str(tmp_path / "gelu.keras"), "--format", "onnx", "--repo", str(repo))
    assert result.exit_code == 1
    assert "gelu-tf-onnx: the converter left ops that have no ONNX equivalent: Erfc x1" in " ".join(
        result.output.split()
    )
    assert not repo.exists() or not any(repo.rglob("*"))


def test_artifact_that_fails_at_the_second_batch_size_is_reported(user_package: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    result = _export(
        "usermodels:fixed_batch", "--input", "x:float32[-1,3]", "--format", "torchscript", "--repo", str(repo), "--json"
    )
    assert result.exit_code == 1
    (artifact,) = json.loads(result.stdout)["artifacts"]
    assert artifact["error"].startswith("fixed_batch-torch-torchscript: RuntimeError while validating")
    assert not repo.exists() or not any(repo.rglob("*.pt"))
