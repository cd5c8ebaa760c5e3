"""Every zoo model x every format exports, validates, and is described by a correct manifest."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from deploykit.export.golden import load_golden
from deploykit.export.verify import exported_versions, verify
from deploykit.repository import GOLDEN, MANIFEST, hash_files, read_manifest

ZOO = ("mlp", "cnn", "transformer")

FORMATS = {
    "torch-torchscript": "model.pt",
    "torch-pt2": "model.pt2",
    "torch-onnx": "model.onnx",
    "tf-savedmodel": "saved_model.pb",
    "tf-onnx": "model.onnx",
}


@pytest.mark.parametrize("model", ZOO)
def test_every_format_exports_and_passes(exported_zoo, model: str) -> None:
    repo, reports = exported_zoo
    report = reports[model]
    assert report.ok, [(a.name, a.error) for a in report.artifacts]
    assert sorted(a.name for a in report.artifacts) == sorted(f"{model}-{f}" for f in FORMATS)
    for artifact in report.artifacts:
        # Two batch sizes: the batch dimension is dynamic in every artifact.
        assert sorted({row.batch_size for row in artifact.parity}) == [2, 7]
        assert artifact.version == 1 and artifact.path == repo / artifact.name / "1"
    assert report.cross_checks and all(row.passed for row in report.cross_checks)


@pytest.mark.parametrize("model", ZOO)
def test_layout_and_manifest(exported_zoo, model: str) -> None:
    repo, _ = exported_zoo
    for suffix, main_file in FORMATS.items():
        version_dir = repo / f"{model}-{suffix}" / "1"
        assert (version_dir / main_file).is_file()
        manifest = json.loads((version_dir / MANIFEST).read_text())
        # Hashes in the manifest are those of the files on disk, and cover every file.
        assert read_manifest(version_dir).files == hash_files(version_dir)
        assert GOLDEN in manifest["files"]
        assert manifest["validation"]["passed"] is True
        assert manifest["signature"]["inputs"][0]["shape"][0] == -1
        assert manifest["signature"]["outputs"] == [{"name": "logits", "dtype": "float32", "shape": [-1, 10]}]
        assert manifest["source"]["kind"] == "zoo-run"
        assert manifest["packages"]["numpy"] == np.__version__
        assert manifest["size_bytes"] > 0 and manifest["timings_s"]["export"] > 0
        # No staging directories are left behind.
        assert [p.name for p in version_dir.parent.iterdir()] == ["1"]


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_onnx_files_carry_metadata_and_a_named_dynamic_batch(exported_zoo, framework: str) -> None:
    repo, _ = exported_zoo
    model = onnx.load(str(repo / f"cnn-{framework}-onnx" / "1" / "model.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["source_framework"].startswith("torch" if framework == "torch" else "tensorflow")
    assert props["converter"].startswith("torch.onnx" if framework == "torch" else "tf2onnx")
    assert props["converter_version"]
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [18]
    for value in (*model.graph.input, *model.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [i.name for i in model.graph.input] == ["x"] and [o.name for o in model.graph.output] == ["logits"]


def test_savedmodel_has_tf_servings_default_signature(exported_zoo) -> None:
    import tensorflow as tf

    repo, _ = exported_zoo
    loaded = tf.saved_model.load(str(repo / "mlp-tf-savedmodel" / "1"), tags=["serve"])
    signature = loaded.signatures["serving_default"]
    assert list(signature.structured_input_signature[1]) == ["x"]
    assert list(signature.structured_outputs) == ["logits"]


def test_golden_file_holds_inputs_and_source_outputs(exported_zoo, zoo_runs) -> None:
    from deploykit.export.sources import load_sources

    repo, _ = exported_zoo
    cases = load_golden(repo / "transformer-torch-pt2" / "1" / GOLDEN)
    assert sorted(cases) == [2, 7]
    (source,) = load_sources(str(zoo_runs["transformer"]), ("torch",))
    for batch, (inputs, outputs) in cases.items():
        assert inputs["x"].shape == (batch, 8, 8)
        np.testing.assert_array_equal(source.reference(inputs)["logits"], outputs["logits"])


def test_validate_passes_on_every_exported_version(exported_zoo) -> None:
    repo, _ = exported_zoo
    results = [verify(d) for d in exported_versions(repo)]
    assert len(results) == len(ZOO) * len(FORMATS)
    assert all(r.passed for r in results), [(r.path, r.error, r.file_problems) for r in results if not r.passed]


def test_every_version_carries_tf_servings_warmup_file_read_by_tensorflow(exported_zoo) -> None:
    """Issue 13 item 11: export writes assets.extra/tf_serving_warmup_requests (the golden inputs as
    PredictionLog records); TensorFlow's own TFRecord reader and the official proto parse it."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from deploykit.protocol.tfrecord import WARMUP_FILE

    repo, _ = exported_zoo
    cases = load_golden(repo / "mlp-torch-onnx" / "1" / GOLDEN)
    for version_dir in (repo / "mlp-torch-onnx" / "1", repo / "mlp-tf-savedmodel" / "1"):
        records = list(tf.data.TFRecordDataset(str(version_dir / WARMUP_FILE)).as_numpy_iterator())
        assert len(records) == len(cases)
    logs = [prediction_log_pb2.PredictionLog.FromString(r) for r in records]
    request = logs[0].predict_log.request
    assert request.model_spec.signature_name == "serving_default"
    got = tf.make_ndarray(request.inputs["x"])
    np.testing.assert_array_equal(got, cases[min(cases)][0]["x"])
