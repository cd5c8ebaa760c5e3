"""Version policies, labels, repository and config-file polling, rollover, ReloadConfig.

Real servers on loopback serving real ONNX models; each version computes ``y = x + version``, so
an answer says which version computed it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from conftest import TFSERVING_TESTDATA
from onnx_builders import add_version, write_affine_onnx

from deploykit.client import Client
from deploykit.errors import InvalidInput, ModelNotFound, UsageError
from deploykit.server import ServerConfig, ServerThread
from deploykit.server.model_config import CONFIG_PARSE_ERROR, VersionPolicy, parse, read_file

X = np.arange(8, dtype=np.float32).reshape(2, 4)


def _version_of(outputs) -> int:
    """Which version computed ``outputs`` (y = x + version)."""
    offsets = np.unique(outputs["y"] - X)
    assert len(offsets) == 1, offsets
    return int(offsets[0])


def _wait_for(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _states(client: Client, model: str) -> dict[int, str]:
    try:
        return {s.version: s.state for s in client.status(model)}
    except ModelNotFound:
        return {}


def _serve(**options) -> ServerThread:
    options.setdefault("grpc_port", 0)
    options.setdefault("rest_port", 0)
    return ServerThread(ServerConfig(**options))


# ------------------------------------------------------------------------------ policies and labels


def test_version_policy_selection() -> None:
    on_disk = [1, 2, 5, 9]
    assert VersionPolicy().select(on_disk) == {9}
    assert VersionPolicy.parse("latest:2").select(on_disk) == {5, 9}
    assert VersionPolicy.parse("latest:0").select(on_disk) == {9}  # TF Serving: max(num_versions, 1)
    assert VersionPolicy.parse("all").select(on_disk) == set(on_disk)
    assert VersionPolicy.parse("specific:2,7").select(on_disk) == {2}
    for bad in ("newest", "latest:x", "specific:", "all:3"):
        with pytest.raises(UsageError, match="expected latest, latest:N, all or specific"):
            VersionPolicy.parse(bad)


def test_policies_and_labels_over_grpc_and_rest(tmp_path: Path) -> None:
    base = tmp_path / "affine"
    for version in (1, 2, 3):
        add_version(base, version)
    config = dict(
        model_path=base,
        model_name="affine",
        version_policy=VersionPolicy.parse("specific:1,2"),
        labels=[(None, "stable", 1), ("affine", "canary", 2)],
    )
    with _serve(**config) as server, Client(server.grpc_target) as client:
        assert _states(client, "affine") == {1: "AVAILABLE", 2: "AVAILABLE"}
        assert _version_of(client.predict("affine", {"x": X})) == 2  # latest of the served ones
        assert _version_of(client.predict("affine", {"x": X}, version=1)) == 1
        assert _version_of(client.predict("affine", {"x": X}, label="stable")) == 1
        assert _version_of(client.predict("affine", {"x": X}, label="canary")) == 2
        with pytest.raises(ModelNotFound, match=r"Servable not found for request: Specific\(affine, 3\)"):
            client.predict("affine", {"x": X}, version=3)
        with pytest.raises(InvalidInput, match="Unrecognized servable version label: beta"):
            client.predict("affine", {"x": X}, label="beta")
        reply = httpx.post(f"{server.rest_target}/v1/models/affine/labels/stable:predict", json={"inputs": X.tolist()})
        assert reply.status_code == 200 and np.allclose(reply.json()["outputs"], X + 1)
        reply = httpx.get(f"{server.rest_target}/v1/models/affine/labels/canary/metadata")
        assert reply.status_code == 200 and reply.json()["model_spec"]["version"] == "2"


def test_a_label_on_a_version_that_does_not_serve_fails_the_start(tmp_path: Path) -> None:
    add_version(tmp_path / "affine", 1)
    server = _serve(model_path=tmp_path / "affine", model_name="affine", labels=[(None, "canary", 7)])
    with pytest.raises(UsageError, match="assign label to version 7 of model affine, which is not currently available"):
        server.start()


# ------------------------------------------------------------------------------ rollover


def test_a_new_version_takes_over_under_load_without_one_failed_request(tmp_path: Path) -> None:
    base = tmp_path / "affine"
    add_version(base, 1)
    stop = threading.Event()
    seen: dict[int, list[int]] = {}
    failures: list[BaseException] = []

    def closed_loop(worker: int, target: str) -> None:
        versions = seen.setdefault(worker, [])
        with Client(target, timeout=30) as client:
            while not stop.is_set():
                try:
                    versions.append(_version_of(client.predict("affine", {"x": X})))
                except BaseException as exc:  # every failure is a test failure, whatever it is
                    failures.append(exc)

    with _serve(model_path=base, model_name="affine", file_system_poll_seconds=0.05) as server:
        targets = [server.grpc_target] * 3 + [server.rest_target]
        workers = [threading.Thread(target=closed_loop, args=(i, t)) for i, t in enumerate(targets)]
        for worker in workers:
            worker.start()
        try:
            _wait_for(lambda: all(len(v) > 20 for v in seen.values()) and len(seen) == 4, "load on version 1")
            add_version(base, 2)
            _wait_for(lambda: all(v[-1] == 2 for v in seen.values()), "every client to get version 2")
            counts = {i: len(v) for i, v in seen.items()}
            _wait_for(lambda: all(len(seen[i]) > counts[i] + 20 for i in seen), "more load on version 2")
            add_version(base, 3, broken=True)  # a broken version leaves version 2 serving
            with Client(server.grpc_target) as client:
                states = _wait_for(
                    lambda: _states(client, "affine").get(3) == "END" and _states(client, "affine"), "v3"
                )
                assert states == {1: "END", 2: "AVAILABLE", 3: "END"}
                (broken,) = client.status("affine", version=3)
                assert "INVALID_PROTOBUF" in broken.error_message or "Protobuf parsing failed" in broken.error_message
            counts = {i: len(v) for i, v in seen.items()}
            _wait_for(lambda: all(len(seen[i]) > counts[i] + 20 for i in seen), "load after the broken version")
        finally:
            stop.set()
            for worker in workers:
                worker.join(30)
    assert not failures, f"{len(failures)} failed requests during the rollover, first: {failures[0]!r}"
    for versions in seen.values():
        switch = versions.index(2)
        assert set(versions[:switch]) == {1} and set(versions[switch:]) == {2}, "a client went back to version 1"


# ------------------------------------------------------------------------------ config files


def _config_text(models: dict[str, Path]) -> str:
    entries = "".join(
        f'  config {{ name: "{n}" base_path: "{p}" model_platform: "onnx" }}\n' for n, p in models.items()
    )
    return "model_config_list {\n" + entries + "}\n"


def test_reference_config_files_parse_and_bad_ones_fail_as_tf_serving() -> None:
    text = (TFSERVING_TESTDATA / "good_model_config.txt").read_text()
    models = parse(text, "good_model_config.txt")
    assert [(m.name, str(m.base_path), m.platform) for m in models] == [
        ("half_plus_two", "${TEST_HALF_PLUS_TWO_DIR}", "tensorflow"),
        ("half_plus_three", "${TEST_HALF_PLUS_THREE_DIR}", "tensorflow"),
    ]
    assert all(m.policy == VersionPolicy() for m in models)
    with pytest.raises(UsageError, match=f"^{CONFIG_PARSE_ERROR}: .*bad_model_config.txt"):
        read_file(TFSERVING_TESTDATA / "bad_model_config.txt")
    with pytest.raises(UsageError, match="Illegal to list model a multiple times"):
        parse('model_config_list { config { name: "a" base_path: "/x" } config { name: "a" base_path: "/y" } }', "t")


def test_a_bad_config_file_fails_the_command_with_tf_servings_message() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "deploykit",
            "serve",
            f"--model_config_file={TFSERVING_TESTDATA / 'bad_model_config.txt'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert CONFIG_PARSE_ERROR in result.stderr


def test_the_reference_two_model_config_serves_both(tmp_path: Path) -> None:
    text = (TFSERVING_TESTDATA / "good_model_config.txt").read_text()
    text = text.replace("${TEST_HALF_PLUS_TWO_DIR}", str(TFSERVING_TESTDATA / "saved_model_half_plus_two_cpu"))
    text = text.replace("${TEST_HALF_PLUS_THREE_DIR}", str(TFSERVING_TESTDATA / "saved_model_half_plus_three"))
    config_file = tmp_path / "models.config"
    config_file.write_text(text)
    x = np.array([[1.0], [2.0], [5.0]], np.float32)
    with _serve(model_config_file=config_file) as server, Client(server.grpc_target) as client:
        np.testing.assert_allclose(client.predict("half_plus_two", {"x": x})["y"], 0.5 * x + 2)
        np.testing.assert_allclose(client.predict("half_plus_three", {"x": x})["y"], 0.5 * x + 3)
        assert _states(client, "half_plus_two") == {123: "AVAILABLE"}


def test_config_file_polling_applies_changes_and_survives_bad_edits(tmp_path: Path) -> None:
    for name in ("a", "b"):
        add_version(tmp_path / name, 1)
    config_file = tmp_path / "models.config"
    config_file.write_text(_config_text({"a": tmp_path / "a"}))
    with (
        _serve(model_config_file=config_file, model_config_poll_seconds=0.1) as server,
        Client(server.grpc_target) as client,
    ):
        assert _states(client, "b") == {}
        config_file.write_text(_config_text({"a": tmp_path / "a", "b": tmp_path / "b"}))
        _wait_for(lambda: _states(client, "b") == {1: "AVAILABLE"}, "model b to load")
        config_file.write_text("model_config_list { config { name: ")  # unparsable: logged, ignored
        time.sleep(0.5)
        assert _version_of(client.predict("a", {"x": X})) == 1 and _version_of(client.predict("b", {"x": X})) == 1
        config_file.write_text(_config_text({"b": tmp_path / "b"}))
        _wait_for(lambda: _states(client, "a") == {}, "model a to be unloaded")
        with pytest.raises(ModelNotFound, match=r"Latest\(a\)"):
            client.predict("a", {"x": X})


def test_no_config_reload_with_poll_period_zero(tmp_path: Path) -> None:
    for name in ("a", "b"):
        add_version(tmp_path / name, 1)
    config_file = tmp_path / "models.config"
    config_file.write_text(_config_text({"a": tmp_path / "a"}))
    with (
        _serve(model_config_file=config_file, model_config_poll_seconds=0) as server,
        Client(server.grpc_target) as client,
    ):
        config_file.write_text(_config_text({"a": tmp_path / "a", "b": tmp_path / "b"}))
        time.sleep(1.0)  # ten times what the polling test needs to see a change
        assert _states(client, "b") == {}


# ------------------------------------------------------------------------------ ModelService/HandleReloadConfigRequest


def test_reload_config_request_through_the_official_stub(tmp_path: Path) -> None:
    from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

    for name in ("a", "b"):
        add_version(tmp_path / name, 1)
    add_version(tmp_path / "b", 2)
    admin = dict(admin_apis=True, admin_model_roots=[tmp_path])  # reloads are refused by default (test_admin.py)
    with _serve(model_path=tmp_path / "a", model_name="a", **admin) as server, Client(server.grpc_target) as client:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}")
        stub = model_service_pb2_grpc.ModelServiceStub(channel)

        request = model_management_pb2.ReloadConfigRequest()
        entry = request.config.model_config_list.config.add(name="b", base_path=str(tmp_path / "b"))
        entry.model_version_policy.all.SetInParent()
        entry.version_labels["stable"] = 1
        response = stub.HandleReloadConfigRequest(request, timeout=60)
        assert response.status.error_code == 0
        assert _states(client, "b") == {1: "AVAILABLE", 2: "AVAILABLE"}
        assert _states(client, "a") == {}  # reload replaces the whole set
        assert _version_of(client.predict("b", {"x": X}, label="stable")) == 1

        entry.version_labels["canary"] = 9
        with pytest.raises(grpc.RpcError) as info:
            stub.HandleReloadConfigRequest(request, timeout=60)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "assign label to version 9 of model b" in info.value.details()

        custom = model_management_pb2.ReloadConfigRequest()
        custom.config.custom_model_config.type_url = "type.googleapis.com/x"
        with pytest.raises(grpc.RpcError) as info:
            stub.HandleReloadConfigRequest(custom, timeout=60)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Only ModelConfigList is currently supported" in info.value.details()
        channel.close()


def test_a_tensorflow_model_server_command_line_is_translated() -> None:
    import typer

    from deploykit.cli import app, tfserving_flags

    serve = typer.main.get_command(app).commands["serve"]
    argv = [
        "--enable_model_warmup=false",
        "--allow_version_labels_for_unavailable_models=true",
        "--port=9",
        "--num_load_threads",
        "4",
        "--flush_filesystem_caches=false",
        "--tensorflow_intra_op_parallelism=2",
    ]
    translated, notes = tfserving_flags.translate(argv, serve)
    assert translated == [
        "--no-enable_model_warmup",
        "--allow_version_labels_for_unavailable_models",
        "--port=9",
        "--intra_op_threads=2",
    ]
    assert [n.split(" (")[0] for n in notes] == [
        "ignoring TF Serving flag --num_load_threads",
        "ignoring TF Serving flag --flush_filesystem_caches",
    ]


# ------------------------------------------------------------------------------ review findings


def test_a_label_moves_with_the_rollover_without_failed_requests(tmp_path: Path) -> None:
    """Labels move as soon as the new version serves, before the old one drains (not after)."""
    from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

    base = tmp_path / "affine"
    add_version(base, 1)
    add_version(base, 2)
    config = dict(model_path=base, model_name="affine", version_policy=VersionPolicy.parse("specific:1"))
    stop, seen, failures = threading.Event(), [], []
    with _serve(**config, labels=[(None, "stable", 1)], admin_apis=True) as server:

        def closed_loop() -> None:
            with Client(server.grpc_target, timeout=30) as client:
                while not stop.is_set():
                    try:
                        seen.append(_version_of(client.predict("affine", {"x": X}, label="stable")))
                    except BaseException as exc:
                        failures.append(exc)

        workers = [threading.Thread(target=closed_loop) for _ in range(3)]
        for worker in workers:
            worker.start()
        try:
            _wait_for(lambda: len(seen) > 30, "load on the label")
            request = model_management_pb2.ReloadConfigRequest()
            entry = request.config.model_config_list.config.add(name="affine", base_path=str(base))
            entry.model_version_policy.specific.versions.append(2)
            entry.version_labels["stable"] = 2
            with grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as channel:
                model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(request, timeout=60)
            count = len(seen)
            _wait_for(lambda: len(seen) > count + 30, "load after the reload")
        finally:
            stop.set()
            for worker in workers:
                worker.join(30)
    assert not failures, f"{len(failures)} failed label requests, first: {failures[0]!r}"
    assert seen[-1] == 2 and set(seen) == {1, 2}


def test_a_failed_version_is_retried_when_its_files_change(tmp_path: Path) -> None:
    """A version seen half-copied by a poll fails to load; once its files are complete it loads."""
    base = tmp_path / "affine"
    add_version(base, 1)
    server = _serve(model_path=base, model_name="affine", file_system_poll_seconds=0.05)
    with server, Client(server.grpc_target) as client:
        add_version(base, 2, broken=True)
        _wait_for(lambda: _states(client, "affine").get(2) == "END", "the broken version 2 to fail")
        time.sleep(0.3)  # several polls with unchanged files: not retried, version 1 serves
        assert _states(client, "affine") == {1: "AVAILABLE", 2: "END"}
        write_affine_onnx(base / "2" / "model.onnx", 1.0, 2.0)  # the copy completes
        _wait_for(lambda: _states(client, "affine") == {1: "END", 2: "AVAILABLE"}, "version 2 to load")
        assert _version_of(client.predict("affine", {"x": X})) == 2


def test_a_retiring_version_is_not_closed_under_a_cancelled_request(tmp_path: Path) -> None:
    """A request whose client gave up still computes on its thread; the version it runs on must
    stay open until that computation ends (closing a session mid-run crashes frameworks)."""
    from lifecycle_helpers import build_slow, iterations_for, slow_inputs

    base = build_slow(tmp_path, "slow")
    (base / "2").mkdir()
    (base / "2" / "model.onnx").write_bytes((base / "1" / "model.onnx").read_bytes())
    hidden = tmp_path / "later"
    (base / "2").rename(hidden)  # version 2 is published below, while version 1 computes
    iterations = iterations_for(1.5, base)
    events: list[str] = []
    with _serve(model_path=base, model_name="slow", file_system_poll_seconds=0.05) as server:
        runtime = server.server.service.registry.get("slow", 1).runtime
        real_predict, real_close = runtime.predict, runtime.close

        def predict(inputs, signature_name=None):
            events.append("compute started")
            outputs = real_predict(inputs, signature_name)
            events.append("compute ended")
            return outputs

        def close():
            events.append("closed")
            real_close()

        runtime.predict, runtime.close = predict, close
        with Client(server.grpc_target) as client:
            with pytest.raises(Exception, match="(?i)deadline"):
                client.predict("slow", slow_inputs(iterations), timeout=0.3)  # gives up; compute goes on
            assert events == ["compute started"]
            hidden.rename(base / "2")
            _wait_for(lambda: "closed" in events, "version 1 to retire")
    assert events == ["compute started", "compute ended", "closed"]
