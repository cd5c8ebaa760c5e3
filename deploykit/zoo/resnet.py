"""ResNet-50 v1.5 weight correspondence between the twins (no framework imports).

Layer names, shared by :mod:`deploykit.zoo.torch_models` and :mod:`deploykit.zoo.keras_models`:
``stem`` (7x7 conv + BN), then per stage ``s`` and block ``b`` the bottleneck convs ``conv1..3``
with BatchNorms ``bn1..3`` and, in the first block of a stage, the projection shortcut
``down_conv``/``down_bn``; ``classifier`` last.
"""

from __future__ import annotations

from deploykit.zoo.spec import ResNetSpec, TensorMap, dense_maps


def block_names(spec: ResNetSpec) -> list[tuple[int, int, str, str]]:
    """(stage, block, PyTorch prefix, Keras prefix) of every bottleneck block, in order."""
    return [(s, b, f"stages.{s}.{b}", f"s{s}_b{b}") for s, count in enumerate(spec.blocks) for b in range(count)]


def _conv_bn(torch_conv: str, torch_bn: str, keras_conv: str, keras_bn: str) -> list[TensorMap]:
    return [
        TensorMap(f"{torch_conv}.weight", f"{keras_conv}/kernel", "conv2d"),
        TensorMap(f"{torch_bn}.weight", f"{keras_bn}/gamma"),
        TensorMap(f"{torch_bn}.bias", f"{keras_bn}/beta"),
        TensorMap(f"{torch_bn}.running_mean", f"{keras_bn}/moving_mean"),
        TensorMap(f"{torch_bn}.running_var", f"{keras_bn}/moving_variance"),
    ]


def resnet_weight_map(spec: ResNetSpec) -> list[TensorMap]:
    """Every conv kernel (no biases: BatchNorm follows each conv), BatchNorm and the classifier."""
    maps = _conv_bn("stem.conv", "stem.bn", "stem_conv", "stem_bn")
    for _, b, t, k in block_names(spec):
        for i in (1, 2, 3):
            maps += _conv_bn(f"{t}.conv{i}", f"{t}.bn{i}", f"{k}_conv{i}", f"{k}_bn{i}")
        if b == 0:
            maps += _conv_bn(f"{t}.down_conv", f"{t}.down_bn", f"{k}_down_conv", f"{k}_down_bn")
    return maps + dense_maps("classifier", "classifier")
