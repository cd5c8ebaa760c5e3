"""Train the twins of one architecture on the same data with the same hyper-parameters.

Fairness rules, so the two results can be compared:

- one :class:`~deploykit.data.Dataset` split, shared by both frameworks;
- the same mini-batches in the same order: the per-epoch shuffle comes from numpy with the run's
  seed, not from either framework;
- when both frameworks train, the Keras twin starts from the PyTorch twin's initial weights
  (copied with :func:`deploykit.zoo.transfer.torch_to_keras`), so initialisation schemes
  (export-parity.md §5 #16) do not decide the comparison;
- Adam with the same learning rate, betas and epsilon, softmax cross-entropy on logits;
- test loss and accuracy computed by the same numpy code from each model's logits.

Each framework still trains natively (``torch.optim`` loop; Keras ``compile``/``fit``).
"""

from deploykit.train.run import (
    FRAMEWORKS,
    EpochCallback,
    FrameworkResult,
    TrainConfig,
    TrainReport,
    train,
)

__all__ = ["FRAMEWORKS", "EpochCallback", "FrameworkResult", "TrainConfig", "TrainReport", "train"]
