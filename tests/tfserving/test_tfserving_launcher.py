"""``deploykit serve --engine tfserving|auto``: launching, waiting for, and stopping TF Serving.

The real ``tensorflow_model_server`` cannot be installed on these machines (no package carries
it, and there is no Docker engine), so these tests put a stand-in executable in its place: it
records the argv it was given (and the model config file it was pointed at), then either runs
deploykit's own TF-Serving-compatible server with exactly those flags, fails the way a server with
a bad flag does, or just exits. The launcher cannot tell the difference: it sees a process, its
output, and TF Serving's gRPC API.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from concurrent import futures
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from conftest import TFSERVING_TESTDATA, free_port
from google.protobuf import text_format
from typer.testing import CliRunner

from deploykit.cli import app
from deploykit.client import Client
from deploykit.errors import LaunchError, Unreachable, UsageError
from deploykit.ports import free_ports
from deploykit.protocol.protos import config_pb2
from deploykit.serving import process
from deploykit.serving.options import ServeOptions
from deploykit.tfserving import deployment, engine, launcher
from deploykit.tfserving.commands import docker_command
from deploykit.tfserving.config import batching_parameters, to_text

HALF_PLUS_TWO = TFSERVING_TESTDATA / "saved_model_half_plus_two_cpu"
PROBE_ONNX = Path(launcher.__file__).resolve().parents[1] / "runtimes" / "probe.onnx"

STAND_IN = '''#!{python}
"""Stand-in for tensorflow_model_server (the real binary cannot be installed on these machines)."""
import json, os, sys
args = sys.argv[1:]
config = next((a.split("=", 1)[1] for a in args if a.startswith("--model_config_file=")), None)
with open({record!r}, "w") as f:
    json.dump({{"argv": sys.argv, "pid": os.getpid(), "config": open(config).read() if config else None}}, f)
{action}
'''
ACTIONS = {
    # Same pid, same flags: deploykit's compatible server becomes "tensorflow_model_server".
    "serve": 'os.execv(sys.executable, [sys.executable, "-m", "deploykit", "serve", *args])',
    "fail": 'print("E model_servers/main.cc: Invalid argument: stand-in refuses to start", file=sys.stderr)\n'
    "sys.exit(3)",
    "exit": "sys.exit(0)",
}


def stand_in(tmp_path: Path, action: str) -> tuple[Path, Path]:
    """A directory holding a stand-in ``tensorflow_model_server``, and the file it records to."""
    bin_dir, record = tmp_path / f"bin-{action}", tmp_path / f"argv-{action}.json"
    bin_dir.mkdir()
    script = bin_dir / "tensorflow_model_server"
    script.write_text(STAND_IN.format(python=sys.executable, record=str(record), action=ACTIONS[action]))
    script.chmod(0o755)
    return bin_dir, record


class ServeProcess:
    """``deploykit serve ...`` in a subprocess, its stderr collected line by line."""

    def __init__(self, args: list[str], path_prefix: Path | None = None, path: str | None = None) -> None:
        search = path if path is not None else os.environ["PATH"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": f"{path_prefix}:{search}" if path_prefix else search}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deploykit", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 180.0) -> None:
        with self._changed:
            found = self._changed.wait_for(
                lambda: any(text in line for line in self.lines) or self.process.poll() is not None, timeout
            )
        assert found and any(text in line for line in self.lines), f"no {text!r} in:\n" + "\n".join(self.lines)

    def finish(self, timeout: float = 60.0) -> int:
        code = self.process.wait(timeout)
        self._reader.join(10)
        return code

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)


def _check_half_plus_two(target: str) -> None:
    with Client(target, timeout=30) as client:
        got = client.predict("half", {"x": np.array([[1.0], [2.0], [5.0]], np.float32)})["y"]
    np.testing.assert_allclose(got, [[2.5], [3.0], [4.5]])


def test_launcher_runs_tf_serving_waits_through_grpc_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    """Stand-in on PATH (the real tensorflow_model_server cannot be installed here) running
    deploykit's compatible server with the flags the launcher gave it."""
    bin_dir, record = stand_in(tmp_path, "serve")
    grpc_port, rest_port = free_ports(2)
    args = ["--engine", "tfserving", "--model_base_path", str(HALF_PLUS_TWO), "--model_name", "half"]
    serve = ServeProcess([*args, "--port", str(grpc_port), "--rest_api_port", str(rest_port)], path_prefix=bin_dir)
    try:
        serve.wait_for("deploykit serve: TensorFlow Serving ready")
        recorded = json.loads(record.read_text())
        assert recorded["argv"] == [
            str(bin_dir / "tensorflow_model_server"),
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
            "--model_name=half",
            f"--model_base_path={HALF_PLUS_TWO.resolve()}",
        ]
        # Ready means answering: the launcher said so only after GetModelStatus said AVAILABLE.
        _check_half_plus_two(f"grpc://127.0.0.1:{grpc_port}")
        _check_half_plus_two(f"http://127.0.0.1:{rest_port}")
        serve.process.send_signal(signal.SIGTERM)
        code = serve.finish()
    finally:
        serve.process.kill()
    assert code == 0, serve.stderr
    assert f"engine TensorFlow Serving ({bin_dir / 'tensorflow_model_server'};" in serve.stderr
    assert "load-test reports: not self-reported" in serve.stderr
    # The server's own lines come through, prefixed.
    assert any(line.startswith("[tensorflow_model_server] ") and "ready on gRPC" in line for line in serve.lines)
    assert "stopping tensorflow_model_server (SIGTERM; SIGKILL after 10 s)" in serve.stderr
    assert "tensorflow_model_server stopped (exit status 0)" in serve.stderr
    with pytest.raises(ProcessLookupError):  # the server process is gone, not orphaned
        os.kill(recorded["pid"], 0)


def test_a_server_that_dies_before_ready_fails_the_command_with_its_stderr(tmp_path: Path) -> None:
    bin_dir, record = stand_in(tmp_path, "fail")
    binary, grpc_port = str(bin_dir / "tensorflow_model_server"), free_port()
    serve = ServeProcess(
        ["--engine", "tfserving", "--tfserving-binary", binary, "--model_base_path", str(HALF_PLUS_TWO)]
        + ["--port", str(grpc_port), "--rest_api_port", "0"]
    )
    try:
        code = serve.finish()
    finally:
        serve.process.kill()
    assert code == 1, serve.stderr
    assert "tensorflow_model_server exited with code 3 before it was ready; its last lines:" in serve.stderr
    assert "  E model_servers/main.cc: Invalid argument: stand-in refuses to start" in serve.stderr
    assert json.loads(record.read_text())["argv"][1:] == [
        f"--port={grpc_port}",
        "--rest_api_port=0",
        "--model_name=default",
        f"--model_base_path={HALF_PLUS_TWO.resolve()}",
    ]


def test_a_model_that_fails_to_load_fails_the_command(tmp_path: Path) -> None:
    bin_dir, _ = stand_in(tmp_path, "serve")
    (tmp_path / "corrupt" / "1").mkdir(parents=True)
    (tmp_path / "corrupt" / "1" / "saved_model.pb").write_bytes(b"not a SavedModel protobuf")
    serve = ServeProcess(
        ["--engine", "tfserving", "--model_base_path", str(tmp_path / "corrupt"), "--port", str(free_port())]
        + ["--rest_api_port", "0"],
        path_prefix=bin_dir,
    )
    try:
        code = serve.finish(timeout=180)
    finally:
        serve.process.kill()
    assert code == 1, serve.stderr
    # --model_base_path without --model_name: the model is called "default", as in TF Serving
    assert "error: default failed to load in tensorflow_model_server: version 1: " in serve.stderr
    assert "tensorflow_model_server stopped" in serve.stderr  # and it was stopped, not left running


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Two reference SavedModels and an ONNX model TF Serving cannot serve."""
    root = tmp_path / "repo"
    for name in ("half_plus_two_cpu", "half_plus_three"):
        source = TFSERVING_TESTDATA / f"saved_model_{name}"
        (root / name).mkdir(parents=True)
        os.symlink(source / "00000123", root / name / "1")  # read-only data: link, don't copy
    (root / "probe" / "1").mkdir(parents=True)
    (root / "probe" / "1" / "model.onnx").write_bytes(PROBE_ONNX.read_bytes())
    return root


def test_deployment_flags_and_model_config_file_are_passed_through(repo: Path, tmp_path: Path) -> None:
    bin_dir, record = stand_in(tmp_path, "exit")
    binary = str(bin_dir / "tensorflow_model_server")
    out = tmp_path / "serving"
    plan = deployment.plan(repo, only=("half_plus_three",))
    deployment.write(plan, out, deployment.WriteOptions(batching=batching_parameters(num_batch_threads=2)))
    grpc_port, rest_port = free_ports(2)
    ports = ["--port", str(grpc_port), "--rest_api_port", str(rest_port)]

    serve = ServeProcess([str(out), "--engine", "tfserving", "--tfserving-binary", binary, *ports])
    assert serve.finish() == 1  # the stand-in exits at once: "before it was ready"
    assert "tensorflow_model_server exited with code 0 before it was ready" in serve.stderr
    recorded = json.loads(record.read_text())
    root = out.resolve()
    assert recorded["argv"] == [
        binary,
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        f"--model_config_file={root}/models.config",
        "--enable_batching=true",
        f"--batching_parameters_file={root}/batching_parameters.txt",
        f"--monitoring_config_file={root}/monitoring.config",
    ]
    assert recorded["config"] == (out / "models.config").read_text()

    # A repository is deployed into a temporary directory first, and that is removed afterwards.
    serve = ServeProcess([str(repo), "--engine", "tfserving", "--tfserving-binary", binary, *ports])
    assert serve.finish() == 1
    argv = json.loads(record.read_text())["argv"]
    temporary = Path(argv[3].removeprefix("--model_config_file=")).parent
    # In the system temp dir (same file system here, so hard links): nothing left beside the repo on SIGKILL.
    assert temporary.name == "deployment" and temporary.parent.parent == Path(tempfile.gettempdir())
    assert argv == [
        binary,
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        f"--model_config_file={temporary}/models.config",
        f"--monitoring_config_file={temporary}/monitoring.config",  # no batching unless a deployment asks for it
    ]
    config = text_format.Parse(json.loads(record.read_text())["config"], config_pb2.ModelServerConfig())
    assert [c.name for c in config.model_config_list.config] == ["half_plus_three", "half_plus_two_cpu"]
    assert not temporary.parent.exists()
    assert "skipped probe v1: no saved_model.pb at the version root; not a SavedModel" in serve.stderr


def test_without_binary_or_docker_engine_it_falls_back_with_one_line(tmp_path: Path) -> None:
    if engine.docker_engine_reachable():
        pytest.skip("a Docker engine is reachable here: --docker would run the real image")
    empty = tmp_path / "bin"
    empty.mkdir()
    grpc_port = free_port()
    args = ["--engine", "tfserving", "--docker", "--model_base_path", str(HALF_PLUS_TWO), "--model_name", "half"]
    # PATH keeps the real docker client (if any): its `docker info` finds no engine.
    serve = ServeProcess(
        [*args, "--port", str(grpc_port), "--rest_api_port", "0"], path=f"{empty}:/usr/local/bin:/usr/bin:/bin"
    )
    try:
        serve.wait_for("(engine deploykit): ready on gRPC")
        _check_half_plus_two(f"grpc://127.0.0.1:{grpc_port}")
        serve.process.send_signal(signal.SIGTERM)
        code = serve.finish()
    finally:
        serve.process.kill()
    assert code == 0, serve.stderr
    fallback = [line for line in serve.lines if "not TensorFlow Serving" in line]
    assert fallback == [
        "deploykit serve: engine deploykit (deploykit's own TF-Serving-compatible server), not TensorFlow Serving: "
        "--docker: no Docker engine reachable (`docker info` failed)"
    ]


def test_engine_choice(tmp_path: Path, monkeypatch) -> None:
    bin_dir, _ = stand_in(tmp_path, "exit")
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert engine.choose_engine("tfserving") == engine.EngineChoice(
        "deploykit", reason="no tensorflow_model_server on PATH (give --tfserving-binary PATH, or --docker)"
    )
    monkeypatch.setenv("PATH", f"{empty}:{bin_dir}")
    assert engine.choose_engine("auto") == engine.EngineChoice("binary", str(bin_dir / "tensorflow_model_server"))
    monkeypatch.setattr(engine, "docker_engine_reachable", lambda: True)
    assert engine.choose_engine("tfserving", docker=True) == engine.EngineChoice("docker")
    for kwargs, message in (
        ({"engine": "deploykit", "docker": True}, "need --engine tfserving or auto"),
        ({"engine": "tfserving", "docker": True, "binary": str(bin_dir / "tensorflow_model_server")}, "not both"),
        ({"engine": "tfserving", "binary": str(empty)}, "not an executable file"),
        ({"engine": "triton"}, "expected one of deploykit, tfserving, auto"),
    ):
        with pytest.raises(UsageError, match=message):
            engine.choose_engine(**kwargs)


def test_auto_prefers_deploykit_when_tf_serving_cannot_serve_everything(repo: Path, tmp_path: Path) -> None:
    bin_dir, record = stand_in(tmp_path, "exit")
    request = ServeOptions(engine="auto", path=repo, tfserving_binary=str(bin_dir / "tensorflow_model_server"))
    fallback = launcher.launch(request)
    assert fallback == engine.Fallback(
        repo,
        "deploykit serve: engine deploykit (deploykit's own TF-Serving-compatible server), not TensorFlow Serving: "
        f"TF Serving cannot serve everything in {repo} "
        "(probe v1: no saved_model.pb at the version root; not a SavedModel)",
    )
    assert not record.exists()  # nothing was started
    if engine.docker_engine_reachable():
        return  # --docker below would run the real image
    out = tmp_path / "serving"
    deployment.write(deployment.plan(repo), out)
    fallback = launcher.launch(ServeOptions(engine="tfserving", path=out, docker=True))
    assert fallback.path == out / "models"  # deploykit's server serves a deployment's models/ in its place
    assert fallback.config_file == out / "models.config"  # with the deployment's policies and labels
    assert fallback.batching_file is None  # written without batching
    assert fallback.monitoring_file == out / "monitoring.config"
    assert fallback.line.endswith("not TensorFlow Serving: --docker: no Docker engine reachable (`docker info` failed)")


def test_docker_command_lines_are_exact(repo: Path, tmp_path: Path) -> None:
    """The command ``--docker`` runs (no Docker engine here, so it is checked, not run)."""
    single = engine.resolve_target(
        ServeOptions(
            engine="tfserving", path=repo / "half_plus_three", model_name="half", port=9000, rest_api_port=9001
        )
    )
    assert docker_command(
        str(single.mount), single.container_flags, grpc_port=9000, rest_port=9001, publish_host="127.0.0.1", name="dk"
    ) == [
        "docker", "run", "--rm", "--name", "dk",
        "-p", "127.0.0.1:9000:8500",
        "-p", "127.0.0.1:9001:8501",
        "-v", f"{(repo / 'half_plus_three').resolve()}:/models:ro",
        "--entrypoint", "tensorflow_model_server",
        "tensorflow/serving:latest",
        "--port=8500",
        "--rest_api_port=8501",
        "--model_name=half",
        "--model_base_path=/models",
    ]  # fmt: skip
    out = tmp_path / "serving"
    deployment.write(deployment.plan(repo), out)
    served = engine.resolve_target(ServeOptions(engine="tfserving", path=out, rest_api_port=0))
    assert served.models == ["half_plus_three", "half_plus_two_cpu"]
    assert served.skipped == []  # probe was left out when writing; the deployment serves all it holds
    command = docker_command(str(served.mount), served.container_flags, image="tensorflow/serving:2.19.0", rest_port=0)
    assert command == [
        "docker", "run", "--rm",
        "-p", "8500:8500",
        "-v", f"{out.resolve()}:/models:ro",
        "--entrypoint", "tensorflow_model_server",
        "tensorflow/serving:2.19.0",
        "--port=8500",
        "--rest_api_port=0",
        "--model_config_file=/models/models.docker.config",
    ]  # fmt: skip


def test_readiness_gives_up_on_a_server_that_never_answers_and_stop_escalates(tmp_path: Path) -> None:
    # A process that ignores SIGTERM and never listens.
    never = process.ServerProcess(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
            "time.sleep(120)",
        ],
        "never",
    ).start()
    try:
        with pytest.raises(Unreachable, match=r"never at 127.0.0.1:\d+ not ready after 1.5 s"):
            process.wait_ready(never, f"127.0.0.1:{free_port()}", ["m"], threading.Event(), timeout=1.5)
    finally:
        status = never.stop(grace=1.0)
    assert status == -signal.SIGKILL  # SIGTERM was ignored: SIGKILL after the grace period
    assert list(never.tail) == ["up"]
    stopping = threading.Event()
    stopping.set()
    asleep = process.ServerProcess(["sleep", "60"], "asleep").start()
    try:
        assert process.wait_ready(asleep, f"127.0.0.1:{free_port()}", ["m"], stopping) is False
    finally:
        assert asleep.stop() == -signal.SIGTERM


def test_writer_and_launcher_import_neither_framework() -> None:
    """They only write files and start processes: the lean serving install must run them."""
    code = (
        "import sys, deploykit.tfserving.launcher, deploykit.cli.tfserving_deploy\n"
        "print(','.join(m for m in ('tensorflow', 'torch', 'keras') if m in sys.modules) or 'none')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "none"


def _recorded_config(record: Path) -> config_pb2.ModelServerConfig:
    return text_format.Parse(json.loads(record.read_text())["config"], config_pb2.ModelServerConfig())


def test_one_model_directory_with_a_skipped_version_is_served_through_a_temporary_deployment(tmp_path: Path) -> None:
    """m/1 a SavedModel, m/2 ONNX: TF Serving given --model_base_path=m would load v2 (latest) and
    fail; the launcher serves a deployment holding only v1 instead."""
    bin_dir, record = stand_in(tmp_path, "exit")
    model = tmp_path / "m"
    (model / "2").mkdir(parents=True)
    os.symlink(TFSERVING_TESTDATA / "saved_model_half_plus_three" / "00000123", model / "1")
    (model / "2" / "model.onnx").write_bytes(PROBE_ONNX.read_bytes())
    grpc_port = free_port()
    serve = ServeProcess(
        ["--engine", "tfserving", "--tfserving-binary", str(bin_dir / "tensorflow_model_server")]
        + ["--model_base_path", str(model), "--model_name", "half", "--port", str(grpc_port), "--rest_api_port", "0"]
    )
    assert serve.finish() == 1  # the stand-in exits at once
    assert "skipped half v2: no saved_model.pb at the version root; not a SavedModel" in serve.stderr
    argv = json.loads(record.read_text())["argv"]
    assert argv[1:3] == [f"--port={grpc_port}", "--rest_api_port=0"]
    assert argv[3].startswith("--model_config_file=") and len(argv) == 4  # not --model_base_path
    (entry,) = _recorded_config(record).model_config_list.config
    assert entry.name == "half" and entry.base_path.endswith("/deployment/models/half")
    assert not Path(entry.base_path).exists()  # the temporary deployment was removed
    assert json.loads(record.read_text())["config"].count("num_versions: 1") == 1


def test_serve_flags_are_passed_to_tf_serving_under_their_names(repo: Path, tmp_path: Path) -> None:
    bin_dir, record = stand_in(tmp_path, "exit")
    binary = str(bin_dir / "tensorflow_model_server")
    batching = tmp_path / "batching.txt"
    batching.write_text(to_text(batching_parameters(num_batch_threads=1)))
    monitoring = TFSERVING_TESTDATA / "monitoring_config.txt"
    grpc_port, rest_port = free_ports(2)
    serve = ServeProcess(
        [str(repo), "--engine", "tfserving", "--tfserving-binary", binary]
        + ["--port", str(grpc_port), "--rest_api_port", str(rest_port)]
        + ["--version-policy", "all", "--label", "stable=1", "--label", "half_plus_three:canary=1"]
        + ["--enable_batching", "--batching_parameters_file", str(batching)]
        + ["--monitoring_config_file", str(monitoring)]
        + ["--file_system_poll_wait_seconds", "5", "--model_config_file_poll_wait_seconds", "30"]
        + ["--allow_version_labels_for_unavailable_models"]
    )
    assert serve.finish() == 1
    argv = json.loads(record.read_text())["argv"]
    temporary = Path(argv[3].removeprefix("--model_config_file=")).parent
    assert argv[1:] == [
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        f"--model_config_file={temporary}/models.config",
        "--model_config_file_poll_wait_seconds=30",
        "--file_system_poll_wait_seconds=5",
        "--enable_batching=true",
        f"--batching_parameters_file={batching}",
        f"--monitoring_config_file={monitoring}",  # the user's file replaces the temporary deployment's
        "--allow_version_labels_for_unavailable_models=true",
    ]
    # --version-policy and --label went into the temporary deployment's model config.
    config = _recorded_config(record).model_config_list.config
    assert {c.name: (c.model_version_policy.WhichOneof("policy_choice"), dict(c.version_labels)) for c in config} == {
        "half_plus_three": ("all", {"stable": 1, "canary": 1}),
        "half_plus_two_cpu": ("all", {"stable": 1}),
    }

    # TF Serving flags deploykit serve gained later go the same way (serve passes them in the request).
    socket_path = tmp_path / "grpc.sock"
    request = ServeOptions(
        engine="tfserving",
        path=repo / "half_plus_three",
        port=grpc_port,
        rest_api_port=0,
        tfserving_binary=binary,
        grpc_socket_path=socket_path,
        grpc_channel_arguments="grpc.max_connection_age_ms=2000",
        enable_serialization_as_tensor_content=True,
        rest_api_enable_cors_support=True,
    )
    with pytest.raises(LaunchError, match="exited with code 0 before it was ready"):
        launcher.launch(request)
    assert json.loads(record.read_text())["argv"][1:] == [
        f"--port={grpc_port}",
        "--rest_api_port=0",
        "--model_name=half_plus_three",
        f"--model_base_path={(repo / 'half_plus_three').resolve()}",
        f"--grpc_socket_path={socket_path}",
        "--grpc_channel_arguments=grpc.max_connection_age_ms=2000",
        "--enable_serialization_as_tensor_content=true",
        "--rest_api_enable_cors_support=true",
    ]

    # A model config file of the user's is passed as it is.
    config_file = tmp_path / "models.config"
    config_file.write_text(
        f'model_config_list {{ config {{ name: "three" base_path: "{repo / "half_plus_three"}" '
        'model_platform: "tensorflow" } }'
    )
    serve = ServeProcess(
        ["--engine", "tfserving", "--tfserving-binary", binary, "--model_config_file", str(config_file)]
        + ["--port", str(grpc_port), "--rest_api_port", "0"]
    )
    assert serve.finish() == 1
    assert json.loads(record.read_text())["argv"][1:] == [
        f"--port={grpc_port}",
        "--rest_api_port=0",
        f"--model_config_file={config_file}",
    ]


def test_flags_tf_serving_lacks_are_refused_precisely(repo: Path, tmp_path: Path) -> None:
    bin_dir, record = stand_in(tmp_path, "exit")
    binary = str(bin_dir / "tensorflow_model_server")
    out = tmp_path / "serving"
    deployment.write(deployment.plan(repo), out)
    mixed = tmp_path / "mixed.config"
    mixed.write_text(f'model_config_list {{ config {{ name: "probe" base_path: "{repo / "probe"}" }} }}')

    def request(**options) -> ServeOptions:
        return ServeOptions(
            engine=options.pop("engine", "tfserving"),
            path=options.pop("path", repo),
            port=free_port(),
            rest_api_port=0,
            **options,
        )

    for options, message in (
        ({"workers": 2}, "--workers 2: TensorFlow Serving is one process"),
        ({"ssl_cert_file": tmp_path / "cert.pem"}, "the --ssl_.* flags with --engine tfserving"),
        ({"file_system_poll_wait_seconds": 0.5}, "--file_system_poll_wait_seconds 0.5: TensorFlow Serving takes whole"),
        (
            {"path": out, "label": ["stable=1"], "version_policy": "all"},
            "--version-policy, --label: deployment .* fixes version policies and labels .*deploykit tfserving-deploy",
        ),
        ({"path": out, "enable_batching": True}, "--enable_batching: deployment"),
        ({"path": None}, "give one of a model repository .PATH or --model_base_path. or --model_config_file"),
        ({"model_config_file": mixed}, "give either PATH/--model_base_path or --model_config_file, not both"),
        (
            {"path": None, "model_config_file": mixed, "label": ["stable=1"]},
            "--version-policy/--label with --model_config_file: TF Serving reads them from the file",
        ),
        (
            {"path": None, "model_config_file": mixed},
            "selects versions TF Serving cannot load .probe v1: no saved_model.pb.*use --engine auto or deploykit",
        ),
    ):
        with pytest.raises(UsageError, match=message):
            launcher.launch(request(tfserving_binary=binary, **options))
    assert not record.exists()  # nothing was started
    # The same flags work where deploykit's server serves: auto falls back for what TF Serving cannot load.
    fallback = launcher.launch(request(engine="auto", tfserving_binary=binary, path=None, model_config_file=mixed))
    assert fallback.path is None and "TF Serving cannot serve everything in" in fallback.line
    with pytest.raises(UsageError, match="--model_config_file, --batching_parameters_file with --docker"):
        engine.check_for_tf_serving(
            request(docker=True, path=None, model_config_file=mixed, batching_parameters_file=tmp_path / "b")
        )


def test_a_port_in_use_is_refused_before_launching(repo: Path, tmp_path: Path) -> None:
    """Readiness would otherwise ask whatever already answers there."""
    bin_dir, record = stand_in(tmp_path, "exit")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for grpc_port, rest_port in ((port, 0), (free_port(), port)):
            request = ServeOptions(
                engine="tfserving",
                path=repo,
                port=grpc_port,
                rest_api_port=rest_port,
                tfserving_binary=str(bin_dir / "tensorflow_model_server"),
            )
            with pytest.raises(UsageError, match=f"port {port} on 127.0.0.1 is in use .*stop it or choose other"):
                launcher.launch(request)
    # A gRPC server (SO_REUSEPORT: a second one would bind the same port without error) is found too.
    other = grpc.server(futures.ThreadPoolExecutor(1))
    port = other.add_insecure_port("127.0.0.1:0")
    other.start()
    try:
        request = ServeOptions(
            engine="tfserving",
            path=repo,
            port=port,
            rest_api_port=0,
            tfserving_binary=str(bin_dir / "tensorflow_model_server"),
        )
        with pytest.raises(UsageError, match=f"port {port} on 127.0.0.1 is in use"):
            launcher.launch(request)
    finally:
        other.stop(None)
    assert not record.exists()


def test_temporary_deployment_goes_beside_the_repository_when_the_temp_dir_cannot_hard_link(
    repo: Path, tmp_path: Path, monkeypatch
) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(repo).st_dev:
        pytest.skip("needs a temp dir on another file system (/dev/shm)")
    plan = deployment.plan(repo)
    same = engine.temporary_root(plan)
    same.rmdir()
    assert same.parent == Path(tempfile.gettempdir())  # same file system: the temp dir
    other = Path(tempfile.mkdtemp(dir=shm))
    try:
        monkeypatch.setattr(tempfile, "tempdir", str(other))  # what TMPDIR=/dev/shm/... would do
        beside = engine.temporary_root(plan)
        assert beside.parent == repo.parent and beside.name.startswith(".repo.tfserving-")
        assert list(other.iterdir()) == []  # the failed link probe left nothing behind
        beside.rmdir()
    finally:
        shutil.rmtree(other)


def _check_both_models(target: str) -> None:
    """half_plus_two_cpu and half_plus_three, by version and through the ``stable`` label."""
    x = np.array([[1.0], [2.0], [5.0]], np.float32)
    with Client(target, timeout=30) as client:
        for model, offset in (("half_plus_two_cpu", 2.0), ("half_plus_three", 3.0)):
            for address in ({}, {"label": "stable"}, {"version": 1}):
                got = client.predict(model, {"x": x}, **address)["y"]
                np.testing.assert_allclose(got, 0.5 * x + offset, err_msg=f"{target} {model} {address}")


def _batched_models(rest_port: int, path: str = "/monitoring/prometheus/metrics") -> set[str]:
    """Models whose batch-size histogram counted batches: batching is on for them."""
    text = httpx.get(f"http://127.0.0.1:{rest_port}{path}", timeout=30).text
    return {
        line.split('model="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("deploykit_batch_size_count{") and float(line.rsplit(" ", 1)[1]) > 0
    }


@pytest.fixture
def reference_deployment(repo: Path, tmp_path: Path) -> tuple[Path, int, int]:
    """``deploykit tfserving-deploy`` of the reference SavedModels with a label and batching, for fixed ports."""
    grpc_port, rest_port = free_ports(2)
    out = tmp_path / "serving"
    result = CliRunner().invoke(
        app,
        ["tfserving-deploy", str(repo), "--out", str(out), "--label", "stable=1", "--num-batch-threads", "2"]
        + ["--grpc-port", str(grpc_port), "--rest-port", str(rest_port)],
    )
    assert result.exit_code == 0, result.output
    return out, grpc_port, rest_port


def test_the_printed_commands_serve_through_run_sh_and_the_launcher(
    reference_deployment: tuple[Path, int, int], tmp_path: Path, monkeypatch
) -> None:
    """What tfserving-deploy writes, run for real: ``run.sh binary`` and ``deploykit serve DEPLOYMENT
    --engine tfserving``, with the stand-in running deploykit's server on exactly those flags."""
    out, grpc_port, rest_port = reference_deployment
    bin_dir, record = stand_in(tmp_path, "serve")
    binary = str(bin_dir / "tensorflow_model_server")
    models = ["half_plus_three", "half_plus_two_cpu"]

    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")  # run.sh finds the stand-in on PATH
    run_sh = process.ServerProcess(["sh", str(out / "run.sh"), "binary"], "run.sh").start()
    printed = [binary, *deployment.read_record(out)["commands"]["binary"][1:]]
    try:
        assert process.wait_ready(run_sh, f"127.0.0.1:{grpc_port}", models, threading.Event(), timeout=180)
        assert json.loads(record.read_text())["argv"] == printed
        _check_both_models(f"grpc://127.0.0.1:{grpc_port}")
        _check_both_models(f"http://127.0.0.1:{rest_port}")
        # --enable_batching with the deployment's parameters (half_plus_three has a fixed batch dimension).
        assert _batched_models(rest_port) == {"half_plus_two_cpu"}
    finally:
        assert run_sh.stop() == 0  # exec all the way down: SIGTERM reached the server, which drained

    serve = ServeProcess(
        [str(out), "--engine", "tfserving", "--tfserving-binary", binary]
        + ["--port", str(grpc_port), "--rest_api_port", str(rest_port)]
    )
    try:
        serve.wait_for("deploykit serve: TensorFlow Serving ready")
        _check_both_models(f"grpc://127.0.0.1:{grpc_port}")
        _check_both_models(f"http://127.0.0.1:{rest_port}")
        assert _batched_models(rest_port) == {"half_plus_two_cpu"}
        serve.process.send_signal(signal.SIGTERM)
        assert serve.finish() == 0, serve.stderr
    finally:
        serve.process.kill()
    assert json.loads(record.read_text())["argv"] == printed


def test_fallback_serves_a_deployment_with_its_batching_and_monitoring_files(
    reference_deployment: tuple[Path, int, int], tmp_path: Path
) -> None:
    out, grpc_port, rest_port = reference_deployment
    # A deployment's monitoring.config is the user's to edit: the fallback must read it, not the default.
    (out / "monitoring.config").write_text(
        'prometheus_config { enable: true path: "/monitoring/prometheus/deployment" }\n'
    )
    empty = tmp_path / "bin"
    empty.mkdir()
    serve = ServeProcess(
        [str(out), "--engine", "tfserving", "--port", str(grpc_port), "--rest_api_port", str(rest_port)],
        path=str(empty),  # no tensorflow_model_server, no docker
    )
    try:
        serve.wait_for("(engine deploykit): ready on gRPC")
        _check_both_models(f"grpc://127.0.0.1:{grpc_port}")
        _check_both_models(f"http://127.0.0.1:{rest_port}")
        assert _batched_models(rest_port, "/monitoring/prometheus/deployment") == {"half_plus_two_cpu"}, (
            serve.stderr
        )  # batching file
        default = httpx.get(f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics", timeout=30)
        assert default.status_code == 400 and "Should be /monitoring/prometheus/deployment" in default.text
        serve.process.send_signal(signal.SIGTERM)
        assert serve.finish() == 0, serve.stderr
    finally:
        serve.process.kill()
    assert "not TensorFlow Serving: no tensorflow_model_server on PATH" in serve.stderr
