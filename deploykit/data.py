"""Datasets for training and validation: scikit-learn's bundled digits, or a user ``.npz``.

A :class:`Dataset` always holds samples already in the canonical input shape of the architecture
that will consume them (see :mod:`deploykit.zoo.spec`), float32 features and int64 labels
``0..num_classes-1``, split once, deterministically for a seed, into train and test parts. Both
frameworks train on exactly these arrays.

Everything is checked before any training starts, so bad data fails fast with a message that names
what was wrong and what was expected, and no output is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploykit.errors import DataError
from deploykit.zoo.spec import ARCHITECTURES

DIGITS = "digits"


@dataclass(frozen=True)
class Dataset:
    """Train/test split of one dataset, in an architecture's canonical sample shape."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def summary(self) -> dict[str, object]:
        """JSON-ready description for reports."""
        return {
            "name": self.name,
            "train_samples": len(self.x_train),
            "test_samples": len(self.x_test),
            "sample_shape": list(self.sample_shape),
            "num_classes": self.num_classes,
        }


def _digits_for(architecture: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits (bundled with the package: no download), scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)  # (N, 8, 8), pixel values 0..16
    shaped = {
        "mlp": images.reshape(len(images), -1),  # 64 features
        "cnn": images[..., np.newaxis],  # 8x8 image, one channel, channels-last
        "transformer": images,  # 8 tokens (rows) of 8 features
    }
    return shaped[architecture], bunch.target.astype(np.int64)


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path}: no such file; expected 'digits' or a .npz file with arrays X and y")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in ("X", "y") if k not in archive.files]
            if missing:
                raise DataError(
                    f"{path}: missing array(s) {', '.join(missing)}; expected keys X (samples) "
                    f"and y (integer labels), found {archive.files or 'none'}"
                )
            return archive["X"], archive["y"]
    except DataError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, ValueError (pickled objects), OSError ...
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from exc


#: Most classes a dataset may have (labels 0..MAX_CLASSES-1), besides at most one per sample.
MAX_CLASSES = 100_000


def _validated(x: np.ndarray, y: np.ndarray, origin: str, architecture: str) -> tuple[np.ndarray, np.ndarray]:
    spec_cls = ARCHITECTURES[architecture]
    if len(x) == 0 or len(y) == 0:
        raise DataError(f"{origin}: empty dataset (X has {len(x)} samples, y has {len(y)} labels)")
    if x.ndim != spec_cls.sample_rank + 1:
        raise DataError(
            f"{origin}: X has shape {x.shape}; model {architecture!r} expects "
            f"(samples, *{spec_cls.sample_layout}), i.e. rank {spec_cls.sample_rank + 1}"
        )
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{origin}: y has shape {y.shape}; expected one label per sample, shape ({len(x)},)")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise DataError(f"{origin}: X has dtype {x.dtype}; expected a numeric (float or integer) array")
    if not np.all(np.isfinite(x)):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise DataError(f"{origin}: X contains {bad} NaN/Inf value(s); expected finite numbers")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataError(f"{origin}: y must hold integer class labels, got non-integer values")
    elif not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{origin}: y has dtype {y.dtype}; expected integer class labels")
    if y.min() < 0:
        raise DataError(f"{origin}: y contains negative labels (min {y.min()}); expected 0..K-1")
    # The classifier has one output per class 0..max(y): a stray huge label would allocate a
    # gigantic output layer. Every class needs a sample, so K can never usefully exceed N.
    limit = min(len(y), MAX_CLASSES)
    if y.max() >= limit:
        raise DataError(
            f"{origin}: y contains label {int(y.max())}; labels must be 0..K-1 with K at most the number of "
            f"samples ({len(y)}) and at most {MAX_CLASSES:,}"
        )
    return x.astype(np.float32), y.astype(np.int64)


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int, origin: str):
    """Stratified, seeded split so both frameworks (and reruns) see the same partition."""
    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test = int(round(len(idx) * test_fraction))
        if len(idx) >= 2:
            n_test = min(max(n_test, 1), len(idx) - 1)
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    train = rng.permutation(np.concatenate(train_idx))
    test = np.sort(np.concatenate(test_idx))
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"{origin}: {len(x)} sample(s) are too few to split into train and test parts")
    return x[train], y[train], x[test], y[test]


def load_dataset(source: str, architecture: str, *, seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """Load ``source`` (``"digits"`` or a path to ``.npz`` with ``X`` and ``y``) for ``architecture``.

    Raises :class:`DataError` when the data cannot train that architecture.
    """
    if source == DIGITS:
        x, y = _digits_for(architecture)
        origin = DIGITS
    else:
        path = Path(source)
        x, y = _load_npz(path)
        origin = str(path)
    x, y = _validated(x, y, origin, architecture)
    num_classes = int(y.max()) + 1
    if len(np.unique(y)) < 2:
        raise DataError(f"{origin}: all labels are {y[0]}; expected at least two classes")
    x_train, y_train, x_test, y_test = _split(x, y, test_fraction, seed, origin)
    return Dataset(origin, x_train, y_train, x_test, y_test, num_classes)
