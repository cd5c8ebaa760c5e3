"""PyTorch builds of the zoo architectures (imports torch).

Module and parameter names follow :func:`deploykit.zoo.spec.weight_map`. Every model takes the
canonical, framework-neutral input of its spec (see :mod:`deploykit.zoo.spec`) and returns logits.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from deploykit.zoo.spec import ArchSpec, BertSpec, CNNSpec, MLPSpec, ResNetSpec, TransformerSpec


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

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``bias`` (broadcastable to (B, heads, T, T)) is added to the attention scores."""
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
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


class ConvBN(nn.Module):
    """Conv (no bias: BatchNorm follows) + BatchNorm; padding k//2 as torchvision's ResNet."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, eps: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride here: v1.5) -> 1x1 convs, each with BatchNorm; projection shortcut."""

    def __init__(self, cin: int, width: int, cout: int, stride: int, eps: float) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width, eps=eps)
        self.conv2 = nn.Conv2d(width, width, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width, eps=eps)
        self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout, eps=eps)
        self.project = stride != 1 or cin != cout
        if self.project:
            self.down_conv = nn.Conv2d(cin, cout, 1, stride, bias=False)
            self.down_bn = nn.BatchNorm2d(cout, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        shortcut = self.down_bn(self.down_conv(x)) if self.project else x
        return F.relu(h + shortcut)


class ResNet(nn.Module):
    """ResNet v1.5 over a channels-last image (see :class:`~deploykit.zoo.spec.ResNetSpec`)."""

    def __init__(self, spec: ResNetSpec) -> None:
        super().__init__()
        eps, widths = spec.bn_epsilon, spec.stage_widths()
        self.stem = ConvBN(spec.input_shape[2], spec.width, 7, 2, eps)
        stages, cin = [], spec.width
        for s, count in enumerate(spec.blocks):
            cout = widths[s] * spec.expansion
            blocks = [
                Bottleneck(cin if b == 0 else cout, widths[s], cout, 2 if b == 0 and s else 1, eps)
                for b in range(count)
            ]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.classifier = nn.Linear(cin, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)  # canonical NHWC input -> PyTorch's NCHW
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2, padding=1)
        for stage in self.stages:
            x = stage(x)
        return self.classifier(x.mean(dim=(2, 3)))


class BertLayer(nn.Module):
    """Post-LN encoder layer: norm(x + attn(x)), then norm(x + ff2(gelu(ff1(x))))."""

    def __init__(self, spec: BertSpec) -> None:
        super().__init__()
        self.attn = SelfAttention(spec.hidden, spec.heads)
        self.attn_norm = nn.LayerNorm(spec.hidden, eps=spec.ln_epsilon)
        self.ff1 = nn.Linear(spec.hidden, spec.intermediate)
        self.ff2 = nn.Linear(spec.intermediate, spec.hidden)
        self.ff_norm = nn.LayerNorm(spec.hidden, eps=spec.ln_epsilon)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = self.attn_norm(x + self.attn(x, bias))
        return self.ff_norm(x + self.ff2(F.gelu(self.ff1(x))))


class BertClassifier(nn.Module):
    """BERT encoder + tanh pooler over the first token + classifier (see :class:`BertSpec`)."""

    def __init__(self, spec: BertSpec) -> None:
        super().__init__()
        self.mask_value = spec.mask_value
        self.word_embeddings = nn.Embedding(spec.vocab, spec.hidden)
        self.position = nn.Parameter(torch.zeros(spec.input_shape[0], spec.hidden))
        self.embed_norm = nn.LayerNorm(spec.hidden, eps=spec.ln_epsilon)
        self.layers = nn.ModuleList(BertLayer(spec) for _ in range(spec.layers))
        self.pooler = nn.Linear(spec.hidden, spec.hidden)
        self.classifier = nn.Linear(spec.hidden, spec.num_classes)
        for module in self.modules():  # BERT's initialisation: N(0, 0.02) weights, zero biases
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.position, std=0.02)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embed_norm(self.word_embeddings(input_ids) + self.position)
        # Additive mask over keys, (B, 1, 1, T): mask_value where attention_mask == 0, as Keras adds it.
        bias = (attention_mask == 0).to(x.dtype)[:, None, None, :] * self.mask_value
        for layer in self.layers:
            x = layer(x, bias)
        return self.classifier(torch.tanh(self.pooler(x[:, 0])))


_BUILDERS: dict[type[ArchSpec], type[nn.Module]] = {
    MLPSpec: MLP,
    CNNSpec: CNN,
    TransformerSpec: TransformerClassifier,
    ResNetSpec: ResNet,
    BertSpec: BertClassifier,
}


@torch.no_grad()
def calibrate(model: nn.Module, spec: ArchSpec, seed: int, batches: int = 2, batch_size: int = 8) -> None:
    """Give an untrained model realistic BatchNorm statistics: the running mean and variance of its
    own activations over seeded example inputs (fresh 0/1 statistics make a deep ResNet's
    activations grow block after block, which no trained model does). A no-op without BatchNorm."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        return
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration batches
    model.train()
    for i in range(batches):
        args = [torch.from_numpy(v) for v in spec.example_inputs(batch_size, seed + i).values()]
        model(*args)
    for norm in norms:
        norm.momentum = 0.1
    model.eval()


def build(spec: ArchSpec, seed: int | None = None) -> nn.Module:
    """A freshly initialised PyTorch twin of ``spec`` (deterministic when ``seed`` is given)."""
    if seed is not None:
        torch.manual_seed(seed)
    return _BUILDERS[type(spec)](spec)
