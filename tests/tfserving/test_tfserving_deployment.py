"""``deploykit tfserving-deploy``: the files a real TF Serving reads, checked by parsing them back
(with deploykit's protos and, for the model config, the official tensorflow-serving-api ones)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import TFSERVING_TESTDATA
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2
from typer.testing import CliRunner

from deploykit.cli import app
from deploykit.errors import UsageError
from deploykit.protocol.protos import config_pb2
from deploykit.server.model_config import VersionPolicy, parse_label
from deploykit.serving.deployment_files import shell_line
from deploykit.tfserving import deployment
from deploykit.tfserving.config import batching_parameters

PROBE_ONNX = Path(deployment.__file__).resolve().parents[1] / "runtimes" / "probe.onnx"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """TF Serving's reference SavedModels in a NAME/VERSION repository, plus two that TF Serving
    cannot serve: a broken export and an ONNX model."""
    root = tmp_path / "repo"
    shutil.copytree(TFSERVING_TESTDATA / "saved_model_half_plus_two_2_versions", root / "half_plus_two")
    shutil.copytree(TFSERVING_TESTDATA / "saved_model_half_plus_three", root / "half_plus_three")
    shutil.copytree(TFSERVING_TESTDATA / "bad_half_plus_two", root / "broken")
    (root / "probe" / "1").mkdir(parents=True)
    shutil.copy(PROBE_ONNX, root / "probe" / "1" / "model.onnx")
    return root


def _config(path: Path) -> config_pb2.ModelServerConfig:
    return text_format.Parse(path.read_text(), config_pb2.ModelServerConfig())


def test_deployment_files_parse_back_with_names_paths_policies_and_labels(repo: Path, tmp_path: Path) -> None:
    plan = deployment.plan(
        repo,
        policy=VersionPolicy.parse("specific:123,124"),
        labels=((None, "stable", 124), (None, "canary", 123)),
        only=("half_plus_two",),
    )
    out = tmp_path / "serving"
    written = deployment.write(plan, out, deployment.WriteOptions(batching=batching_parameters(num_batch_threads=2)))

    config = _config(out / deployment.HOST_CONFIG)
    (entry,) = config.model_config_list.config
    assert entry.name == "half_plus_two"
    assert entry.base_path == str(out.resolve() / "models" / "half_plus_two")
    assert entry.model_platform == "tensorflow"
    assert list(entry.model_version_policy.specific.versions) == [123, 124]
    assert dict(entry.version_labels) == {"stable": 124, "canary": 123}
    for version in ("00000123", "00000124"):
        served = Path(entry.base_path) / version / "saved_model.pb"
        assert served.is_file()
        # Hard links: the repository's own file, no second copy on disk.
        assert served.stat().st_ino == (repo / "half_plus_two" / version / "saved_model.pb").stat().st_ino
    assert written.linked_files > 0 and written.copied_files == 0

    # The official message reads the same text (what tensorflow_model_server parses).
    official = text_format.Parse(
        (out / deployment.HOST_CONFIG).read_text(), model_server_config_pb2.ModelServerConfig()
    )
    assert official.model_config_list.config[0].model_version_policy.WhichOneof("policy_choice") == "specific"
    assert dict(official.model_config_list.config[0].version_labels) == {"stable": 124, "canary": 123}

    docker = _config(out / deployment.DOCKER_CONFIG).model_config_list.config[0]
    assert docker.base_path == "/models/models/half_plus_two"  # OUT is mounted at /models
    assert dict(docker.version_labels) == dict(entry.version_labels)

    batching = text_format.Parse((out / deployment.BATCHING_FILE).read_text(), config_pb2.BatchingParameters())
    assert batching.max_batch_size.value == 128 and batching.HasField("batch_timeout_micros")
    assert batching.batch_timeout_micros.value == 0
    assert batching.num_batch_threads.value == 2 and batching.max_enqueued_batches.value == 2
    monitoring = text_format.Parse((out / deployment.MONITORING_FILE).read_text(), config_pb2.MonitoringConfig())
    assert monitoring.prometheus_config.enable
    assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"

    record = json.loads((out / deployment.DEPLOYMENT_FILE).read_text())
    assert record["models"] == [
        {
            "name": "half_plus_two",
            "versions": [123, 124],
            "labels": {"stable": 124, "canary": 123},
            "source": str((repo / "half_plus_two").resolve()),
        }
    ]
    assert os.access(out / "run.sh", os.X_OK)
    readme = (out / "README.md").read_text()
    assert shell_line(written.binary_command) in readme
    assert shell_line(written.docker_command) in readme


def test_default_policy_serves_the_latest_savedmodel_and_skips_the_rest_with_reasons(
    repo: Path, tmp_path: Path
) -> None:
    plan = deployment.plan(repo)
    assert {m.name: sorted(m.versions) for m in plan.models} == {"half_plus_two": [124], "half_plus_three": [123]}
    assert {s.what: s.reason for s in plan.skipped} == {
        "broken v123": "no saved_model.pb at the version root; not a SavedModel",
        "probe v1": "no saved_model.pb at the version root; not a SavedModel",
    }
    out = tmp_path / "serving"
    deployment.write(plan, out)
    config = _config(out / deployment.HOST_CONFIG)
    assert [(c.name, c.model_version_policy.latest.num_versions) for c in config.model_config_list.config] == [
        ("half_plus_three", 1),
        ("half_plus_two", 1),
    ]
    assert sorted(p.name for p in (out / "models" / "half_plus_two").iterdir()) == ["00000124"]
    assert not (out / deployment.BATCHING_FILE).exists()  # batching off: no file, no flag
    assert "--enable_batching=true" not in deployment.read_record(out)["commands"]["binary"]


def test_manifest_formats_decide_what_is_skipped(tmp_path: Path) -> None:
    """deploykit exports name their format in deploykit.json; non-SavedModels and failed validations are skipped."""
    root = tmp_path / "repo"
    shutil.copytree(TFSERVING_TESTDATA / "saved_model_half_plus_three/00000123", root / "m-tf-savedmodel" / "1")
    shutil.copytree(TFSERVING_TESTDATA / "saved_model_half_plus_three/00000123", root / "m-tf-savedmodel" / "2")
    (root / "m-torch-onnx" / "1").mkdir(parents=True)
    shutil.copy(PROBE_ONNX, root / "m-torch-onnx" / "1" / "model.onnx")
    manifests = {
        "m-tf-savedmodel/1": {"format": "savedmodel", "artifact": ".", "validation": {"passed": True}},
        "m-tf-savedmodel/2": {"format": "savedmodel", "artifact": ".", "validation": {"passed": False}},
        "m-torch-onnx/1": {"format": "onnx", "artifact": "model.onnx", "validation": {"passed": True}},
    }
    for rel, manifest in manifests.items():
        (root / rel / "deploykit.json").write_text(json.dumps(manifest))
    plan = deployment.plan(root, policy=VersionPolicy.parse("all"))
    assert {m.name: sorted(m.versions) for m in plan.models} == {"m-tf-savedmodel": [1]}
    assert [str(s) for s in plan.skipped] == [
        "m-tf-savedmodel v2: failed validation at export (published with --allow-mismatch); not deployed",
        "m-torch-onnx v1: onnx artifact; TF Serving serves only TensorFlow SavedModels",
    ]


def test_exported_zoo_deploys_only_its_savedmodels(exported_zoo, tmp_path: Path) -> None:
    zoo, _ = exported_zoo
    plan = deployment.plan(zoo)
    assert sorted(m.name for m in plan.models) == [f"{m}-tf-savedmodel" for m in ("cnn", "mlp", "transformer")]
    reasons = {s.what.split(" ")[0]: s.reason for s in plan.skipped}
    assert reasons["mlp-torch-pt2"] == "pt2 artifact; TF Serving serves only TensorFlow SavedModels"
    assert reasons["cnn-torch-torchscript"] == "torchscript artifact; TF Serving serves only TensorFlow SavedModels"
    assert reasons["transformer-tf-onnx"] == "onnx artifact; TF Serving serves only TensorFlow SavedModels"
    assert len(plan.skipped) == 12
    deployment.write(plan, tmp_path / "serving")
    for model in plan.models:
        assert (tmp_path / "serving" / "models" / model.name / "1" / "saved_model.pb").is_file()


def test_refuses_to_overwrite_and_force_replaces_only_a_deployment(repo: Path, tmp_path: Path) -> None:
    plan = deployment.plan(repo)
    out = tmp_path / "serving"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="is not empty; give --force"):
        deployment.write(plan, out)
    with pytest.raises(UsageError, match="not a deploykit deployment, so --force will not replace it"):
        deployment.write(plan, out, deployment.WriteOptions(force=True))
    assert (out / "notes.txt").read_text() == "mine"

    (out / "notes.txt").unlink()  # an empty directory is fine without --force
    deployment.write(deployment.plan(repo, only=("half_plus_three",)), out)
    with pytest.raises(UsageError, match="is not empty; give --force"):
        deployment.write(plan, out)
    deployment.write(plan, out, deployment.WriteOptions(force=True))
    assert [m["name"] for m in deployment.read_record(out)["models"]] == ["half_plus_three", "half_plus_two"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo", "serving"]  # no staging leftovers

    with pytest.raises(UsageError, match="overlaps the model repository"):
        deployment.write(plan, repo / "serving")


def test_a_failed_write_leaves_the_previous_deployment_untouched(repo: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "serving"
    deployment.write(deployment.plan(repo, only=("half_plus_three",)), out)
    before = (out / deployment.HOST_CONFIG).read_text()

    def fail(_deployment) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(deployment, "_readme", fail)
    with pytest.raises(OSError, match="disk full"):
        deployment.write(deployment.plan(repo), out, deployment.WriteOptions(force=True))
    assert (out / deployment.HOST_CONFIG).read_text() == before
    with pytest.raises(OSError, match="disk full"):
        deployment.write(deployment.plan(repo), tmp_path / "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo", "serving"]


def test_commands_are_exact_and_run_sh_runs_them(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "serving"
    written = deployment.write(
        deployment.plan(repo, only=("half_plus_three",)),
        out,
        deployment.WriteOptions(
            batching=batching_parameters(), grpc_port=9000, rest_port=9001, image="tensorflow/serving:2.19.0"
        ),
    )
    root = str(out.resolve())
    assert written.binary_command == [
        "tensorflow_model_server",
        "--port=9000",
        "--rest_api_port=9001",
        f"--model_config_file={root}/models.config",
        "--enable_batching=true",
        f"--batching_parameters_file={root}/batching_parameters.txt",
        f"--monitoring_config_file={root}/monitoring.config",
    ]
    assert written.docker_command == [
        "docker", "run", "--rm",
        "-p", "9000:8500",
        "-p", "9001:8501",
        "-v", f"{root}:/models:ro",
        "--entrypoint", "tensorflow_model_server",
        "tensorflow/serving:2.19.0",
        "--port=8500",
        "--rest_api_port=8501",
        "--model_config_file=/models/models.docker.config",
        "--enable_batching=true",
        "--batching_parameters_file=/models/batching_parameters.txt",
        "--monitoring_config_file=/models/monitoring.config",
    ]  # fmt: skip

    # run.sh runs exactly these: stand-ins for both programs record their argv.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.json"
    for program in ("tensorflow_model_server", "docker"):
        script = bin_dir / program
        script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$0" "$@" > {record}\n')
        script.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    for mode, expected in (("binary", written.binary_command), ("docker", written.docker_command)):
        subprocess.run(["sh", str(out / "run.sh"), mode], env=env, check=True, timeout=30)
        argv = record.read_text().splitlines()
        assert [Path(argv[0]).name, *argv[1:]] == expected
    done = subprocess.run(["sh", str(out / "run.sh"), "nonsense"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "usage:" in done.stderr


def test_policy_selection_and_label_errors(repo: Path) -> None:
    with pytest.raises(
        UsageError, match="model half_plus_two: specific version.s. 7 not found; SavedModel versions present: 123, 124"
    ):
        deployment.plan(repo, policy=VersionPolicy.parse("specific:7"), only=("half_plus_two",))
    with pytest.raises(
        UsageError, match="label stable=123 points to a version it does not serve .version policy latest:1 serves 124"
    ):
        deployment.plan(repo, labels=((None, "stable", 123),), only=("half_plus_two",))
    with pytest.raises(
        UsageError, match="no model.s. nope in .*; it has: broken, half_plus_three, half_plus_two, probe"
    ):
        deployment.plan(repo, only=("nope",))
    with pytest.raises(UsageError, match="no model.s. nope in"):  # a label scoped to a model that is not there
        deployment.plan(repo, labels=(("nope", "stable", 1),))
    with pytest.raises(UsageError, match="label probe:stable=1: model probe is not deployed .left out by --model"):
        deployment.plan(repo, labels=(("probe", "stable", 1),))
    with pytest.raises(UsageError, match="label half_plus_two:stable=124: model half_plus_two is not deployed"):
        deployment.plan(repo, labels=(("half_plus_two", "stable", 124),), only=("half_plus_three",))
    with pytest.raises(UsageError, match="nothing TF Serving can serve .probe v1: no saved_model.pb"):
        deployment.plan(repo, only=("probe",))


def test_latest_zero_is_latest_one_as_in_tf_serving(repo: Path, tmp_path: Path) -> None:
    """The server's VersionPolicy: ``latest:0`` serves one version (TF Serving's max(n, 1))."""
    plan = deployment.plan(repo, policy=VersionPolicy.parse("latest:0"), only=("half_plus_two",))
    assert sorted(plan.models[0].versions) == [124]
    deployment.write(plan, tmp_path / "serving")
    (entry,) = _config(tmp_path / "serving" / deployment.HOST_CONFIG).model_config_list.config
    assert entry.model_version_policy.WhichOneof("policy_choice") == "latest"
    for bad in ("latest:-1", "specific:-3", "latest:x", "all:2", "specific:", "newest", "latest:²"):
        with pytest.raises(UsageError, match="expected latest, latest:N, all or specific:V1,V2 .non-negative"):
            VersionPolicy.parse(bad)


def test_labels_every_model_or_one_model(repo: Path, tmp_path: Path) -> None:
    """``[MODEL:]LABEL=VERSION`` as deploykit serve reads it: unscoped labels go to every model."""
    labels = tuple(map(parse_label, ("stable=123", "half_plus_two:canary=124")))
    assert labels == ((None, "stable", 123), ("half_plus_two", "canary", 124))
    plan = deployment.plan(
        repo, policy=VersionPolicy.parse("all"), labels=labels, only=("half_plus_two", "half_plus_three")
    )
    assert {m.name: m.labels for m in plan.models} == {
        "half_plus_three": {"stable": 123},
        "half_plus_two": {"stable": 123, "canary": 124},
    }
    deployment.write(plan, tmp_path / "serving")
    config = _config(tmp_path / "serving" / deployment.HOST_CONFIG)
    assert {c.name: dict(c.version_labels) for c in config.model_config_list.config} == {
        "half_plus_three": {"stable": 123},
        "half_plus_two": {"stable": 123, "canary": 124},
    }
    # TF Serving's docs restrict labels to [a-zA-Z0-9_]+; versions are ASCII digits.
    for bad in ("canary", "can-ary=1", "can ary=1", "canary=x", "=1", "canary=-1", "canary=²", "cänary=1"):
        with pytest.raises(UsageError, match=r"expected \[MODEL:\]LABEL=VERSION"):
            parse_label(bad)


def test_version_directories_are_ascii_digits_only(tmp_path: Path) -> None:
    """ "²".isdigit() is True and int("²") raises: such directories are ignored, as TF Serving does."""
    model = tmp_path / "repo" / "m"
    shutil.copytree(TFSERVING_TESTDATA / "saved_model_half_plus_three/00000123", model / "7")
    for name in ("²", "٣", "1a", "-2"):
        (model / name).mkdir()
    plan = deployment.plan(model)
    assert plan.models[0].name == "m" and sorted(plan.models[0].versions) == [7]
    assert plan.skipped == []


def test_batching_parameters_are_checked_like_tf_serving() -> None:
    params = batching_parameters(max_batch_size=32, allowed_batch_sizes=(8, 16, 32), num_batch_threads=4)
    assert list(params.allowed_batch_sizes) == [8, 16, 32] and params.max_enqueued_batches.value == 4
    with pytest.raises(UsageError, match="must end with --max-batch-size .32."):
        batching_parameters(max_batch_size=32, allowed_batch_sizes=(8, 16))
    with pytest.raises(UsageError, match="strictly increasing"):
        batching_parameters(max_batch_size=32, allowed_batch_sizes=(16, 8, 32))
    with pytest.raises(UsageError, match="--max-batch-size must be >= 1, got 0"):
        batching_parameters(max_batch_size=0)


def test_cli_writes_and_prints_both_commands(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "serving"
    runner = CliRunner()
    result = runner.invoke(app, ["tfserving-deploy", str(repo), "--out", str(out), "--num-batch-threads", "2"])
    assert result.exit_code == 0, result.output
    record = deployment.read_record(out)
    assert result.stdout.splitlines() == [
        shell_line(record["commands"]["binary"]),
        shell_line(record["commands"]["docker"]),
    ]
    assert "skipped broken v123: no saved_model.pb at the version root" in result.stderr
    assert "skipped probe v1:" in result.stderr

    again = runner.invoke(app, ["tfserving-deploy", str(repo), "--out", str(out)])
    assert again.exit_code == 2 and "is not empty; give --force" in again.stderr
    bad = runner.invoke(
        app, ["tfserving-deploy", str(repo), "--out", str(tmp_path / "x"), "--version-policy", "newest"]
    )
    assert bad.exit_code == 2 and "version policy 'newest': expected latest, latest:N, all" in bad.stderr
    bad = runner.invoke(
        app,
        [
            "tfserving-deploy",
            str(repo),
            "--out",
            str(tmp_path / "x"),
            "--max-batch-size",
            "8",
            "--allowed-batch-sizes",
            "4",
        ],
    )
    assert bad.exit_code == 2 and "must end with --max-batch-size (8)" in bad.stderr
    assert not (tmp_path / "x").exists()
