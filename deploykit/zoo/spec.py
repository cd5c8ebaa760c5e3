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
=============  ==================  ============================================================

:func:`weight_map` lists, for one spec, which PyTorch ``state_dict`` tensor fills which Keras
variable and through which layout transform (see :mod:`deploykit.zoo.transfer`). It is written out
tensor by tensor on purpose: mapping by iteration order or reshaping until shapes fit hides exactly
the bugs (flatten order, kernel layout) that twin tests exist to catch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from deploykit.errors import UsageError


@dataclass(frozen=True)
class ArchSpec:
    """Common fields of every architecture. Subclasses add hyper-parameters."""

    #: Registry name (``mlp``, ``cnn``, ``transformer``); set by each subclass.
    name: ClassVar[str] = ""
    #: Rank of one sample (without the batch dimension) the architecture consumes.
    sample_rank: ClassVar[int] = 0
    #: Human-readable description of one sample, used in error messages.
    sample_layout: ClassVar[str] = ""

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


ARCHITECTURES: dict[str, type[ArchSpec]] = {cls.name: cls for cls in (MLPSpec, CNNSpec, TransformerSpec)}


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


def _dense(torch_prefix: str, keras_layer: str) -> list[TensorMap]:
    return [
        TensorMap(f"{torch_prefix}.weight", f"{keras_layer}/kernel", "linear"),
        TensorMap(f"{torch_prefix}.bias", f"{keras_layer}/bias"),
    ]


def _layer_norm(torch_prefix: str, keras_layer: str) -> list[TensorMap]:
    return [
        TensorMap(f"{torch_prefix}.weight", f"{keras_layer}/gamma"),
        TensorMap(f"{torch_prefix}.bias", f"{keras_layer}/beta"),
    ]


def weight_map(spec: ArchSpec) -> list[TensorMap]:
    """The complete tensor-by-tensor correspondence for ``spec``.

    Names on the PyTorch side are ``state_dict`` keys of :func:`deploykit.zoo.torch_models.build`;
    on the Keras side they are variable paths (``layer/variable``) of
    :func:`deploykit.zoo.keras_models.build`. Both builders name their layers to match this table.
    """
    if isinstance(spec, MLPSpec):
        maps = [m for i in range(len(spec.hidden)) for m in _dense(f"hidden.{i}", f"hidden_{i}")]
        return maps + _dense("classifier", "classifier")

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
        return maps + _dense("classifier", "classifier")

    if isinstance(spec, TransformerSpec):
        maps = _dense("embed", "embed") + [TensorMap("position", "position/embedding")]
        for i in range(spec.layers):
            t, k = f"blocks.{i}", f"block_{i}"
            maps += _layer_norm(f"{t}.norm1", f"{k}_norm1")
            for proj in ("query", "key", "value"):
                maps += [
                    TensorMap(f"{t}.attn.{proj}.weight", f"{k}_attn/{proj}/kernel", "split_heads_in", (spec.heads,)),
                    TensorMap(f"{t}.attn.{proj}.bias", f"{k}_attn/{proj}/bias", "split_heads_bias", (spec.heads,)),
                ]
            maps += [
                TensorMap(
                    f"{t}.attn.output.weight", f"{k}_attn/attention_output/kernel", "split_heads_out", (spec.heads,)
                ),
                TensorMap(f"{t}.attn.output.bias", f"{k}_attn/attention_output/bias"),
            ]
            maps += _layer_norm(f"{t}.norm2", f"{k}_norm2")
            maps += _dense(f"{t}.ff1", f"{k}_ff1") + _dense(f"{t}.ff2", f"{k}_ff2")
        return maps + _layer_norm("norm", "norm") + _dense("classifier", "classifier")

    raise UsageError(f"no weight map for architecture {spec.name!r}")
