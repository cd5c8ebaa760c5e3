"""Pieces both training loops share: hyper-parameters, batch order, evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

#: Adam settings used by both frameworks (their defaults differ: torch eps=1e-8, Keras 1e-7).
ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-7


@dataclass(frozen=True)
class Hyper:
    """Training hyper-parameters, identical for both frameworks."""

    epochs: int
    batch_size: int
    lr: float
    seed: int


def epoch_orders(n_samples: int, hyper: Hyper) -> Iterator[np.ndarray]:
    """The sample order of every epoch, from the run's seed (not from either framework)."""
    rng = np.random.default_rng(hyper.seed)
    for _ in range(hyper.epochs):
        yield rng.permutation(n_samples)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean softmax cross-entropy, computed stably in float64."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())
