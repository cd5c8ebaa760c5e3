"""Architecture specs of the twin zoo, and the per-tensor weight map between the twins.

An :class:`ArchSpec` is everything needed to build the same network in either framework: the input
shape of one sample, the number of classes and the architecture's hyper-parameters. It is plain data
(JSON round-trippable) so a checkpoint directory can record it and an exporter can rebuild the model
without importing the training code.

The canonical input of every architecture is framework-neutral and identical for both twins, so one
payload drives every deploy path:

=============  ==================  ============================================================
architecture   sample shape        meaning
=============  ==================  ============================================================
``mlp``        ``(F,)``            a feature vector
``cnn``        ``(H, W, C)``       an image, channels-last; the PyTorch twin permutes to NCHW
``transformer````(T, F)``          a sequence of T tokens with F features each
``resnet50``   ``(H, W, C)``       an image, channels-last (ResNet-50 v1.5; 224x224x3 at full size)
``bert``       ``(T,)`` twice      ``input_ids`` and ``attention_mask``, int64 (BERT-base encoder)
=============  ==================  ============================================================

``resnet50`` and ``bert`` are realistic architectures with a size knob (:data:`SIZES`): ``full`` is
the published size, ``small`` the same structure with fewer blocks and narrower layers, for tests.

:func:`weight_map` lists, for one spec, which PyTorch ``state_dict`` tensor fills which Keras
variable and through which layout transform (see :mod:`deploykit.zoo.transfer`). It is written out
tensor by tensor on purpose: mapping by iteration order or reshaping until shapes fit hides exactly
the bugs (flatten order, kernel layout) that twin tests exist to catch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np

from deploykit.errors import UsageError
from deploykit.tensors import TensorSpec


@dataclass(frozen=True)
class ArchSpec:
    """Common fields of every architecture. Subclasses add hyper-parameters."""

    #: Registry name (``mlp``, ``cnn``, ``transformer``); set by each subclass.
    name: ClassVar[str] = ""
    #: Rank of one sample (without the batch dimension) the architecture consumes.
    sample_rank: ClassVar[int] = 0
    #: Human-readable description of one sample, used in error messages.
    sample_layout: ClassVar[str] = ""
    #: (atol, rtol) an export or a twin of this architecture must meet against its source.
    parity_tolerance: ClassVar[tuple[float, float]] = (1e-5, 1e-5)

    input_shape: tuple[int, ...]
    num_classes: int

    def __post_init__(self) -> None:
        shape = tuple(int(d) for d in self.input_shape)
        object.__setattr__(self, "input_shape", shape)
        if len(shape) != self.sample_rank or any(d <= 0 for d in shape):
            raise UsageError(
                f"model {self.name!r} expects samples of shape {self.sample_layout} "
                f"(rank {self.sample_rank}, positive sizes), got {shape}"
            )
        if self.num_classes < 2:
            raise UsageError(f"model {self.name!r} needs at least 2 classes, got {self.num_classes}")

    def inputs(self) -> tuple[TensorSpec, ...]:
        """The model's inputs with a dynamic batch dimension: one float32 ``x`` unless overridden."""
        return (TensorSpec("x", "float32", (None, *self.input_shape)),)

    def example_inputs(self, batch: int, seed: int) -> dict[str, np.ndarray]:
        """Seeded inputs the model is meant to see (standard normal floats unless overridden)."""
        rng = np.random.default_rng([seed, batch])
        return {"x": rng.standard_normal((batch, *self.input_shape)).astype(np.float32)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; :func:`spec_from_dict` reverses it."""
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        return {"architecture": self.name, **data}


@dataclass(frozen=True)
class MLPSpec(ArchSpec):
    """Fully connected network: Linear/ReLU blocks and a linear classifier."""

    name: ClassVar[str] = "mlp"
    sample_rank: ClassVar[int] = 1
    sample_layout: ClassVar[str] = "(features,)"

    hidden: tuple[int, ...] = (128, 64)


@dataclass(frozen=True)
class CNNSpec(ArchSpec):
    """Small ConvNet: [conv 3x3 'same' -> batch norm -> ReLU -> max-pool 2x2] x N, dense, classifier."""

    name: ClassVar[str] = "cnn"
    sample_rank: ClassVar[int] = 3
    sample_layout: ClassVar[str] = "(height, width, channels)"

    channels: tuple[int, ...] = (16, 32)
    kernel_size: int = 3
    dense: int = 64
    #: Set on both twins: Keras (1e-3) and PyTorch (1e-5) defaults differ (export-parity.md §5 #10).
    bn_epsilon: float = 1e-5

    def __post_init__(self) -> None:
        super().__post_init__()
        self.flat_hwc()  # rejects images too small for the pooling stages

    def flat_hwc(self) -> tuple[int, int, int]:
        """(H, W, C) of the feature map that is flattened into the dense layer."""
        height, width, _ = self.input_shape
        for _ in self.channels:
            height, width = height // 2, width // 2
        if height < 1 or width < 1:
            raise UsageError(
                f"model 'cnn' halves the image {len(self.channels)} times; input {self.input_shape[:2]} is too small"
            )
        return height, width, self.channels[-1]


@dataclass(frozen=True)
class TransformerSpec(ArchSpec):
    """Pre-LN Transformer encoder classifier: token embedding + learned positions, N blocks of
    multi-head self-attention and a GELU feed-forward, final layer norm, mean pooling, classifier."""

    name: ClassVar[str] = "transformer"
    sample_rank: ClassVar[int] = 2
    sample_layout: ClassVar[str] = "(tokens, features)"

    d_model: int = 32
    heads: int = 4
    layers: int = 2
    ff: int = 64
    #: Set on both twins: Keras (1e-3) and PyTorch (1e-5) defaults differ (export-parity.md §5 #11).
    ln_epsilon: float = 1e-5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.d_model % self.heads:
            raise UsageError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads


@dataclass(frozen=True)
class ResNetSpec(ArchSpec):
    """ResNet v1.5 (torchvision's ``resnet50``): 7x7/2 stem, 3x3/2 max-pool, stages of bottleneck
    blocks (1x1 -> 3x3 -> 1x1 x4, BatchNorm after every conv, stride 2 in the 3x3 conv: the
    "v1.5" change), projection shortcuts, global average pooling, classifier.

    ``blocks`` (depth) and ``width`` (channels of the first stage's 3x3 convs) are the size knob.
    """

    name: ClassVar[str] = "resnet50"
    sample_rank: ClassVar[int] = 3
    sample_layout: ClassVar[str] = "(height, width, channels)"
    #: 53 convolutions of up to 4608-term float32 dot products, summed in a different order by each
    #: framework and converter (fused Conv+BN in ONNX Runtime, oneDNN in TensorFlow): measured up to
    #: 3.3e-5 on logits of magnitude ~2 between the full-size twins; 1e-4 leaves a 3x margin.
    parity_tolerance: ClassVar[tuple[float, float]] = (1e-4, 1e-4)

    blocks: tuple[int, ...] = (3, 4, 6, 3)
    width: int = 64
    expansion: int = 4
    bn_epsilon: float = 1e-5

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.input_shape[:2]) < 32 or not self.blocks or min(self.blocks) < 1 or self.width < 1:
            raise UsageError(
                f"resnet50 needs images of at least 32x32 (it downsamples 32x), at least one block per stage "
                f"and a positive width; got input {self.input_shape}, blocks {self.blocks}, width {self.width}"
            )

    def stage_widths(self) -> list[int]:
        """Bottleneck (3x3 conv) channels per stage; a block outputs ``expansion`` times as many."""
        return [self.width * 2**i for i in range(len(self.blocks))]


@dataclass(frozen=True)
class BertSpec(ArchSpec):
    """BERT encoder classifier (post-LN, as the original): word + learned position embeddings,
    LayerNorm, N blocks of [self-attention with a padding mask, add & norm, exact-GELU feed-forward,
    add & norm], tanh pooler over the first token, classifier.

    Inputs are ``input_ids`` and ``attention_mask`` (int64, ``(T,)`` per sample; mask != 0 means
    "attend"). Left out of BERT-base on purpose: token-type (segment) embeddings (one segment) and
    position rows beyond ``T`` (never used at a fixed sequence length).
    """

    name: ClassVar[str] = "bert"
    sample_rank: ClassVar[int] = 1
    sample_layout: ClassVar[str] = "(tokens,)"

    vocab: int = 30522
    hidden: int = 768
    layers: int = 12
    heads: int = 12
    intermediate: int = 3072
    ln_epsilon: float = 1e-12
    #: Added to the attention scores of masked keys, in both twins (Keras's own masking constant).
    mask_value: float = -1e9

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden % self.heads:
            raise UsageError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def inputs(self) -> tuple[TensorSpec, ...]:
        tokens = self.input_shape[0]
        return (
            TensorSpec("input_ids", "int64", (None, tokens)),
            TensorSpec("attention_mask", "int64", (None, tokens)),
        )

    def example_inputs(self, batch: int, seed: int) -> dict[str, np.ndarray]:
        """Token ids below ``vocab`` and right-padded masks (each sample at least one token long)."""
        rng = np.random.default_rng([seed, batch])
        tokens = self.input_shape[0]
        lengths = rng.integers(1, tokens + 1, size=batch)
        return {
            "input_ids": rng.integers(0, self.vocab, size=(batch, tokens)).astype(np.int64),
            "attention_mask": (np.arange(tokens)[None, :] < lengths[:, None]).astype(np.int64),
        }


ARCHITECTURES: dict[str, type[ArchSpec]] = {
    cls.name: cls for cls in (MLPSpec, CNNSpec, TransformerSpec, ResNetSpec, BertSpec)
}

#: Size presets of the realistic architectures: (input shape, classes, hyper-parameters).
SIZES: dict[str, dict[str, tuple[tuple[int, ...], int, dict[str, Any]]]] = {
    "resnet50": {
        "full": ((224, 224, 3), 1000, {}),
        "small": ((32, 32, 3), 10, {"blocks": (1, 1, 1, 1), "width": 8}),
    },
    "bert": {
        "full": ((128,), 2, {}),
        "small": ((16,), 2, {"vocab": 1000, "hidden": 64, "layers": 2, "heads": 4, "intermediate": 128}),
    },
}


def preset_spec(name: str, size: str = "full") -> ArchSpec:
    """The ``size`` preset (``full`` or ``small``) of a realistic architecture (:data:`SIZES`)."""
    if name not in SIZES:
        raise UsageError(f"model {name!r} has no size presets; those that do: {', '.join(SIZES)}")
    try:
        shape, classes, hyper = SIZES[name][size]
    except KeyError:
        raise UsageError(f"unknown size {size!r} for {name}; expected one of: {', '.join(SIZES[name])}") from None
    return make_spec(name, shape, classes, **hyper)


def make_spec(name: str, input_shape: tuple[int, ...], num_classes: int, **hyper: Any) -> ArchSpec:
    """Build the spec of architecture ``name`` for samples of ``input_shape``."""
    try:
        cls = ARCHITECTURES[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; expected one of: {', '.join(sorted(ARCHITECTURES))}") from None
    return cls(input_shape=tuple(input_shape), num_classes=num_classes, **hyper)


def spec_from_dict(data: dict[str, Any]) -> ArchSpec:
    """Inverse of :meth:`ArchSpec.to_dict` (lists become tuples again)."""
    data = dict(data)
    name = data.pop("architecture")
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return make_spec(name, **fields)


# --------------------------------------------------------------------------------------------------
# Weight correspondence between the twins
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorMap:
    """One PyTorch tensor ⇄ one Keras variable, and the layout transform between them.

    ``transform`` names a function pair in :mod:`deploykit.zoo.transfer`; ``args`` parametrise it
    (e.g. the number of heads, or the (C, H, W) of a flattened feature map).
    """

    torch_key: str
    keras_path: str
    transform: str = "identity"
    args: tuple[int, ...] = field(default=())


#: PyTorch state-dict entries that have no Keras counterpart and carry no weights.
IGNORED_TORCH_SUFFIXES = (".num_batches_tracked",)


def dense_maps(torch_prefix: str, keras_layer: str) -> list[TensorMap]:
    return [
        TensorMap(f"{torch_prefix}.weight", f"{keras_layer}/kernel", "linear"),
        TensorMap(f"{torch_prefix}.bias", f"{keras_layer}/bias"),
    ]


def layer_norm_maps(torch_prefix: str, keras_layer: str) -> list[TensorMap]:
    return [
        TensorMap(f"{torch_prefix}.weight", f"{keras_layer}/gamma"),
        TensorMap(f"{torch_prefix}.bias", f"{keras_layer}/beta"),
    ]


def attention_maps(torch_prefix: str, keras_layer: str, heads: int) -> list[TensorMap]:
    """deploykit's ``SelfAttention`` (PyTorch) <-> ``keras.layers.MultiHeadAttention``."""
    maps = []
    for proj in ("query", "key", "value"):
        maps += [
            TensorMap(f"{torch_prefix}.{proj}.weight", f"{keras_layer}/{proj}/kernel", "split_heads_in", (heads,)),
            TensorMap(f"{torch_prefix}.{proj}.bias", f"{keras_layer}/{proj}/bias", "split_heads_bias", (heads,)),
        ]
    return maps + [
        TensorMap(
            f"{torch_prefix}.output.weight", f"{keras_layer}/attention_output/kernel", "split_heads_out", (heads,)
        ),
        TensorMap(f"{torch_prefix}.output.bias", f"{keras_layer}/attention_output/bias"),
    ]


def weight_map(spec: ArchSpec) -> list[TensorMap]:
    """The complete tensor-by-tensor correspondence for ``spec``.

    Names on the PyTorch side are ``state_dict`` keys of :func:`deploykit.zoo.torch_models.build`;
    on the Keras side they are variable paths (``layer/variable``) of
    :func:`deploykit.zoo.keras_models.build`. Both builders name their layers to match this table.
    """
    if isinstance(spec, MLPSpec):
        maps = [m for i in range(len(spec.hidden)) for m in dense_maps(f"hidden.{i}", f"hidden_{i}")]
        return maps + dense_maps("classifier", "classifier")

    if isinstance(spec, CNNSpec):
        maps = []
        for i in range(len(spec.channels)):
            maps += [
                TensorMap(f"conv.{i}.weight", f"conv_{i}/kernel", "conv2d"),
                TensorMap(f"conv.{i}.bias", f"conv_{i}/bias"),
                TensorMap(f"bn.{i}.weight", f"bn_{i}/gamma"),
                TensorMap(f"bn.{i}.bias", f"bn_{i}/beta"),
                TensorMap(f"bn.{i}.running_mean", f"bn_{i}/moving_mean"),
                TensorMap(f"bn.{i}.running_var", f"bn_{i}/moving_variance"),
            ]
        h, w, c = spec.flat_hwc()
        # PyTorch flattens NCHW as (C, H, W); Keras flattens NHWC as (H, W, C) (export-parity.md §5 #7).
        maps += [
            TensorMap("dense.weight", "dense/kernel", "linear_after_flatten_chw", (c, h, w)),
            TensorMap("dense.bias", "dense/bias"),
        ]
        return maps + dense_maps("classifier", "classifier")

    if isinstance(spec, TransformerSpec):
        maps = dense_maps("embed", "embed") + [TensorMap("position", "position/embedding")]
        for i in range(spec.layers):
            t, k = f"blocks.{i}", f"block_{i}"
            maps += layer_norm_maps(f"{t}.norm1", f"{k}_norm1")
            maps += attention_maps(f"{t}.attn", f"{k}_attn", spec.heads)
            maps += layer_norm_maps(f"{t}.norm2", f"{k}_norm2")
            maps += dense_maps(f"{t}.ff1", f"{k}_ff1") + dense_maps(f"{t}.ff2", f"{k}_ff2")
        return maps + layer_norm_maps("norm", "norm") + dense_maps("classifier", "classifier")

    if isinstance(spec, ResNetSpec):
        from deploykit.zoo.resnet import resnet_weight_map

        return resnet_weight_map(spec)

    if isinstance(spec, BertSpec):
        from deploykit.zoo.bert import bert_weight_map

        return bert_weight_map(spec)

    raise UsageError(f"no weight map for architecture {spec.name!r}")
