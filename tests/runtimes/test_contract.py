"""One contract, every runtime (:class:`deploykit.runtimes.base.Runtime`): load an exported artifact,
expose its signatures, reproduce the golden outputs at every batch size through the default and the
named signature, say whether its shapes are advisory, describe itself as JSON, close cleanly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deploykit.errors import UsageError
from deploykit.export.golden import load_golden
from deploykit.repository import GOLDEN, read_manifest
from deploykit.runtimes import RUNTIMES, load_runtime
from deploykit.runtimes.base import DEFAULT_SIGNATURE, Runtime, engine_label

ARTIFACTS = {
    "onnx": "cnn-torch-onnx",
    "torchscript": "cnn-torch-torchscript",
    "pt2": "cnn-torch-pt2",
    "savedmodel": "cnn-tf-savedmodel",
}


#: Runtimes whose artifact is too slow to build for this module's fixture: their contract case
#: runs where the artifact is built anyway.
CONTRACT_ELSEWHERE = {"aoti": "tests/export/test_big_models.py::test_aoti_runtime_contract"}


def test_every_runtime_has_a_contract_case() -> None:
    assert set(ARTIFACTS) | set(CONTRACT_ELSEWHERE) == set(RUNTIMES)


@pytest.mark.parametrize("fmt", sorted(ARTIFACTS))
def test_runtime_contract(exported_zoo, fmt: str) -> None:
    repo, _ = exported_zoo
    version_dir = repo / ARTIFACTS[fmt] / "1"
    manifest = read_manifest(version_dir)
    runtime = load_runtime(fmt, version_dir / manifest.artifact, manifest.signature)
    try:
        assert isinstance(runtime, Runtime)
        assert DEFAULT_SIGNATURE in runtime.signatures
        assert runtime.signature == runtime.signatures[DEFAULT_SIGNATURE]
        assert runtime.advisory_shapes is False  # every export deploykit writes declares real shapes
        description = runtime.describe()
        assert json.loads(json.dumps(description)) == description  # JSON-able, for logs and reports
        assert description["engine"] and description["version"]
        assert engine_label(description) == manifest.validation.runtime  # what export recorded
        assert runtime.signature.input_names == ["x"]
        assert runtime.signature.output_names == ["logits"]
        assert runtime.signature.inputs[0].dtype == "float32"
        assert runtime.signature.inputs[0].shape == (None, 8, 8, 1)
        for batch, (inputs, expected) in load_golden(version_dir / GOLDEN).items():
            for got in (runtime.predict(inputs), runtime.predict(inputs, DEFAULT_SIGNATURE)):
                assert set(got) == {"logits"}
                assert got["logits"].shape == (batch, 10) and got["logits"].dtype == np.float32
                np.testing.assert_allclose(got["logits"], expected["logits"], atol=1e-5, rtol=1e-5)
        with pytest.raises(UsageError, match="no signature 'nope'"):
            runtime.predict(inputs, "nope")
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
