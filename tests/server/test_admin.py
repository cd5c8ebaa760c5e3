"""Issue 13 item 1: administrative APIs are safe by default (deploykit.server.admin).

``ModelService/HandleReloadConfigRequest`` is PERMISSION_DENIED unless enabled (flag or config
file start); enabled, every base path must resolve inside the server's model roots (symbolic links
followed) or ``--admin_model_roots``, and an empty config needs ``--admin_allow_unload_all``.
Real servers on loopback ports, both gRPC data planes.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
from onnx_builders import add_version

from deploykit.client import Client
from deploykit.errors import ModelNotFound
from deploykit.protocol import grpc_paths
from deploykit.protocol.protos import serving_pb2 as pb
from deploykit.server import ServerConfig, ServerThread
from deploykit.server.admin import AdminPolicy

pytestmark = pytest.mark.lean

X = np.zeros((1, 4), np.float32)


def _reload(server: ServerThread, models: dict[str, Path]) -> None:
    request = pb.ReloadConfigRequest()
    request.config.model_config_list.SetInParent()
    for name, base in models.items():
        request.config.model_config_list.config.add(name=name, base_path=str(base))
    with grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}") as channel:
        call = channel.unary_unary(
            grpc_paths.HANDLE_RELOAD_CONFIG.path,
            request_serializer=pb.ReloadConfigRequest.SerializeToString,
            response_deserializer=pb.ReloadConfigResponse.FromString,
        )
        call(request, timeout=60)


def _refused(server: ServerThread, models: dict[str, Path]) -> str:
    with pytest.raises(grpc.RpcError) as refused:
        _reload(server, models)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, refused.value.details()
    return refused.value.details()


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """A repository with models ``a`` and ``b``, and a directory elsewhere with model ``evil``."""
    repo, elsewhere = tmp_path / "repo", tmp_path / "elsewhere"
    add_version(repo / "a", 1)
    add_version(repo / "b", 1)
    add_version(elsewhere / "evil", 1)
    return {"repo": repo, "elsewhere": elsewhere}


def _serve(dataplane: str, **options) -> ServerThread:
    return ServerThread(
        ServerConfig(grpc_port=0, rest_port=None, file_system_poll_seconds=0, dataplane=dataplane, **options)
    )


def test_reload_is_refused_by_default_and_nothing_changes(layout, dataplane) -> None:
    with _serve(dataplane, model_path=layout["repo"] / "a", model_name="a") as server:
        details = _refused(server, {"evil": layout["elsewhere"] / "evil"})
        assert "HandleReloadConfigRequest is an administrative API" in details and "--enable-admin-apis" in details
        assert _refused(server, {})  # nor can it unload everything
        with Client(server.grpc_target) as client:
            assert client.predict("a", {"x": X})["y"].tolist() == [[1.0] * 4]


def test_enabled_reload_stays_inside_the_model_roots(layout, dataplane) -> None:
    with _serve(dataplane, model_path=layout["repo"], admin_apis=True) as server:
        details = _refused(server, {"evil": layout["elsewhere"] / "evil"})
        assert "outside the server's model roots" in details and "--admin_model_roots" in details
        (layout["repo"] / "link").symlink_to(layout["elsewhere"] / "evil")  # dropped inside, pointing out
        details = _refused(server, {"evil": layout["repo"] / "link"})
        assert str((layout["elsewhere"] / "evil").resolve()) in details
        assert _refused(server, {"a": layout["repo"] / ".." / "elsewhere" / "evil"})
        assert "--admin_allow_unload_all" in _refused(server, {})
        _reload(server, {"b": layout["repo"] / "b"})  # inside: applied
        with Client(server.grpc_target) as client:
            client.wait_until_ready("b", timeout=60)
            assert client.predict("b", {"x": X})["y"].tolist() == [[1.0] * 4]


def test_allow_list_and_unload_all_are_explicit_opt_ins(layout, dataplane) -> None:
    options = dict(admin_apis=True, admin_model_roots=[layout["elsewhere"]], admin_allow_unload_all=True)
    with _serve(dataplane, model_path=layout["repo"], **options) as server:
        _reload(server, {"evil": layout["elsewhere"] / "evil"})
        with Client(server.grpc_target) as client:
            assert client.predict("evil", {"x": X})["y"].tolist() == [[1.0] * 4]
            _reload(server, {})
            with pytest.raises(ModelNotFound):
                client.predict("evil", {"x": X})


def test_a_config_file_start_allows_reloads_of_its_base_paths(layout, tmp_path, dataplane) -> None:
    config = tmp_path / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "a" base_path: "{layout["repo"] / "a"}" }} }}')
    with _serve(dataplane, model_config_file=config) as server:
        _reload(server, {"a2": layout["repo"] / "a"})
        assert "outside" in _refused(server, {"b": layout["repo"] / "b"})


def test_the_policy_resolves_roots_once() -> None:
    policy = AdminPolicy.build(True, [Path("/srv/models/")])
    policy.check_path("api", "m", "/srv/models/m")
    with pytest.raises(Exception, match="outside"):
        policy.check_path("api", "m", "/srv/models-evil/m")  # a prefix is not a parent
