"""Training the twins through the Python API."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from deploykit.errors import DataError, UsageError
from deploykit.train import TrainConfig, train


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("train") / "mlp"
    epochs_seen: list[tuple[str, int]] = []
    report = train(
        TrainConfig(model="mlp", epochs=12, seed=0, out=out),
        on_epoch=lambda fw, epoch, total, loss: epochs_seen.append((fw, epoch)),
    )
    return out, report, epochs_seen


def test_both_twins_learn_digits(mlp_run) -> None:
    _, report, _ = mlp_run
    for fw in ("torch", "tf"):
        result = report.results[fw]
        assert result.test_accuracy >= 0.90, (fw, result.test_accuracy)
        assert result.train_loss_history[-1] < result.train_loss_history[0]
        assert result.parameters == 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    assert report.same_initial_weights
    assert report.prediction_agreement is not None and report.prediction_agreement >= 0.9


def test_outputs_on_disk(mlp_run) -> None:
    out, report, epochs_seen = mlp_run
    assert sorted(p.name for p in out.iterdir()) == [
        "model.keras",
        "model.safetensors",
        "spec.json",
        "train_report.json",
    ]
    saved = json.loads((out / "train_report.json").read_text())
    assert saved["results"]["torch"]["test_accuracy"] == report.results["torch"].test_accuracy
    assert saved["model"] == {"architecture": "mlp", "input_shape": [64], "num_classes": 10, "hidden": [128, 64]}
    assert set(load_file(out / "model.safetensors")) == {
        "hidden.0.weight",
        "hidden.0.bias",
        "hidden.1.weight",
        "hidden.1.bias",
        "classifier.weight",
        "classifier.bias",
    }
    assert epochs_seen == [("torch", e) for e in range(1, 13)] + [("tf", e) for e in range(1, 13)]
    # No staging directories left beside the output.
    assert [p.name for p in out.parent.iterdir()] == ["mlp"]


def test_checkpoints_reload_to_the_trained_models(mlp_run) -> None:
    import keras
    import torch

    from deploykit.data import load_dataset
    from deploykit.train.common import accuracy
    from deploykit.zoo import keras_models, torch_models  # noqa: F401  (registers custom layers)
    from deploykit.zoo.spec import spec_from_dict

    out, report, _ = mlp_run
    spec = spec_from_dict(json.loads((out / "spec.json").read_text()))
    data = load_dataset("digits", "mlp", seed=0)
    model = torch_models.build(spec)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in load_file(out / "model.safetensors").items()})
    with torch.inference_mode():
        torch_logits = model.eval()(torch.from_numpy(data.x_test)).numpy()
    keras_logits = np.asarray(keras.saving.load_model(out / "model.keras")(data.x_test, training=False))
    assert accuracy(torch_logits, data.y_test) == report.results["torch"].test_accuracy
    assert accuracy(keras_logits, data.y_test) == report.results["tf"].test_accuracy


def test_torch_training_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    runs = [
        train(TrainConfig(model="mlp", frameworks=("torch",), epochs=2, seed=7, out=tmp_path / str(i)))
        for i in range(2)
    ]
    assert runs[0].results["torch"].train_loss_history == runs[1].results["torch"].train_loss_history
    a, b = (load_file(tmp_path / str(i) / "model.safetensors") for i in range(2))
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["cnn", "transformer"])
def test_other_architectures_train_in_both_frameworks(tmp_path: Path, model: str) -> None:
    report = train(TrainConfig(model=model, epochs=3, out=tmp_path / model))
    for result in report.results.values():
        assert result.test_accuracy > 0.5, (model, result)
    assert (tmp_path / model / "model.keras").is_file()


def test_bad_data_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, X=np.zeros((10, 8, 8)), y=np.arange(10) % 2)  # rank 3: wrong for the MLP
    out = tmp_path / "out"
    with pytest.raises(DataError, match="rank 2"):
        train(TrainConfig(model="mlp", data=str(bad), out=out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz"]


def test_existing_output_is_kept_when_a_run_fails(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous run")
    with pytest.raises(UsageError, match="--epochs"):
        train(TrainConfig(epochs=-1, out=out))
    assert (out / "keep.txt").read_text() == "previous run"
