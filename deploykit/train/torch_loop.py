"""Native PyTorch training loop for a zoo twin (imports torch)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from deploykit.train.common import ADAM_BETAS, ADAM_EPSILON, Hyper, epoch_orders


def seed_everything(seed: int) -> None:
    """Seed torch and ask for deterministic kernels where torch has them."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def fit(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    hyper: Hyper,
    on_epoch: Callable[[int, float], None],
) -> list[float]:
    """Train ``model`` in place; returns the mean training loss of every epoch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=hyper.lr, betas=ADAM_BETAS, eps=ADAM_EPSILON)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    losses: list[float] = []
    model.train()
    for epoch, order in enumerate(epoch_orders(len(x), hyper), start=1):
        total, seen = 0.0, 0
        for start in range(0, len(order), hyper.batch_size):
            idx = torch.from_numpy(order[start : start + hyper.batch_size])
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        losses.append(total / seen)
        on_epoch(epoch, losses[-1])
    model.eval()
    return losses


@torch.inference_mode()
def predict(model: nn.Module, x: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
    """Logits of ``model`` in eval mode; ``x`` is one array or the named inputs in model order."""
    model.eval()
    args = list(x.values()) if isinstance(x, dict) else [x]
    return model(*(torch.from_numpy(a) for a in args)).numpy()


def parameter_count(model: nn.Module) -> int:
    """Trainable parameters (buffers such as BatchNorm statistics excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save(model: nn.Module, path) -> None:
    """Write the state dict as safetensors (no pickle: safe to load from untrusted sources)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path))
