"""Copy weights between the PyTorch and Keras twins by the explicit map of :func:`weight_map`.

Rules (export-parity.md §5, "recommended transfer procedure"):

- mapping is by name, never by iteration order;
- every source tensor is used exactly once and every destination variable is filled exactly once;
- a layout transform changes layout only (transpose, or splitting an axis into heads / (C, H, W)
  whose factors the spec defines); its result must have the destination's shape exactly, otherwise
  the transfer fails: nothing is reshaped to force a fit.

This module imports neither framework; it works on ``state_dict()`` tensors and Keras variables.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from deploykit.errors import WeightTransferError
from deploykit.zoo.spec import IGNORED_TORCH_SUFFIXES, ArchSpec, TensorMap, weight_map

Array = np.ndarray


def _need_rank(a: Array, rank: int, what: str) -> None:
    if a.ndim != rank:
        raise WeightTransferError(f"{what} expects a rank-{rank} tensor, got shape {a.shape}")


def _split_last(a: Array, parts: int) -> tuple[int, int]:
    if a.shape[-1] % parts:
        raise WeightTransferError(f"axis of size {a.shape[-1]} does not split into {parts} heads")
    return parts, a.shape[-1] // parts


def _flatten_to_hwc(w: Array, c: int, h: int, w_: int) -> Array:
    _need_rank(w, 2, "linear_after_flatten_chw")
    if w.shape[1] != c * h * w_:
        raise WeightTransferError(f"dense input of {w.shape[1]} features is not C*H*W = {c}*{h}*{w_}")
    # Rows of a PyTorch dense weight follow (C, H, W); Keras's Flatten yields (H, W, C).
    return w.reshape(-1, c, h, w_).transpose(0, 2, 3, 1).reshape(w.shape[0], -1).T


def _flatten_to_chw(k: Array, c: int, h: int, w_: int) -> Array:
    _need_rank(k, 2, "linear_after_flatten_chw")
    if k.shape[0] != c * h * w_:
        raise WeightTransferError(f"dense input of {k.shape[0]} features is not H*W*C = {h}*{w_}*{c}")
    return k.T.reshape(-1, h, w_, c).transpose(0, 3, 1, 2).reshape(k.shape[1], -1)


# name -> (PyTorch layout -> Keras layout, Keras layout -> PyTorch layout)
_TRANSFORMS: dict[str, tuple[Callable[..., Array], Callable[..., Array]]] = {
    "identity": (lambda a: a, lambda a: a),
    # Linear weight (out, in) <-> Dense kernel (in, out)
    "linear": (lambda w: w.T, lambda k: k.T),
    # Conv2d weight (out, in, kh, kw) <-> Conv2D kernel (kh, kw, in, out); never a plain .T
    "conv2d": (lambda w: w.transpose(2, 3, 1, 0), lambda k: k.transpose(3, 2, 0, 1)),
    "linear_after_flatten_chw": (_flatten_to_hwc, _flatten_to_chw),
    # q/k/v Linear weight (heads*head_dim, d) <-> MultiHeadAttention kernel (d, heads, head_dim)
    "split_heads_in": (
        lambda w, heads: w.T.reshape(w.shape[1], *_split_last(w.T, heads)),
        lambda k, heads: k.reshape(k.shape[0], heads * k.shape[2]).T,
    ),
    # q/k/v bias (heads*head_dim,) <-> (heads, head_dim)
    "split_heads_bias": (
        lambda b, heads: b.reshape(_split_last(b, heads)),
        lambda b, heads: b.reshape(-1),
    ),
    # output Linear weight (d, heads*head_dim) <-> attention_output kernel (heads, head_dim, d)
    "split_heads_out": (
        lambda w, heads: w.T.reshape(*_split_last(w, heads), w.shape[0]),
        lambda k, heads: k.reshape(k.shape[0] * k.shape[1], k.shape[2]).T,
    ),
}


def _check_one_to_one(maps: list[TensorMap], torch_keys: Iterable[str], keras_paths: Iterable[str]) -> None:
    """Every tensor on both sides appears in exactly one map entry."""
    problems = []
    for side, mapped, present in (
        ("PyTorch tensor", [m.torch_key for m in maps], set(torch_keys)),
        ("Keras variable", [m.keras_path for m in maps], set(keras_paths)),
    ):
        counts = Counter(mapped)
        problems += [f"{side} {n!r} mapped {c} times" for n, c in counts.items() if c > 1]
        problems += [f"{side} {n!r} is not in the model" for n in counts if n not in present]
        problems += [f"{side} {n!r} has no counterpart" for n in sorted(present - set(counts))]
    if problems:
        raise WeightTransferError("weight map is not one-to-one: " + "; ".join(problems))


def _convert(m: TensorMap, value: Array, target_shape: tuple[int, ...], to_keras: bool) -> Array:
    forward, backward = _TRANSFORMS[m.transform]
    try:
        out = (forward if to_keras else backward)(value, *m.args)
    except WeightTransferError:
        raise
    except ValueError as exc:  # numpy reshape/transpose refused the layout
        raise WeightTransferError(f"{m.torch_key} <-> {m.keras_path}: {m.transform} failed: {exc}") from exc
    if tuple(out.shape) != tuple(target_shape):
        src, dst = (m.torch_key, m.keras_path) if to_keras else (m.keras_path, m.torch_key)
        raise WeightTransferError(
            f"{src} {tuple(value.shape)} via {m.transform} gives {tuple(out.shape)}, "
            f"but {dst} has shape {tuple(target_shape)}"
        )
    return np.ascontiguousarray(out)


def _torch_state(torch_model: Any) -> dict[str, Any]:
    return {k: v for k, v in torch_model.state_dict().items() if not k.endswith(IGNORED_TORCH_SUFFIXES)}


def torch_to_keras(spec: ArchSpec, torch_model: Any, keras_model: Any, maps: list[TensorMap] | None = None) -> None:
    """Overwrite every variable of ``keras_model`` with the mapped weights of ``torch_model``."""
    maps = weight_map(spec) if maps is None else maps
    state = _torch_state(torch_model)
    variables = {v.path: v for v in keras_model.weights}
    _check_one_to_one(maps, state, variables)
    converted = {
        m.keras_path: _convert(m, state[m.torch_key].detach().cpu().numpy(), tuple(variables[m.keras_path].shape), True)
        for m in maps
    }
    # Assign only after every tensor converted, so a failed transfer leaves the model untouched.
    for path, value in converted.items():
        variables[path].assign(value)


def keras_to_torch(spec: ArchSpec, keras_model: Any, torch_model: Any, maps: list[TensorMap] | None = None) -> None:
    """Overwrite every parameter and buffer of ``torch_model`` with the mapped Keras weights."""
    maps = weight_map(spec) if maps is None else maps
    full_state = torch_model.state_dict()
    state = _torch_state(torch_model)
    variables = {v.path: v for v in keras_model.weights}
    _check_one_to_one(maps, state, variables)
    new_state = dict(full_state)
    for m in maps:
        target = state[m.torch_key]
        value = _convert(m, np.asarray(variables[m.keras_path].numpy()), tuple(target.shape), False)
        new_state[m.torch_key] = target.new_tensor(value)
    torch_model.load_state_dict(new_state, strict=True)
