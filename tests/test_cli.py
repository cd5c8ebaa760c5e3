"""The command line: help, version, exit codes, errors, lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from deploykit import __version__
from deploykit.cli import app

runner = CliRunner()

HEAVY = ("torch", "tensorflow", "keras")


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)


def test_help_and_version_import_no_framework() -> None:
    """`deploykit --help` / `--version` (and importing the CLI) stay free of torch and TensorFlow."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from deploykit.cli import app\n"
        "r = CliRunner()\n"
        "assert r.invoke(app, ['--help']).exit_code == 0\n"
        "assert r.invoke(app, ['--version']).exit_code == 0\n"
        "assert r.invoke(app, ['train', '--help']).exit_code == 0\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_importtime_shows_no_framework() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import deploykit.cli"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    assert "deploykit" in imported
    assert not imported & set(HEAVY)


@pytest.mark.parametrize("command", sorted(typer.main.get_command(app).commands))
def test_every_command_has_working_help(command: str) -> None:
    """Help texts are rich markup: a bracket that looks like a tag crashes --help (it once did)."""
    result = runner.invoke(app, [command, "--help"], terminal_width=120)
    assert result.exit_code == 0, result.output or repr(result.exception)
    assert "Usage" in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"deploykit {__version__}"


def test_console_script_runs() -> None:
    exe = Path(sys.executable).with_name("deploykit")
    done = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "train" in done.stdout and "doctor" in done.stdout


def test_usage_errors_exit_2() -> None:
    assert runner.invoke(app, ["train", "--model", "rnn"]).exit_code == 2
    assert runner.invoke(app, ["train", "--framework", "jax"]).exit_code == 2
    assert runner.invoke(app, ["train", "--epochs", "-1"]).exit_code == 2
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2


def test_deploykit_error_is_one_line_and_exit_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, X=np.zeros((6, 4)))
    out = tmp_path / "out"
    result = runner.invoke(app, ["train", "--data", str(bad), "--out", str(out)])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "missing array(s) y" in lines[0]
    assert "Traceback" not in result.output
    assert not out.exists()


def test_bad_lr_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--lr", "-1", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "--lr must be a positive number" in result.stderr


def test_doctor_json_reports_the_machine() -> None:
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["python"].startswith("3.")
    assert report["packages"]["deploykit"] == __version__
    working = report["onnxruntime_working_providers"]
    assert working[-1] == "CPUExecutionProvider"
    # A provider is only "working" when it was also built in; nothing is invented.
    assert set(working) <= set(report["onnxruntime_built_providers"])
    if not report["gpus"]:
        assert "CUDAExecutionProvider" not in working


def test_doctor_probe_prints_no_provider_errors() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("deploykit")), "doctor"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0
    assert "EP Error" not in done.stdout + done.stderr
    assert "Serving" in done.stdout
