"""Warm-up never rejects a model ONNX Runtime runs (issue 13 item 11).

Models whose inputs are a shape (``Expand``) or split sizes (``Split``) cannot take random values:
before, their synthetic warm-up failed and so did the load. Now a version warms up with its
``golden.npz``, else with TF Serving's ``assets.extra/tf_serving_warmup_requests``, else with
synthetic inputs whose failure is only logged.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from onnx_builders import write_shape_input_onnx

from deploykit.export.golden import save_golden
from deploykit.protocol.tfrecord import WARMUP_FILE, write_warmup_requests
from deploykit.repository import GOLDEN
from deploykit.server.version_loader import load_version

X = np.arange(8, dtype=np.float32).reshape(2, 4)


def _model(tmp_path, op):
    version_dir = tmp_path / op / "1"
    write_shape_input_onnx(version_dir / "model.onnx", op)
    return version_dir


def _valid(op) -> dict[str, np.ndarray]:
    sizes = [2, 4] if op == "Expand" else [1, 3]
    return {"x": X, "sizes": np.array(sizes, dtype=np.int64)}


@pytest.mark.parametrize("op", ["Expand", "Split"])
def test_synthetic_warmup_failure_is_logged_and_the_model_loads(tmp_path, caplog, op) -> None:
    version_dir = _model(tmp_path, op)
    with caplog.at_level(logging.WARNING):
        loaded = load_version(op, 1, version_dir, warmup_requests=3)
    assert loaded.error is None and loaded.available
    warning = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "warm-up request 1 (synthetic inputs" in warning and "loading it anyway" in warning
    outputs = loaded.runtime.predict(_valid(op))
    if op == "Split":
        np.testing.assert_array_equal(outputs["a"], X[:, :1])
        np.testing.assert_array_equal(outputs["b"], X[:, 1:])
    else:
        np.testing.assert_array_equal(outputs["y"], X)
    loaded.runtime.close()


@pytest.mark.parametrize("source", [GOLDEN, str(WARMUP_FILE)])
def test_golden_or_tfserving_warmup_file_is_used_and_must_be_valid(tmp_path, caplog, source) -> None:
    """Valid recorded inputs warm the model up (logged, no warning); invalid ones fail the load
    naming the file, as in TF Serving: that proves the file, not random data, was used."""

    def publish(version_dir, inputs):
        if source == GOLDEN:
            save_golden(version_dir / GOLDEN, {2: (inputs, {})})
        else:
            write_warmup_requests(version_dir / WARMUP_FILE, [inputs])

    good = _model(tmp_path / "good", "Split")
    publish(good, _valid("Split"))
    with caplog.at_level(logging.INFO):
        loaded = load_version("split", 1, good, warmup_requests=3)
    assert loaded.available, loaded.error
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert f"warmed up with {source}" in caplog.text
    loaded.runtime.close()

    bad = _model(tmp_path / "bad", "Split")
    publish(bad, {"x": X, "sizes": np.array([2, 9], dtype=np.int64)})
    loaded = load_version("split", 1, bad, warmup_requests=3)
    assert loaded.state == "END" and f"warm-up request 1 ({source}" in loaded.error


def test_warmup_file_classify_records_and_corruption(tmp_path) -> None:
    """A corrupt warm-up file fails the load with a precise message (not a silent random warm-up)."""
    version_dir = _model(tmp_path, "Split")
    (version_dir / WARMUP_FILE).parent.mkdir()
    (version_dir / WARMUP_FILE).write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00garbage")
    loaded = load_version("split", 1, version_dir, warmup_requests=1)
    assert loaded.state == "END" and "corrupt TFRecord" in loaded.error


def test_warmup_disabled_runs_nothing(tmp_path) -> None:
    version_dir = _model(tmp_path, "Split")
    write_warmup_requests(version_dir / WARMUP_FILE, [{"x": X, "sizes": np.array([2, 9], dtype=np.int64)}])
    assert load_version("split", 1, version_dir, warmup_requests=0).available
