"""Dataset loading and validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deploykit.data import load_dataset
from deploykit.errors import DataError


def _npz(tmp_path: Path, **arrays) -> str:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize(("model", "shape"), [("mlp", (64,)), ("cnn", (8, 8, 1)), ("transformer", (8, 8))])
def test_digits_in_each_architectures_canonical_shape(model: str, shape: tuple[int, ...]) -> None:
    data = load_dataset("digits", model, seed=0)
    assert data.sample_shape == shape
    assert data.num_classes == 10
    assert len(data.x_train) + len(data.x_test) == 1797
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0
    # Stratified: every class is in both parts.
    assert set(data.y_test) == set(data.y_train) == set(range(10))


def test_split_is_deterministic_for_a_seed_and_differs_across_seeds() -> None:
    a, b, c = (load_dataset("digits", "mlp", seed=s) for s in (3, 3, 4))
    assert np.array_equal(a.x_test, b.x_test) and np.array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_test, c.x_test)


def test_user_npz_loads(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = _npz(tmp_path, X=rng.random((40, 5)), y=np.arange(40) % 3)
    data = load_dataset(path, "mlp")
    assert data.sample_shape == (5,) and data.num_classes == 3
    assert len(data.x_train) + len(data.x_test) == 40


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"y": np.zeros(4)}, r"missing array\(s\) X"),
        ({"X": np.zeros((4, 3))}, r"missing array\(s\) y"),
        ({"X": np.zeros((4, 3)), "y": np.arange(5) % 2}, r"y has shape \(5,\); expected .* \(4,\)"),
        ({"X": np.zeros((0, 3)), "y": np.zeros(0, dtype=int)}, "empty dataset"),
        ({"X": np.zeros((4, 3, 2)), "y": np.arange(4) % 2}, r"model 'mlp' expects \(samples, \*\(features,\)\)"),
        ({"X": np.array([[0.0, np.nan]] * 4), "y": np.arange(4) % 2}, "4 NaN/Inf"),
        ({"X": np.zeros((4, 2)), "y": np.array([0.0, 1.5, 1.0, 0.0])}, "integer class labels"),
        ({"X": np.zeros((4, 2)), "y": np.array([0, -1, 1, 0])}, "negative labels"),
        ({"X": np.zeros((4, 2)), "y": np.zeros(4, dtype=int)}, "at least two classes"),
        ({"X": np.array([["a", "b"]] * 4), "y": np.arange(4) % 2}, "numeric"),
    ],
)
def test_bad_npz_is_a_data_error(tmp_path: Path, arrays: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_dataset(_npz(tmp_path, **arrays), "mlp")


def test_missing_file_and_garbage_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_dataset(str(tmp_path / "nope.npz"), "mlp")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip archive")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset(str(garbage), "mlp")
