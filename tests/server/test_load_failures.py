"""Load failures a user can act on, said once and clearly (issue 13 items 12 and 13).

* A version whose framework is not installed names the extra to install, in the log, in
  GetModelStatus and in the error a request to it gets (before: ``No module named 'torch'``, then
  ``Servable not found``).
* A deleted base path is logged once and the model's status shows it; an unreadable one is one log
  line per change of state, not a traceback per poll.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from onnx_builders import write_affine_onnx

from deploykit.client import Client
from deploykit.errors import ModelNotFound
from deploykit.server import ServerConfig, ServerThread

HINT = "pip install 'deploykit[torch]'"


def _torchscript_version(root: Path) -> Path:
    """A TorchScript version directory as export writes it (the artifact is never opened: the
    framework import fails first)."""
    version = root / "scripted" / "1"
    version.mkdir(parents=True)
    (version / "model.pt").write_bytes(b"not opened")
    spec = {"name": "x", "dtype": "float32", "shape": [-1, 4]}
    manifest = {
        "schema_version": 1,
        "name": "scripted",
        "version": 1,
        "format": "torchscript",
        "framework": "torch",
        "artifact": "model.pt",
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
        "signature": {"inputs": [spec], "outputs": [dict(spec, name="y")]},
        "validation": {
            "runtime": "torchscript",
            "seed": 0,
            "batch_sizes": [],
            "golden": "golden.npz",
            "passed": True,
            "outputs": [],
        },
    }
    (version / "deploykit.json").write_text(json.dumps(manifest))
    return root


def test_a_missing_framework_names_the_extra_everywhere(tmp_path, monkeypatch, caplog, dataplane) -> None:
    """torch is installed in the test environment, so its absence is simulated: ``None`` in
    ``sys.modules`` makes ``import torch`` raise ModuleNotFoundError exactly as in a lean
    ``deploykit[serve]`` install (and deploykit's torch runtime module is unloaded first)."""
    monkeypatch.delitem(sys.modules, "deploykit.runtimes.torch", raising=False)
    monkeypatch.setitem(sys.modules, "torch", None)
    repo = _torchscript_version(tmp_path)
    write_affine_onnx(repo / "affine" / "1" / "model.onnx", 1.0, 1.0)
    config = ServerConfig(model_path=repo, grpc_port=0, rest_port=0, dataplane=dataplane)
    with caplog.at_level(logging.ERROR), ServerThread(config) as server:
        assert HINT in caplog.text  # the log
        client = Client(server.grpc_target)
        (status,) = client.status("scripted")
        assert status.state == "END" and HINT in status.error_message  # GetModelStatus
        with pytest.raises(ModelNotFound, match=r"Latest\(scripted\); version 1 could not be loaded: .*\[torch\]"):
            client.predict("scripted", {"x": np.ones((1, 4), np.float32)})  # a request: gRPC
        answer = httpx.post(f"{server.rest_target}/v1/models/scripted:predict", json={"instances": [[1, 2, 3, 4]]})
        assert answer.status_code == 404 and HINT in answer.json()["error"]  # and REST
        # The other model serves; an unknown model still gets TF Serving's plain message.
        assert client.predict("affine", {"x": np.ones((1, 4), np.float32)})["y"].tolist() == [[2.0] * 4]
        with pytest.raises(ModelNotFound) as unknown:
            client.predict("nothing", {"x": np.ones((1, 4), np.float32)})
        assert str(unknown.value).endswith("Servable not found for request: Latest(nothing)")
        client.close()


def _poll(server: ServerThread, times: int = 3) -> None:
    """Poll the base paths now, ``times`` times (the test drives polling: no timing involved)."""
    for _ in range(times):
        asyncio.run_coroutine_threadsafe(server.server.manager.poll(), server._loop).result(60)


def _lines(caplog, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == level and r.name == "deploykit.server.manager"]


def test_a_deleted_base_path_is_one_line_and_shows_in_status(tmp_path, caplog) -> None:
    model_dir = tmp_path / "repo" / "affine"
    write_affine_onnx(model_dir / "1" / "model.onnx", 1.0, 1.0)
    config = ServerConfig(model_path=tmp_path / "repo", grpc_port=0, rest_port=None, file_system_poll_seconds=0)
    x = {"x": np.ones((1, 4), np.float32)}
    with ServerThread(config) as server, Client(server.grpc_target) as client:
        backup = tmp_path / "moved"
        model_dir.rename(backup)
        with caplog.at_level(logging.INFO):
            _poll(server)
        (error,) = _lines(caplog, logging.ERROR)
        assert f"base path {model_dir} does not exist" in error.getMessage()
        assert "versions [1] keep serving from memory" in error.getMessage()
        (status,) = client.status("affine")
        assert status.state == "AVAILABLE" and "does not exist" in status.error_message
        assert client.predict("affine", x)["y"].tolist() == [[2.0] * 4]  # still serving

        caplog.clear()
        backup.rename(model_dir)
        with caplog.at_level(logging.INFO):
            _poll(server)
        (back,) = _lines(caplog, logging.INFO)
        assert "readable again" in back.getMessage() and not _lines(caplog, logging.ERROR)
        assert client.status("affine")[0].error_message == ""


def test_an_unreadable_base_path_is_one_line_per_change_not_a_traceback(tmp_path, caplog, monkeypatch) -> None:
    """Tests run as root in CI, where chmod 000 does not stop reading: the permission error is
    injected where the manager lists the base path (the first file system call of a poll)."""
    from deploykit.server import manager as manager_module

    write_affine_onnx(tmp_path / "repo" / "affine" / "1" / "model.onnx", 1.0, 1.0)
    config = ServerConfig(model_path=tmp_path / "repo", grpc_port=0, rest_port=None, file_system_poll_seconds=0)
    listing = manager_module.version_dirs
    with ServerThread(config) as server:

        def refused(path):
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(manager_module, "version_dirs", refused)
        with caplog.at_level(logging.INFO):
            _poll(server, times=5)
        (error,) = _lines(caplog, logging.ERROR)
        assert "cannot be read (Permission denied)" in error.getMessage()
        assert not any(r.exc_info for r in caplog.records), "no traceback"
        monkeypatch.setattr(manager_module, "version_dirs", listing)
        caplog.clear()
        with caplog.at_level(logging.INFO):
            _poll(server, times=3)
        assert len(_lines(caplog, logging.INFO)) == 1 and not _lines(caplog, logging.ERROR)
