"""Native Keras 3 (TensorFlow backend) training for a zoo twin (imports tensorflow/keras)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deploykit.zoo import keras_models  # sets KERAS_BACKEND=tensorflow before keras loads

keras = keras_models.keras

from deploykit.train.common import ADAM_BETAS, ADAM_EPSILON, Hyper, epoch_orders  # noqa: E402


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and TensorFlow; ask TensorFlow for deterministic ops."""
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def fit(
    model,
    x: np.ndarray,
    y: np.ndarray,
    hyper: Hyper,
    on_epoch: Callable[[int, float], None],
) -> list[float]:
    """Train ``model`` in place; returns the mean training loss of every epoch."""
    model.compile(
        optimizer=keras.optimizers.Adam(
            learning_rate=hyper.lr, beta_1=ADAM_BETAS[0], beta_2=ADAM_BETAS[1], epsilon=ADAM_EPSILON
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    losses: list[float] = []
    for epoch, order in enumerate(epoch_orders(len(x), hyper), start=1):
        # One fit() call per epoch over batches in the shared order (shuffle=False keeps it).
        history = model.fit(x[order], y[order], batch_size=hyper.batch_size, epochs=1, shuffle=False, verbose=0)
        losses.append(float(history.history["loss"][-1]))
        on_epoch(epoch, losses[-1])
    return losses


def predict(model, x: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
    """Logits of ``model`` in inference mode; ``x`` is one array or the named inputs in model order."""
    args = list(x.values()) if isinstance(x, dict) else [x]
    return np.asarray(model(args[0] if len(args) == 1 else args, training=False))


def parameter_count(model) -> int:
    """Trainable parameters (BatchNorm moving statistics excluded, as on the PyTorch side)."""
    return int(sum(np.prod(v.shape) for v in model.trainable_weights))


def save(model, path) -> None:
    """Write the native ``.keras`` archive."""
    model.save(str(path))
