"""One contract, every runtime: load an exported artifact, expose its signature, reproduce the
golden outputs at every batch size, close cleanly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deploykit.errors import UsageError
from deploykit.export.manifest import GOLDEN, MANIFEST, load_golden
from deploykit.runtimes import RUNTIMES, load_runtime
from deploykit.tensors import Signature

ARTIFACTS = {
    "onnx": "cnn-torch-onnx",
    "torchscript": "cnn-torch-torchscript",
    "pt2": "cnn-torch-pt2",
    "savedmodel": "cnn-tf-savedmodel",
}


def test_every_runtime_has_a_contract_case() -> None:
    assert set(ARTIFACTS) == set(RUNTIMES)


@pytest.mark.parametrize("fmt", sorted(ARTIFACTS))
def test_runtime_contract(exported_zoo, fmt: str) -> None:
    repo, _ = exported_zoo
    version_dir = repo / ARTIFACTS[fmt] / "1"
    manifest = json.loads((version_dir / MANIFEST).read_text())
    recorded = Signature.from_dict(manifest["signature"])
    runtime = load_runtime(fmt, version_dir / manifest["artifact"], recorded)
    try:
        assert runtime.signature.input_names == ["x"]
        assert runtime.signature.output_names == ["logits"]
        assert runtime.signature.inputs[0].dtype == "float32"
        assert runtime.signature.inputs[0].shape == (None, 8, 8, 1)
        for batch, (inputs, expected) in load_golden(version_dir / GOLDEN).items():
            got = runtime.predict(inputs)
            assert set(got) == {"logits"}
            assert got["logits"].shape == (batch, 10) and got["logits"].dtype == np.float32
            np.testing.assert_allclose(got["logits"], expected["logits"], atol=1e-5, rtol=1e-5)
    finally:
        runtime.close()


def test_unknown_format_is_a_usage_error(tmp_path) -> None:
    with pytest.raises(UsageError, match="unknown artifact format 'tflite'"):
        load_runtime("tflite", tmp_path)


@pytest.mark.parametrize("fmt", ["torchscript", "pt2"])
def test_nameless_formats_need_a_signature(exported_zoo, fmt: str) -> None:
    repo, _ = exported_zoo
    with pytest.raises(UsageError, match="carry no tensor names"):
        load_runtime(fmt, repo / ARTIFACTS[fmt] / "1")
