"""ResNet-50 v1.5 and BERT twins (small variants of the same architectures) compute the same function.

Tolerances: the small variants agree within 1e-5 (a handful of layers). The full-size twins were
measured once (closing note in benchmarks/RESULTS.md): ResNet-50 up to 3.3e-5 on logits of
magnitude ~2 (53 convolutions summed in different orders by oneDNN and PyTorch's kernels), hence the
architecture's 1e-4 export tolerance; BERT-base 3.9e-7.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deploykit.errors import UsageError
from deploykit.zoo import keras_models, torch_models
from deploykit.zoo.spec import BertSpec, ResNetSpec, make_spec, preset_spec, spec_from_dict, weight_map
from deploykit.zoo.transfer import keras_to_torch, torch_to_keras

SMALL = {
    "resnet50": preset_spec("resnet50", "small"),
    # Non-square image and deeper stages than the preset: a transposed filter or a mis-aligned
    # strided padding cannot hide behind symmetric shapes.
    "resnet50_wide": make_spec("resnet50", (40, 32, 3), 7, blocks=(2, 1, 2, 1), width=4),
    "bert": preset_spec("bert", "small"),
}
TOLERANCE = 1e-5


def _randomise_batch_norm(model: torch.nn.Module) -> None:
    """Fresh BatchNorm statistics are 0/1, which would hide a swapped mean/variance mapping."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)


def _torch(model, inputs: dict) -> np.ndarray:
    with torch.inference_mode():
        return model.eval()(*(torch.from_numpy(v) for v in inputs.values())).numpy()


def _keras(model, inputs: dict) -> np.ndarray:
    args = list(inputs.values())
    return np.asarray(model(args[0] if len(args) == 1 else args, training=False))


@pytest.mark.parametrize("name", SMALL)
def test_torch_to_keras_and_back(name: str) -> None:
    spec = SMALL[name]
    source = torch_models.build(spec, seed=1)
    _randomise_batch_norm(source)
    twin = keras_models.build(spec, seed=2)
    torch_to_keras(spec, source, twin)
    for batch in (1, 7):
        inputs = spec.example_inputs(batch, seed=batch)
        expected = _torch(source, inputs)
        assert expected.shape == (batch, spec.num_classes)
        assert np.max(np.abs(_keras(twin, inputs) - expected)) < TOLERANCE
    back = torch_models.build(spec, seed=3)
    keras_to_torch(spec, twin, back)
    for key, value in source.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(back.state_dict()[key], value), key


def test_padding_tokens_do_not_matter() -> None:
    """The attention mask works: what stands at masked positions changes nothing, in both twins."""
    spec = SMALL["bert"]
    model = torch_models.build(spec, seed=0)
    twin = keras_models.build(spec)
    torch_to_keras(spec, model, twin)
    inputs = spec.example_inputs(4, seed=0)
    changed = dict(inputs, input_ids=np.where(inputs["attention_mask"] == 0, 7, inputs["input_ids"]))
    assert (inputs["attention_mask"] == 0).any()
    for run in (_torch, _keras):
        m = model if run is _torch else twin
        np.testing.assert_allclose(run(m, changed), run(m, inputs), atol=1e-6)


def test_calibrated_batch_norm_statistics_are_seeded() -> None:
    spec = SMALL["resnet50"]
    a, b = torch_models.build(spec, seed=0), torch_models.build(spec, seed=0)
    torch_models.calibrate(a, spec, 0)
    torch_models.calibrate(b, spec, 0)
    assert torch.equal(a.stem.bn.running_var, b.stem.bn.running_var)
    assert not torch.equal(a.stem.bn.running_var, torch.ones_like(a.stem.bn.running_var))


def test_presets_and_specs() -> None:
    full = preset_spec("resnet50")
    assert isinstance(full, ResNetSpec) and full.input_shape == (224, 224, 3) and full.num_classes == 1000
    assert sum(p.numel() for p in torch_models.build(full).parameters()) == 25_557_032  # torchvision's resnet50
    bert = preset_spec("bert")
    assert isinstance(bert, BertSpec) and (bert.layers, bert.hidden, bert.heads, bert.input_shape) == (
        12,
        768,
        12,
        (128,),
    )
    assert [(t.name, t.dtype, t.shape) for t in bert.inputs()] == [
        ("input_ids", "int64", (None, 128)),
        ("attention_mask", "int64", (None, 128)),
    ]
    assert spec_from_dict(SMALL["resnet50_wide"].to_dict()) == SMALL["resnet50_wide"]
    for spec in SMALL.values():  # every tensor mapped exactly once (transfer checks it too)
        keys = [m.torch_key for m in weight_map(spec)]
        assert len(keys) == len(set(keys))
    with pytest.raises(UsageError, match="unknown size 'tiny'"):
        preset_spec("bert", "tiny")
    with pytest.raises(UsageError, match="at least 32x32"):
        make_spec("resnet50", (16, 16, 3), 10)
