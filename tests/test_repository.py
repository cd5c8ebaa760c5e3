"""The model repository's rules: version directories, atomic publication, the typed manifest."""

from __future__ import annotations

import json

import pytest

from deploykit import repository
from deploykit.errors import UsageError, ValidationError
from deploykit.repository import MANIFEST, SCHEMA_VERSION, Manifest, read_manifest, version_dirs


def test_only_ascii_digit_directories_are_versions(tmp_path) -> None:
    for name in ("1", "0010", "²", "٣", ".staging-x", "v2"):
        (tmp_path / name).mkdir()
    (tmp_path / "7").write_text("a file, not a version")
    assert version_dirs(tmp_path) == {1: tmp_path / "1", 10: tmp_path / "0010"}
    assert repository.next_version(tmp_path) == 11
    assert repository.model_dirs(tmp_path) == [tmp_path]
    assert repository.model_dirs(tmp_path.parent / "missing") == []


def test_publication_is_atomic_and_never_overwrites(tmp_path) -> None:
    staging = repository.staging_dir(tmp_path / "m")
    (staging / "model.onnx").write_bytes(b"x")
    assert version_dirs(tmp_path / "m") == {}  # a staging directory is not a version
    assert repository.publish(staging, tmp_path / "m", 1) == tmp_path / "m" / "1"
    with pytest.raises(UsageError, match="already exists; versions are never overwritten"):
        repository.check_free(tmp_path / "m", 1)


def _manifest_dict(tmp_path) -> dict:
    (tmp_path / "model.onnx").write_bytes(b"weights")
    files = repository.hash_files(tmp_path)
    return {
        "schema_version": SCHEMA_VERSION,
        "name": "m-torch-onnx",
        "version": 1,
        "format": "onnx",
        "framework": "torch",
        "artifact": "model.onnx",
        "artifact_sha256": repository.artifact_hash(files, "model.onnx"),
        "created": "2025-01-01T00:00:00+00:00",
        "deploykit_version": "0",
        "packages": {},
        "python": "3.11",
        "converter": {"name": "c", "version": "1"},
        "source": {},
        "signature": {"inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}], "outputs": []},
        "layout": None,
        "validation": {
            "runtime": "r",
            "seed": 0,
            "batch_sizes": [2, 7],
            "golden": "golden.npz",
            "passed": True,
            "outputs": [],
            "runtime_options": {"engine": "r"},
        },
        "files": {rel: {"sha256": info.sha256, "bytes": info.bytes} for rel, info in files.items()},
        "size_bytes": 7,
        "timings_s": {},
        "warnings": [],
    }


def test_manifest_round_trips_and_checks_files(tmp_path) -> None:
    data = _manifest_dict(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps(data))
    manifest = read_manifest(tmp_path)
    assert manifest.signature.inputs[0].shape == (None, 4)
    assert manifest.to_dict() == data
    assert list(manifest.to_dict())[0] == "schema_version"
    assert repository.file_problems(tmp_path, manifest.files) == []
    (tmp_path / "model.onnx").write_bytes(b"tampered")
    assert repository.file_problems(tmp_path, manifest.files)[0].startswith("model.onnx: sha256 ")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema_version": 2}, "schema_version 2, this deploykit reads 1"),
        ({"version": "1"}, "field 'version': expected int, got str"),
        ({"version": True}, "field 'version': expected int, got bool"),
        ({"format": None}, "field 'format': expected str, got NoneType"),
        ({"files": {"a": {"sha256": "x"}}}, "malformed signature, validation or files"),
    ],
)
def test_a_malformed_manifest_is_named_precisely(tmp_path, change, message) -> None:
    (tmp_path / MANIFEST).write_text(json.dumps({**_manifest_dict(tmp_path), **change}))
    with pytest.raises(ValidationError, match=message):
        read_manifest(tmp_path)


def test_missing_field_and_not_json(tmp_path) -> None:
    data = _manifest_dict(tmp_path)
    del data["artifact"]
    with pytest.raises(ValidationError, match="field 'artifact' is missing"):
        Manifest.from_dict(data)
    (tmp_path / MANIFEST).write_text("{")
    with pytest.raises(ValidationError, match="not valid JSON"):
        read_manifest(tmp_path)
    with pytest.raises(ValidationError, match="not a deploykit export"):
        read_manifest(tmp_path / "nowhere")
