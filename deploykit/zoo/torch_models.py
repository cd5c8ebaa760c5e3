"""PyTorch builds of the zoo architectures (imports torch).

Module and parameter names follow :func:`deploykit.zoo.spec.weight_map`. Every model takes the
canonical, framework-neutral input of its spec (see :mod:`deploykit.zoo.spec`) and returns logits.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from deploykit.zoo.spec import ArchSpec, CNNSpec, MLPSpec, TransformerSpec


class MLP(nn.Module):
    """Linear/ReLU stack and a linear classifier."""

    def __init__(self, spec: MLPSpec) -> None:
        super().__init__()
        widths = (spec.input_shape[0], *spec.hidden)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:], strict=False))
        self.classifier = nn.Linear(widths[-1], spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = F.relu(layer(x))
        return self.classifier(x)


class CNN(nn.Module):
    """Conv/BN/ReLU/max-pool blocks over a channels-last image."""

    def __init__(self, spec: CNNSpec) -> None:
        super().__init__()
        channels = (spec.input_shape[2], *spec.channels)
        # Stride-1 'same' padding agrees with Keras for odd kernels (export-parity.md §5 #8).
        self.conv = nn.ModuleList(
            nn.Conv2d(a, b, spec.kernel_size, padding="same") for a, b in zip(channels, channels[1:], strict=False)
        )
        self.bn = nn.ModuleList(nn.BatchNorm2d(c, eps=spec.bn_epsilon) for c in spec.channels)
        h, w, c = spec.flat_hwc()
        self.dense = nn.Linear(c * h * w, spec.dense)
        self.classifier = nn.Linear(spec.dense, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)  # canonical NHWC input -> PyTorch's NCHW
        for conv, bn in zip(self.conv, self.bn, strict=True):
            x = F.max_pool2d(F.relu(bn(conv(x))), 2)
        x = torch.flatten(x, 1)  # (C, H, W) order; the weight map permutes dense rows for Keras
        return self.classifier(F.relu(self.dense(x)))


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate query/key/value/output projections."""

    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.output = nn.Linear(d_model, d_model)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, heads*head_dim) -> (B, heads, T, head_dim); no explicit batch size, so exports
        # keep the batch dimension dynamic.
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        attended = F.scaled_dot_product_attention(q, k, v)
        return self.output(attended.transpose(1, 2).flatten(-2))


class EncoderBlock(nn.Module):
    """Pre-LN Transformer block: x + attn(norm1(x)), then x + ff2(gelu(ff1(norm2(x))))."""

    def __init__(self, spec: TransformerSpec) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(spec.d_model, eps=spec.ln_epsilon)
        self.attn = SelfAttention(spec.d_model, spec.heads)
        self.norm2 = nn.LayerNorm(spec.d_model, eps=spec.ln_epsilon)
        self.ff1 = nn.Linear(spec.d_model, spec.ff)
        self.ff2 = nn.Linear(spec.ff, spec.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        # Exact (erf) GELU on both twins; never the tanh approximation (export-parity.md §5 #15).
        return x + self.ff2(F.gelu(self.ff1(self.norm2(x))))


class TransformerClassifier(nn.Module):
    """Token embedding + learned positions, encoder blocks, final norm, mean pooling, classifier."""

    def __init__(self, spec: TransformerSpec) -> None:
        super().__init__()
        tokens, features = spec.input_shape
        self.embed = nn.Linear(features, spec.d_model)
        self.position = nn.Parameter(torch.randn(tokens, spec.d_model) * 0.02)
        self.blocks = nn.ModuleList(EncoderBlock(spec) for _ in range(spec.layers))
        self.norm = nn.LayerNorm(spec.d_model, eps=spec.ln_epsilon)
        self.classifier = nn.Linear(spec.d_model, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x) + self.position
        for block in self.blocks:
            x = block(x)
        return self.classifier(self.norm(x).mean(dim=1))


_BUILDERS: dict[type[ArchSpec], type[nn.Module]] = {
    MLPSpec: MLP,
    CNNSpec: CNN,
    TransformerSpec: TransformerClassifier,
}


def build(spec: ArchSpec, seed: int | None = None) -> nn.Module:
    """A freshly initialised PyTorch twin of ``spec`` (deterministic when ``seed`` is given)."""
    if seed is not None:
        torch.manual_seed(seed)
    return _BUILDERS[type(spec)](spec)
