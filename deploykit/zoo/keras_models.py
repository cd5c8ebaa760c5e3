"""Keras 3 (TensorFlow backend) builds of the zoo architectures (imports keras/tensorflow).

Layer and variable names follow :func:`deploykit.zoo.spec.weight_map`. Every model takes the
canonical input of its spec and returns logits; its input layer is named ``x``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

# The Keras twin is the TensorFlow twin: a user's KERAS_BACKEND=torch must not turn it into a
# second PyTorch model. Set before keras is imported anywhere in the process.
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from deploykit.quiet import native_output_captured  # noqa: E402

with native_output_captured():  # TensorFlow's import-time oneDNN/CUDA notices
    import keras
    from keras import layers, ops

from deploykit.zoo.resnet import block_names  # noqa: E402
from deploykit.zoo.spec import ArchSpec, BertSpec, CNNSpec, MLPSpec, ResNetSpec, TransformerSpec  # noqa: E402


@keras.saving.register_keras_serializable(package="deploykit")
class PositionEmbedding(layers.Layer):
    """Adds a learned (tokens, d_model) position table to a token sequence."""

    def __init__(self, tokens: int, d_model: int, **kwargs):
        super().__init__(**kwargs)
        self.tokens, self.d_model = tokens, d_model
        self.embedding = self.add_weight(
            name="embedding",
            shape=(tokens, d_model),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )

    def call(self, x):
        return x + ops.cast(self.embedding, x.dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "tokens": self.tokens, "d_model": self.d_model}


@keras.saving.register_keras_serializable(package="deploykit")
class ExactGelu(layers.Layer):
    """Exact GELU, ``0.5 x (1 + erf(x / sqrt 2))``, as PyTorch's default ``F.gelu``.

    Keras's built-in exact ``gelu`` lowers to TensorFlow's ``Erfc``, which tf2onnx cannot convert
    (no ONNX op); ``Erf`` converts. Never the tanh approximation (export-parity.md §5 #15).
    """

    def call(self, x):
        return 0.5 * x * (1.0 + ops.erf(x * (1.0 / math.sqrt(2.0))))


def _mlp(spec: MLPSpec, x):
    for i, width in enumerate(spec.hidden):
        x = layers.Dense(width, activation="relu", name=f"hidden_{i}")(x)
    return x


def _cnn(spec: CNNSpec, x):
    for i, channels in enumerate(spec.channels):
        x = layers.Conv2D(channels, spec.kernel_size, padding="same", name=f"conv_{i}")(x)
        # Keras momentum is the weight of the *old* statistic: 0.9 == PyTorch's momentum=0.1.
        x = layers.BatchNormalization(epsilon=spec.bn_epsilon, momentum=0.9, name=f"bn_{i}")(x)
        x = layers.ReLU(name=f"relu_{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool_{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    return layers.Dense(spec.dense, activation="relu", name="dense")(x)


def _transformer(spec: TransformerSpec, x):
    tokens, _ = spec.input_shape
    x = layers.Dense(spec.d_model, name="embed")(x)
    x = PositionEmbedding(tokens, spec.d_model, name="position")(x)
    for i in range(spec.layers):
        k = f"block_{i}"
        h = layers.LayerNormalization(epsilon=spec.ln_epsilon, name=f"{k}_norm1")(x)
        h = layers.MultiHeadAttention(spec.heads, spec.head_dim, name=f"{k}_attn")(h, h)
        x = layers.Add(name=f"{k}_add1")([x, h])
        h = layers.LayerNormalization(epsilon=spec.ln_epsilon, name=f"{k}_norm2")(x)
        h = layers.Dense(spec.ff, name=f"{k}_ff1")(h)
        h = ExactGelu(name=f"{k}_gelu")(h)
        h = layers.Dense(spec.d_model, name=f"{k}_ff2")(h)
        x = layers.Add(name=f"{k}_add2")([x, h])
    x = layers.LayerNormalization(epsilon=spec.ln_epsilon, name="norm")(x)
    return layers.GlobalAveragePooling1D(name="pool")(x)


def _conv_bn(spec: ResNetSpec, x, filters: int, kernel: int, stride: int, name: str, bn: str):
    """Conv (no bias) + BatchNorm. Strided convs pad k//2 on every side explicitly, as PyTorch does:
    Keras's 'same' would pad only at the end for even inputs and shift every output pixel."""
    if stride > 1 and kernel > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    padding = "valid" if stride > 1 or kernel == 1 else "same"
    x = layers.Conv2D(filters, kernel, stride, padding=padding, use_bias=False, name=name)(x)
    return layers.BatchNormalization(epsilon=spec.bn_epsilon, momentum=0.9, name=bn)(x)


def _resnet(spec: ResNetSpec, x):
    x = layers.ReLU(name="stem_relu")(_conv_bn(spec, x, spec.width, 7, 2, "stem_conv", "stem_bn"))
    # Zero padding equals PyTorch's -inf padding here: after the ReLU every value is >= 0.
    x = layers.MaxPooling2D(3, 2, name="stem_pool")(layers.ZeroPadding2D(1, name="stem_pool_pad")(x))
    widths = spec.stage_widths()
    for s, b, _, k in block_names(spec):
        width, stride = widths[s], 2 if b == 0 and s else 1
        cout = width * spec.expansion
        h = layers.ReLU(name=f"{k}_relu1")(_conv_bn(spec, x, width, 1, 1, f"{k}_conv1", f"{k}_bn1"))
        h = layers.ReLU(name=f"{k}_relu2")(_conv_bn(spec, h, width, 3, stride, f"{k}_conv2", f"{k}_bn2"))
        h = _conv_bn(spec, h, cout, 1, 1, f"{k}_conv3", f"{k}_bn3")
        if b == 0 and (stride != 1 or x.shape[-1] != cout):
            x = _conv_bn(spec, x, cout, 1, stride, f"{k}_down_conv", f"{k}_down_bn")
        x = layers.ReLU(name=f"{k}_out")(layers.Add(name=f"{k}_add")([h, x]))
    return layers.GlobalAveragePooling2D(name="pool")(x)


def _bert(spec: BertSpec, input_ids, attention_mask):
    tokens = spec.input_shape[0]
    x = layers.Embedding(spec.vocab, spec.hidden, name="word_embeddings")(input_ids)
    x = PositionEmbedding(tokens, spec.hidden, name="position")(x)
    x = layers.LayerNormalization(epsilon=spec.ln_epsilon, name="embed_norm")(x)
    # (B, 1, T): every query attends to the unmasked keys; MultiHeadAttention adds -1e9 elsewhere.
    mask = ops.expand_dims(ops.not_equal(attention_mask, 0), 1)
    for i in range(spec.layers):
        k = f"layer_{i}"
        h = layers.MultiHeadAttention(spec.heads, spec.head_dim, name=f"{k}_attn")(x, x, attention_mask=mask)
        x = layers.LayerNormalization(epsilon=spec.ln_epsilon, name=f"{k}_attn_norm")(x + h)
        h = ExactGelu(name=f"{k}_gelu")(layers.Dense(spec.intermediate, name=f"{k}_ff1")(x))
        h = layers.Dense(spec.hidden, name=f"{k}_ff2")(h)
        x = layers.LayerNormalization(epsilon=spec.ln_epsilon, name=f"{k}_ff_norm")(x + h)
    return layers.Dense(spec.hidden, activation="tanh", name="pooler")(x[:, 0])


_BODIES: dict[type[ArchSpec], Callable[..., Any]] = {
    MLPSpec: _mlp,
    CNNSpec: _cnn,
    TransformerSpec: _transformer,
    ResNetSpec: _resnet,
    BertSpec: _bert,
}


def build(spec: ArchSpec, seed: int | None = None) -> keras.Model:
    """A freshly initialised Keras twin of ``spec`` (deterministic when ``seed`` is given).

    Its inputs are named and typed as ``spec.inputs()`` (``x`` for most architectures)."""
    if seed is not None:
        keras.utils.set_random_seed(seed)
    inputs = []
    for t in spec.inputs():
        assert t.shape is not None  # ArchSpec.inputs() always declares the rank (batch dimension first)
        inputs.append(keras.Input(shape=t.shape[1:], dtype=t.dtype, name=t.name))
    features = _BODIES[type(spec)](spec, *inputs)
    logits = layers.Dense(spec.num_classes, name="classifier")(features)
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs, logits, name=f"deploykit_{spec.name}")
