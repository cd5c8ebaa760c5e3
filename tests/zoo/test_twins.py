"""The PyTorch and Keras twins compute the same function once weights are transferred."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deploykit.errors import UsageError, WeightTransferError
from deploykit.zoo import keras_models, torch_models
from deploykit.zoo.spec import TensorMap, make_spec, spec_from_dict, weight_map
from deploykit.zoo.transfer import keras_to_torch, torch_to_keras

SPECS = {
    "mlp": make_spec("mlp", (64,), 10),
    "cnn": make_spec("cnn", (8, 8, 1), 10),
    # Non-square image and several input channels, so a transposed spatial filter or a wrong
    # flatten order cannot hide behind symmetric shapes.
    "cnn_rgb": make_spec("cnn", (12, 8, 3), 5),
    "transformer": make_spec("transformer", (8, 8), 10),
}
BATCH_SIZES = (1, 7)
TOLERANCE = 1e-5


def _randomise_batch_norm(model: torch.nn.Module) -> None:
    """Fresh BatchNorm statistics are 0/1, which would hide a swapped mean/variance mapping."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1.0, 1.0)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)


def _torch_logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model.eval()(torch.from_numpy(x)).numpy()


def _inputs(spec, batch: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, *spec.input_shape)).astype(np.float32)


@pytest.mark.parametrize("name", SPECS)
def test_torch_to_keras_outputs_agree(name: str) -> None:
    spec = SPECS[name]
    source = torch_models.build(spec, seed=1)
    _randomise_batch_norm(source)
    twin = keras_models.build(spec, seed=2)
    before = np.asarray(twin(_inputs(spec, 3, 0), training=False))

    torch_to_keras(spec, source, twin)

    for batch in BATCH_SIZES:
        x = _inputs(spec, batch, seed=batch)
        expected = _torch_logits(source, x)
        got = np.asarray(twin(x, training=False))
        assert got.shape == expected.shape == (batch, spec.num_classes)
        assert np.max(np.abs(got - expected)) < TOLERANCE
    # The transfer really changed the Keras model (a no-op transfer must not pass).
    assert np.max(np.abs(before - np.asarray(twin(_inputs(spec, 3, 0), training=False)))) > 1e-3


@pytest.mark.parametrize("name", SPECS)
def test_keras_to_torch_outputs_agree_and_round_trip_is_exact(name: str) -> None:
    spec = SPECS[name]
    source = keras_models.build(spec, seed=3)
    target = torch_models.build(spec, seed=4)

    keras_to_torch(spec, source, target)

    for batch in BATCH_SIZES:
        x = _inputs(spec, batch, seed=10 + batch)
        expected = np.asarray(source(x, training=False))
        assert np.max(np.abs(_torch_logits(target, x) - expected)) < TOLERANCE
    # torch -> keras -> torch reproduces every tensor bit for bit: the transforms are inverses.
    back = keras_models.build(spec, seed=5)
    torch_to_keras(spec, target, back)
    again = torch_models.build(spec, seed=6)
    keras_to_torch(spec, back, again)
    for key, value in target.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


@pytest.mark.parametrize("name", SPECS)
def test_twins_have_the_same_trainable_parameter_count(name: str) -> None:
    spec = SPECS[name]
    torch_count = sum(p.numel() for p in torch_models.build(spec).parameters())
    keras_count = sum(int(np.prod(v.shape)) for v in keras_models.build(spec).trainable_weights)
    assert torch_count == keras_count


def test_map_missing_a_tensor_is_refused() -> None:
    spec = SPECS["mlp"]
    incomplete = weight_map(spec)[:-1]
    with pytest.raises(WeightTransferError, match="classifier.bias.*no counterpart"):
        torch_to_keras(spec, torch_models.build(spec), keras_models.build(spec), maps=incomplete)


def test_tensor_used_twice_is_refused() -> None:
    spec = SPECS["mlp"]
    maps = weight_map(spec)
    duplicated = maps[:-1] + [TensorMap("classifier.weight", "classifier/bias")]
    with pytest.raises(WeightTransferError, match="mapped 2 times"):
        torch_to_keras(spec, torch_models.build(spec), keras_models.build(spec), maps=duplicated)


def test_wrong_layout_is_refused_not_reshaped() -> None:
    """A conv kernel copied without its layout transform has the wrong shape: no silent fit."""
    spec = SPECS["cnn"]
    maps = [TensorMap(m.torch_key, m.keras_path) if m.transform == "conv2d" else m for m in weight_map(spec)]
    twin = keras_models.build(spec, seed=0)
    before = [v.numpy().copy() for v in twin.weights]
    with pytest.raises(WeightTransferError, match=r"conv\.0\.weight \(16, 1, 3, 3\).*\(3, 3, 1, 16\)"):
        torch_to_keras(spec, torch_models.build(spec), twin, maps=maps)
    # Nothing was assigned: a failed transfer leaves the destination untouched.
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, twin.weights, strict=True))


def test_flatten_order_matters() -> None:
    """Copying the dense weight after Flatten as a plain transpose gives different outputs."""
    spec = SPECS["cnn_rgb"]
    naive = [
        TensorMap(m.torch_key, m.keras_path, "linear") if m.transform == "linear_after_flatten_chw" else m
        for m in weight_map(spec)
    ]
    source = torch_models.build(spec, seed=0)
    twin = keras_models.build(spec)
    torch_to_keras(spec, source, twin, maps=naive)  # shapes fit, so only numerics can tell
    x = _inputs(spec, 4, seed=0)
    assert np.max(np.abs(_torch_logits(source, x) - np.asarray(twin(x, training=False)))) > 1e-3


def test_spec_round_trips_through_json_form() -> None:
    for spec in SPECS.values():
        assert spec_from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    ("name", "shape", "message"),
    [
        ("mlp", (8, 8), r"expects samples of shape \(features,\)"),
        ("cnn", (8, 8), r"\(height, width, channels\)"),
        ("cnn", (1, 1, 1), "too small"),
        ("rnn", (8,), "unknown model 'rnn'"),
    ],
)
def test_bad_specs_are_usage_errors(name: str, shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        make_spec(name, shape, 10)
