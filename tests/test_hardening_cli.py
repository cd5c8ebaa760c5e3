"""What a first-time user or an attacker meets on the command line (issue 13, items 2, 4, 20-23):
one ``error:`` line instead of a traceback, nothing written or read outside the repository."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import TFSERVING_TESTDATA
from typer.testing import CliRunner

from deploykit.cli import app
from deploykit.errors import DataError, ExportError, UsageError

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
SAVED_MODEL = TFSERVING_TESTDATA / "saved_model_half_plus_two_cpu" / "00000123"


def _one_line(output: str) -> str:
    return " ".join(output.split())


# ------------------------------------------------------------------------------- item 2: names, paths


@pytest.mark.parametrize("name", ["../../evil", "a/b", ".hidden", "..", "x" * 200, "white space"])
def test_export_names_are_one_safe_path_component(tmp_path: Path, name: str) -> None:
    repo = tmp_path / "deep" / "repo"
    result = runner.invoke(app, ["export", str(SAVED_MODEL), "--name", name, "--repo", str(repo)])
    assert result.exit_code == 2, result.output
    assert "is not allowed" in _one_line(result.output)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # nothing written anywhere


def _version_dir(tmp_path: Path, **manifest) -> Path:
    version = tmp_path / "m" / "1"
    version.mkdir(parents=True)
    base = {  # a complete, valid manifest: each test breaks one thing
        "schema_version": 1,
        "name": "m",
        "version": 1,
        "format": "onnx",
        "framework": "torch",
        "artifact": "model.onnx",
        "artifact_sha256": "",
        "created": "2026-01-01T00:00:00Z",
        "deploykit_version": "0",
        "packages": {},
        "python": "3.11",
        "converter": {},
        "source": {},
        "layout": None,
        "size_bytes": 0,
        "timings_s": {},
        "files": {},
        "signature": {"inputs": [], "outputs": []},
        "validation": {
            "runtime": "onnx",
            "seed": 0,
            "batch_sizes": [],
            "golden": "golden.npz",
            "passed": True,
            "outputs": [],
        },
    }
    base.update(manifest)
    (version / "deploykit.json").write_text(
        json.dumps({k: v for k, v in base.items() if k not in manifest or v is not None})
    )
    return version


@pytest.mark.parametrize(
    "manifest",
    [
        {"artifact": "../../../../etc/passwd"},
        {"artifact": "/etc/passwd"},
        {"files": {"../../secret": {"sha256": "", "bytes": 0}}},
    ],
)
def test_validate_never_reads_outside_the_version_directory(tmp_path: Path, manifest: dict) -> None:
    version = _version_dir(tmp_path, **manifest)
    result = runner.invoke(app, ["validate", str(version)])
    assert result.exit_code == 1, result.output
    assert "points outside the version directory" in _one_line(result.output)


def test_validate_names_what_a_broken_manifest_lacks(tmp_path: Path) -> None:
    version = _version_dir(tmp_path, name=None)
    result = runner.invoke(app, ["validate", str(version)])
    assert result.exit_code == 1, result.output
    assert "field 'name' is missing" in _one_line(result.output)
    assert "KeyError" not in result.output


# ------------------------------------------------------------------------------- item 4: umask


def test_version_directories_respect_the_umask(tmp_path: Path) -> None:
    from deploykit import repository
    from deploykit.fsutil import atomic_directory

    old = os.umask(0o022)
    try:
        staging = repository.staging_dir(tmp_path / "model")
        assert stat.S_IMODE(staging.stat().st_mode) == 0o755
        with atomic_directory(tmp_path / "run", replace=True) as stage:
            (stage / "f").write_text("x")
        assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o755
        os.umask(0o077)
        assert stat.S_IMODE(repository.staging_dir(tmp_path / "private").stat().st_mode) == 0o700
    finally:
        os.umask(old)


# ------------------------------------------------------------------------------- item 20: one error line


def test_a_missing_extra_is_named_not_a_traceback() -> None:
    code = (
        "import sys; sys.modules['hdrh'] = None\n"  # as if deploykit[loadtest] were not installed
        "sys.argv = ['deploykit', 'loadtest', 'grpc://127.0.0.1:1/m']\n"
        "from deploykit.cli import main; main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "pip install 'deploykit[loadtest]'" in _one_line(done.stderr)


def test_export_to_a_repo_that_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "models"
    target.write_text("not a directory")
    result = runner.invoke(app, ["export", str(SAVED_MODEL), "--repo", str(target)])
    assert result.exit_code == 2, result.output
    assert "is a file; expected the model repository directory" in _one_line(result.output)
    result = runner.invoke(app, ["export", str(SAVED_MODEL), "--repo", str(target / "below")])
    assert result.exit_code == 2, result.output
    assert "cannot write there (Not a directory)" in _one_line(result.output)


def test_export_to_a_read_only_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    repo.chmod(0o555)
    if os.geteuid() == 0:
        # root writes into 0555 directories and the only read-only file system here belongs to the
        # sandbox: stand in for the kernel's EACCES (the one fake in this file, and why).
        def refused(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(tempfile, "TemporaryFile", refused)
    try:
        result = runner.invoke(app, ["export", str(SAVED_MODEL), "--repo", str(repo)])
    finally:
        repo.chmod(0o755)
    assert result.exit_code == 2, result.output
    assert "cannot write there (Permission denied)" in _one_line(result.output)


def test_training_labels_are_bounded(tmp_path: Path) -> None:
    from deploykit.data import load_dataset

    data = tmp_path / "d.npz"
    y = np.array([0, 1] * 10)
    y[3] = 10**9  # one class per label up to the largest: a 10^9-way classifier
    np.savez(data, X=np.zeros((20, 64), np.float32), y=y)
    with pytest.raises(DataError, match="labels must be 0..K-1 with K at most the number of samples"):
        load_dataset(str(data), "mlp")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("x:float32[99999999999999999999,64]", "must be -1 (dynamic) or 1..2147483647"),
        ("x:float32[-1,,64]", "dimension '' is not an integer"),
        ("x:float32[-1,0]", "must be -1 (dynamic)"),
    ],
)
def test_bad_input_specs_are_refused(spec: str, message: str) -> None:
    from deploykit.tensors import parse_tensor_spec

    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        parse_tensor_spec(spec)


def test_a_duplicated_input_is_refused() -> None:
    result = runner.invoke(
        app, ["export", "nosuchpkg.models:build", "--input", "x:float32[-1,4]", "--input", "x:float32[-1,4]"]
    )
    assert result.exit_code == 2, result.output
    assert "--input names must be unique; given more than once: x" in _one_line(result.output)


def test_a_corrupt_keras_file_is_named_as_such(tmp_path: Path) -> None:
    from deploykit.export.sources import load_sources

    broken = tmp_path / "model.keras"
    broken.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ExportError, match="not a Keras archive"):
        load_sources(str(broken), ("tf",))


# ------------------------------------------------------------------------------- item 21: python -m imports


def test_a_factory_imports_from_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from deploykit.export.sources import load_sources
    from deploykit.tensors import parse_tensor_spec

    package = tmp_path / "mypkg_dk_test"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text("import torch\n\ndef build():\n    return torch.nn.Linear(4, 2)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    (source,) = load_sources("mypkg_dk_test.models:build", ("torch",), inputs=[parse_tensor_spec("x:float32[-1,4]")])
    assert source.name == "build" and source.signature.outputs[0].shape == (None, 2)


# ------------------------------------------------------------------------------- item 22: quiet TensorFlow


NATIVE_NOISE = ("cudart_stub", "cuInit", "absl::InitializeLog", "oneDNN", "cpu_feature_guard", "NodeDef mentions")


def test_tensorflow_log_lines_stay_out_unless_verbose(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    args = ["export", str(SAVED_MODEL), "--format", "bogus", "--repo", str(tmp_path / "repo")]
    quiet = subprocess.run(
        [sys.executable, "-m", "deploykit", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "PYTHONPATH": str(ROOT)},
    )
    assert quiet.returncode != 0 and "error:" in quiet.stderr + quiet.stdout, quiet.stderr
    assert not [n for n in NATIVE_NOISE if n in quiet.stderr + quiet.stdout], quiet.stderr


# ------------------------------------------------------------------------------- item 23: --help


@pytest.mark.parametrize("command", ["serve", "loadtest", "compare", "export", "train", "validate", "predict"])
def test_help_never_cuts_option_names(command: str) -> None:
    result = runner.invoke(app, [command, "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.output, result.output
