"""deploykit's shared client and load tester over the Open Inference Protocol (``v2+grpc://``,
``v2+http://`` targets): against deploykit serve (plaintext and TLS), and against a real v2 server
from PyPI, KServe's ModelServer serving an ONNX model through ONNX Runtime in its own virtual
environment (created once by the fixture, with pinned versions; a failure with the reason when it
cannot be installed)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import numpy as np
import pytest
from onnx_builders import write_affine_onnx

from deploykit.bench.peer_envs import KSERVE_PINS, kserve_python
from deploykit.bench.peers import start_peer
from deploykit.client import AsyncClient, Client
from deploykit.errors import InvalidInput, ModelNotFound, Unimplemented
from deploykit.loadtest.target import parse_load_target
from deploykit.server import ServerConfig, ServerThread
from deploykit.server.model_config import VersionPolicy


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("v2client") / "models"
    write_affine_onnx(root / "affine" / "1" / "model.onnx", 2.0, 1.0)
    write_affine_onnx(root / "affine" / "2" / "model.onnx", 2.0, 100.0)
    return root


@pytest.fixture(scope="module")
def server(repo):
    config = ServerConfig(
        model_path=repo, grpc_port=0, rest_port=0, file_system_poll_seconds=0, version_policy=VersionPolicy("all")
    )
    with ServerThread(config) as running:
        yield running


def _targets(server) -> list[str]:
    return [
        f"v2+grpc://127.0.0.1:{server.server.grpc_port}",
        f"v2+http://127.0.0.1:{server.server.rest_port}",
    ]


@pytest.mark.parametrize("kind", ["grpc", "http"])
@pytest.mark.parametrize("tensor_content", [True, False], ids=["raw", "typed"])
def test_client_predicts_over_v2(server, kind: str, tensor_content: bool) -> None:
    target = _targets(server)[kind == "http"]
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    with Client(target, tensor_content=tensor_content) as client:
        client.wait_until_ready("affine")
        np.testing.assert_array_equal(client.predict("affine", {"x": x})["y"], x * 2 + 100)
        np.testing.assert_array_equal(client.predict("affine", {"x": x}, version=1)["y"], x * 2 + 1)
        signature = client.metadata("affine")["serving_default"]
        assert [str(t) for t in signature.inputs] == ["x:float32[-1,4]"]
        assert [s.version for s in client.status("affine")] == [1, 2]
        with pytest.raises(ModelNotFound, match="Request for unknown model: 'nope' is not found"):
            client.predict("nope", {"x": x})
        with pytest.raises(InvalidInput, match="data-type is 'FP64'"):
            client.predict("affine", {"x": x.astype(np.float64)})
        with pytest.raises(Unimplemented):
            client.classify("affine", [{"x": 1.0}])


def test_async_client_over_v2(server) -> None:
    async def predict(target: str) -> list:
        async with AsyncClient(target) as client:
            return (await client.predict("affine", {"x": np.ones((1, 4), np.float32)}))["y"].tolist()

    for target in _targets(server):
        assert asyncio.run(predict(target)) == [[102.0] * 4]


def test_loadtest_over_v2_against_deploykit_serve(server) -> None:
    from deploykit.loadtest.api import loadtest
    from deploykit.loadtest.runner import RunSettings

    for text in (
        f"v2+grpc://127.0.0.1:{server.server.grpc_port}/affine",
        f"v2+http://127.0.0.1:{server.server.rest_port}/v2/models/affine/versions/1",
    ):
        target = parse_load_target(text)
        assert str(target) == text
        settings = RunSettings(mode="closed", levels=(1,), requests=50, warmup_s=0, window_s=0.5, max_trials=1)
        report = loadtest(target, settings)
        (level,) = report["levels"]
        assert level["count"]["error"] == 0 and level["count"]["ok"] == 50
        assert report["engine"].startswith("deploykit-serve/")
        assert level["breakdown_ms"]["compute"]["p50"] > 0  # Server-Timing read from v2 answers too


# ------------------------------------------------------------------------------------ a real v2 server


def _kserve_python() -> Path:
    """KServe's environment (deploykit/bench/peer_envs.py), built now unless .ci/run built it already."""
    try:
        return kserve_python()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        # A failure, not a skip: PyPI is reachable wherever this suite runs, and CI must not pass
        # without the real peer having been exercised.
        stderr = getattr(exc, "stderr", b"") or b""
        pytest.fail(f"KServe could not be installed ({' '.join(KSERVE_PINS)}): {exc} {stderr.decode()[-1000:]}")


@pytest.fixture(scope="module")
def kserve(tmp_path_factory):
    """KServe's ModelServer on free ports, serving ``affine`` (y = 2x + 1) with ONNX Runtime (the bench's
    peer model class, deploykit/bench/peer_servers/kserve_onnx.py)."""
    python = _kserve_python()
    model = write_affine_onnx(tmp_path_factory.mktemp("kserve") / "model.onnx", 2.0, 1.0)
    proc = start_peer("kserve", python, "affine", model, tmp_path_factory.mktemp("kserve-log") / "kserve.log")
    try:
        with Client(f"v2+http://127.0.0.1:{proc.http_port}", timeout=120) as client:
            client.wait_until_ready("affine", timeout=120)
        yield proc.http_port, proc.port
    finally:
        proc.stop()


@pytest.mark.slow
def test_client_and_loadtest_against_kserve(kserve, tmp_path) -> None:
    from deploykit.loadtest.api import loadtest
    from deploykit.loadtest.runner import RunSettings

    http, grpc_port = kserve
    x = np.ones((3, 4), np.float32)
    for target, content in ((f"v2+grpc://127.0.0.1:{grpc_port}", True), (f"v2+http://127.0.0.1:{http}", False)):
        # KServe's REST takes JSON bodies only with Content-Type: application/json (typed); binary works too.
        with Client(target, tensor_content=content) as client:
            assert client.predict("affine", {"x": x})["y"].tolist() == (x * 2 + 1).tolist()
            assert [str(t) for t in client.metadata("affine")["serving_default"].outputs] == ["y:float32[-1,4]"]
    for text in (f"v2+grpc://127.0.0.1:{grpc_port}/affine", f"v2+http://127.0.0.1:{http}/v2/models/affine"):
        settings = RunSettings(mode="closed", levels=(2,), requests=200, warmup_s=0, window_s=0.5, max_trials=1)
        report = loadtest(parse_load_target(text), settings)
        (level,) = report["levels"]
        assert level["count"]["error"] == 0 and level["count"]["ok"] == 200, level["count"]
        assert report["engine"] == "kserve 0.21.0 (v2 server metadata)"


def test_v2_over_tls_and_mutual_tls(repo, tmp_path) -> None:
    """``v2+grpcs://`` and ``v2+https://`` with the client's CA file, and a client certificate."""
    import trustme

    from deploykit.tls import ServerTls

    server_ca, client_ca = trustme.CA(), trustme.CA()
    issued, client = server_ca.issue_cert("127.0.0.1"), client_ca.issue_cert("client@deploykit.test")
    files = {}
    for name, blob in (
        ("ca", server_ca.cert_pem),
        ("client_ca", client_ca.cert_pem),
        ("cert", issued.cert_chain_pems[0]),
        ("key", issued.private_key_pem),
        ("client_cert", client.cert_chain_pems[0]),
        ("client_key", client.private_key_pem),
    ):
        files[name] = tmp_path / f"{name}.pem"
        blob.write_to_path(str(files[name]))
    tls = ServerTls.from_files(files["cert"], files["key"], files["client_ca"])
    config = ServerConfig(model_path=repo, grpc_port=0, rest_port=0, tls=tls, file_system_poll_seconds=0)
    with ServerThread(config) as running:
        for target in (
            f"v2+grpcs://127.0.0.1:{running.server.grpc_port}",
            f"v2+https://127.0.0.1:{running.server.rest_port}",
        ):
            with Client(
                target, ca_file=files["ca"], cert_file=files["client_cert"], key_file=files["client_key"]
            ) as secure:
                assert secure.predict("affine", {"x": np.ones((1, 4), np.float32)})["y"].tolist() == [[102.0] * 4]


def test_compare_and_predict_cli_put_tf_serving_api_and_v2_side_by_side(server, tmp_path) -> None:
    """The same payload over TF Serving's API and over v2, on one server, in one comparison."""
    import json

    from typer.testing import CliRunner

    from deploykit.cli import app

    grpc_port, rest_port = server.server.grpc_port, server.server.rest_port
    out = tmp_path / "compare.json"
    targets = [
        f"grpc://127.0.0.1:{grpc_port}/affine",
        f"v2+grpc://127.0.0.1:{grpc_port}/affine",
        f"v2+http://127.0.0.1:{rest_port}/v2/models/affine",
    ]
    options = ["--concurrency", "1", "--duration", "0.6s", "--warmup", "0.2s", "--window", "0.2s", "--rounds", "1"]
    result = CliRunner().invoke(app, ["compare", *targets, *options, "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [lv["target"] for lv in report["levels"]] == targets
    assert all(lv["count"]["error"] == 0 and lv["count"]["ok"] > 0 for lv in report["levels"])
    predicted = CliRunner().invoke(app, ["predict", f"v2+grpc://127.0.0.1:{grpc_port}", "affine", "--json"])
    assert predicted.exit_code == 0, predicted.output
    assert np.asarray(json.loads(predicted.stdout)["y"]).shape == (1, 4)
