"""TLS and mutual TLS on both ports, with certificates generated at test time (trustme)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import trustme
from lifecycle_helpers import build_slow, scrape, slow_expected, slow_inputs

from deploykit.client import AsyncClient, Client
from deploykit.errors import Unreachable, UsageError
from deploykit.server import ServerConfig, ServerThread
from deploykit.tls import ClientTls, ServerTls

pytestmark = pytest.mark.lean  # framework-free: runs in the lean environment too (scripts/test-lean.sh)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A server CA with a certificate for 127.0.0.1, a client CA with one client, and a stranger CA."""
    directory = tmp_path_factory.mktemp("pki")
    server_ca, client_ca, stranger_ca = trustme.CA(), trustme.CA(), trustme.CA()
    server_cert = server_ca.issue_cert("127.0.0.1", "localhost")
    files = {}
    for name, blob in (
        ("server_ca", server_ca.cert_pem),
        ("client_ca", client_ca.cert_pem),
        ("server_cert", server_cert.cert_chain_pems[0]),
        ("server_key", server_cert.private_key_pem),
    ):
        files[name] = directory / f"{name}.pem"
        blob.write_to_path(str(files[name]))
    for name, ca in (("client", client_ca), ("stranger", stranger_ca)):
        issued = ca.issue_cert(f"{name}@deploykit.test")
        files[f"{name}_cert"], files[f"{name}_key"] = directory / f"{name}_cert.pem", directory / f"{name}_key.pem"
        issued.cert_chain_pems[0].write_to_path(str(files[f"{name}_cert"]))
        issued.private_key_pem.write_to_path(str(files[f"{name}_key"]))
    return files


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    path = tmp_path_factory.mktemp("tls-repo")
    build_slow(path)
    return path


def _serve(repo, tls: ServerTls, dataplane: str) -> ServerThread:
    return ServerThread(ServerConfig(model_path=repo, grpc_port=0, rest_port=0, tls=tls, dataplane=dataplane)).start()


def _predict_ok(target: str, **tls_files) -> None:
    with Client(target, timeout=20, **{k: str(v) for k, v in tls_files.items()}) as client:
        np.testing.assert_allclose(client.predict("slow", slow_inputs(5))["y"], slow_expected(5), rtol=1e-5)


def test_tls_serves_clients_that_trust_the_ca_and_refuses_the_others(repo, pki, dataplane) -> None:
    server = _serve(repo, ServerTls.from_files(pki["server_cert"], pki["server_key"]), dataplane)
    try:
        assert server.grpc_target.startswith("grpcs://") and server.rest_target.startswith("https://")
        for target in (server.grpc_target, server.rest_target):
            _predict_ok(target, ca_file=pki["server_ca"])
            with pytest.raises(Unreachable), Client(target, timeout=2, ca_file=str(pki["client_ca"])) as client:
                client.predict("slow", slow_inputs(5))  # a CA that did not sign the server's certificate
        # Plaintext to a TLS port fails too (no silent downgrade).
        plain = server.grpc_target.replace("grpcs://", "grpc://")
        with pytest.raises(Unreachable), Client(plain, timeout=2) as client:
            client.predict("slow", slow_inputs(5))
        # The metrics endpoint is on the TLS REST port.
        samples = scrape(server.rest_target, verify=ClientTls.from_files(pki["server_ca"]).ssl_context())
        assert ("deploykit_requests_in_flight", ()) in samples
    finally:
        server.stop()


def test_mutual_tls_needs_a_client_certificate_from_the_client_ca(repo, pki, dataplane) -> None:
    server = _serve(repo, ServerTls.from_files(pki["server_cert"], pki["server_key"], pki["client_ca"]), dataplane)
    try:
        for target in (server.grpc_target, server.rest_target):
            _predict_ok(target, ca_file=pki["server_ca"], cert_file=pki["client_cert"], key_file=pki["client_key"])
            for refused in (
                {"ca_file": pki["server_ca"]},  # no client certificate
                {"ca_file": pki["server_ca"], "cert_file": pki["stranger_cert"], "key_file": pki["stranger_key"]},
            ):
                options = {k: str(v) for k, v in refused.items()}
                with pytest.raises(Unreachable), Client(target, timeout=2, **options) as client:
                    client.predict("slow", slow_inputs(5))
    finally:
        server.stop()


def test_async_client_speaks_mutual_tls(repo, pki, dataplane) -> None:
    server = _serve(repo, ServerTls.from_files(pki["server_cert"], pki["server_key"], pki["client_ca"]), dataplane)
    files = {"ca_file": str(pki["server_ca"]), "cert_file": str(pki["client_cert"]), "key_file": str(pki["client_key"])}

    async def run(target: str) -> np.ndarray:
        async with AsyncClient(target, timeout=20, **files) as client:
            return (await client.predict("slow", slow_inputs(5)))["y"]

    try:
        for target in (server.grpc_target, server.rest_target):
            np.testing.assert_allclose(asyncio.run(run(target)), slow_expected(5), rtol=1e-5)
    finally:
        server.stop()


def test_tf_serving_ssl_config_file(repo, pki, tmp_path, dataplane) -> None:
    config = tmp_path / "ssl.txt"
    config.write_text(
        f"server_key: {pki['server_key'].read_text()!r}\n"
        f"server_cert: {pki['server_cert'].read_text()!r}\n"
        f"custom_ca: {pki['client_ca'].read_text()!r}\n"
        "client_verify: true\n"
    )
    tls = ServerTls.from_ssl_config(config)
    assert tls.client_ca == pki["client_ca"].read_bytes()
    server = _serve(repo, tls, dataplane)
    try:
        _predict_ok(
            server.grpc_target, ca_file=pki["server_ca"], cert_file=pki["client_cert"], key_file=pki["client_key"]
        )
        with pytest.raises(Unreachable), Client(server.grpc_target, timeout=2, ca_file=str(pki["server_ca"])) as client:
            client.predict("slow", slow_inputs(5))
    finally:
        server.stop()


def test_tls_configuration_errors_are_precise(pki, tmp_path) -> None:
    with pytest.raises(UsageError, match=r"cannot read --ssl_cert_file .*missing\.pem: No such file"):
        ServerTls.from_files(tmp_path / "missing.pem", pki["server_key"])
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    with pytest.raises(UsageError, match=r"--ssl_key_file .*not\.pem is not a PEM file"):
        ServerTls.from_files(pki["server_cert"], not_pem)
    with pytest.raises(UsageError, match="do not form a usable pair"):
        ServerTls.from_files(pki["server_cert"], pki["client_key"]).ssl_context()
    config = tmp_path / "ssl.txt"
    config.write_text('server_cert: "x"\nclient_verify: true\n')
    with pytest.raises(UsageError, match="needs both server_cert and server_key"):
        ServerTls.from_ssl_config(config)
    config.write_text("server_kee: 1\n")
    with pytest.raises(UsageError, match="^Error parsing text-format tensorflow.serving.SSLConfig: "):
        ServerTls.from_ssl_config(config)
    with pytest.raises(UsageError, match="plaintext target"):
        Client("grpc://127.0.0.1:1", ca_file=str(pki["server_ca"]))
    with pytest.raises(UsageError, match="give both or neither"):
        Client("grpcs://127.0.0.1:1", cert_file=str(pki["client_cert"]))


def test_predict_command_over_mutual_tls(repo, pki, tmp_path, dataplane) -> None:
    from typer.testing import CliRunner

    from deploykit.cli import app

    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, **slow_inputs(5))
    server = _serve(repo, ServerTls.from_files(pki["server_cert"], pki["server_key"], pki["client_ca"]), dataplane)
    try:
        for target in (server.grpc_target, server.rest_target):
            args = ["predict", target, "slow", "--npz", str(inputs), "--json", "--ca-file", str(pki["server_ca"])]
            args += ["--cert-file", str(pki["client_cert"]), "--key-file", str(pki["client_key"])]
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 0, result.output
            np.testing.assert_allclose(json.loads(result.stdout)["y"], slow_expected(5), rtol=1e-5)
            result = CliRunner().invoke(app, [*args[:8], "--timeout", "2"])  # trusts the server, no client certificate
            assert result.exit_code == 3, result.output
    finally:
        server.stop()


def test_loadtest_over_mutual_tls(repo, pki, tmp_path, dataplane) -> None:
    from typer.testing import CliRunner

    from deploykit.cli import app

    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, **slow_inputs(5))
    tls = [
        "--ca-file",
        str(pki["server_ca"]),
        "--cert-file",
        str(pki["client_cert"]),
        "--key-file",
        str(pki["client_key"]),
    ]
    server = _serve(repo, ServerTls.from_files(pki["server_cert"], pki["server_key"], pki["client_ca"]), dataplane)
    try:
        for url in (f"{server.grpc_target}/slow", f"{server.rest_target}/v1/models/slow"):
            out = tmp_path / "report.json"
            args = ["loadtest", url, "--concurrency", "2", "--duration", "1s", "--warmup", "0.2s", "--window", "0.5s"]
            args += ["--max-trials", "1", "--npz", str(inputs), "-o", str(out), *tls]
            result = CliRunner().invoke(app, args)
            assert result.exit_code in (0, 4), result.output  # 4: not stable on a busy machine, not a TLS matter
            document = json.loads(out.read_text())
            assert document["engine"].startswith("deploykit-serve/")  # the TLS probe answered
            (level,) = document["levels"]
            assert level["count"]["ok"] > 0 and level["count"]["error"] == 0, level["count"]
    finally:
        server.stop()
