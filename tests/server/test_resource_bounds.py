"""Issue 13 items 5-9: decoded sizes bounded before allocation, the event loop kept free,
compressed bodies bounded, connections timed out, client mistakes answered 400 / INVALID_ARGUMENT.

Real servers on loopback ports with a tiny ONNX model (``y = x + 1`` over float32[-1, 4]).
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import threading
import zlib
from pathlib import Path

import brotli
import grpc
import httpx
import numpy as np
import pytest
from onnx_builders import write_affine_onnx

from deploykit.protocol import grpc_paths, rest_json, tfserving_grpc
from deploykit.protocol.protos import serving_pb2 as pb
from deploykit.protocol.protos import types_pb2
from deploykit.server import ServerConfig, ServerThread
from deploykit.server.offload import OFFLOAD_BYTES

pytestmark = pytest.mark.lean

#: REST does not depend on the gRPC data plane: these run once, on the Python one (not generated
#: for native rather than skipped).
REST_ONLY = pytest.mark.parametrize("dataplane", ["python"], indirect=True, scope="module")


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bounds-repo")
    write_affine_onnx(root / "affine" / "1" / "model.onnx", 1.0, 1.0)
    return root


@pytest.fixture(scope="module")
def server(repo, dataplane):
    config = ServerConfig(
        model_path=repo,
        grpc_port=0,
        rest_port=0,
        dataplane=dataplane,
        file_system_poll_seconds=0,
        rest_idle_timeout_s=0.5,
        rest_body_timeout_s=0.5,
        max_inflated_body_bytes=1_000_000,
    )
    with ServerThread(config) as running:
        yield running


def _channel(server) -> grpc.Channel:
    return grpc.insecure_channel(f"127.0.0.1:{server.server.grpc_port}")


def _raw_predict(channel: grpc.Channel, request: bytes) -> bytes:
    call = channel.unary_unary(grpc_paths.PREDICT.path)  # bytes in, bytes out
    return call(request, timeout=60)


def _peak_rss_reset() -> bool:
    """Reset this process's peak RSS (VmHWM) so a later read shows only what happens after."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _tiny_huge(dtype: int, size: int) -> bytes:
    request = pb.PredictRequest()
    request.model_spec.name = "affine"
    tensor = request.inputs["x"]
    tensor.dtype = dtype
    tensor.tensor_shape.dim.add(size=size)
    if dtype == types_pb2.DT_STRING:
        tensor.string_val.append(b"x")
    else:
        tensor.float_val.append(1.0)
    return request.SerializeToString()


def test_tiny_requests_declaring_gigabytes_are_refused_at_once_without_allocating(server) -> None:
    """Item 5: 43 bytes declaring float32[2**29-1] (2 GiB) and 39 declaring string[2**28-1], 13 in
    a row: INVALID_ARGUMENT naming the limit, and the process's peak RSS stays where it was."""
    requests = [_tiny_huge(types_pb2.DT_FLOAT, 2**29 - 1), _tiny_huge(types_pb2.DT_STRING, 2**28 - 1)]
    assert len(requests[0]) < 50
    if not _peak_rss_reset():
        pytest.skip("cannot reset the peak RSS here (/proc/self/clear_refs)")
    before = _peak_rss()
    with _channel(server) as channel:
        for i in range(13):
            with pytest.raises(grpc.RpcError) as refused:
                _raw_predict(channel, requests[i % 2])
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "--max_decoded_tensor_bytes" in refused.value.details()
        good = tfserving_grpc.predict_request("affine", {"x": np.ones((2, 4), np.float32)})
        answer = pb.PredictResponse.FromString(_raw_predict(channel, good.SerializeToString()))
    assert list(answer.outputs["y"].float_val) == [2.0] * 8
    assert _peak_rss() - before < 256 * 2**20


def test_more_than_64_dimensions_is_invalid_argument(server) -> None:
    """Item 9 on gRPC (both data planes): numpy's own limit is not an INTERNAL error."""
    request = pb.PredictRequest()
    request.model_spec.name = "affine"
    tensor = request.inputs["x"]
    tensor.dtype = types_pb2.DT_FLOAT
    tensor.float_val.append(1.0)
    for _ in range(65):
        tensor.tensor_shape.dim.add(size=1)
    with _channel(server) as channel, pytest.raises(grpc.RpcError) as refused:
        _raw_predict(channel, request.SerializeToString())
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "65 dimensions; at most 64" in refused.value.details()


def _post(server, body: bytes, **headers) -> httpx.Response:
    return httpx.post(f"{server.rest_target}/v1/models/affine:predict", content=body, headers=headers, timeout=60)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"instances":' + b"[" * 1000 + b"]" * 1000 + b"}", "nested too deeply"),
        (b'{"instances": [[' + b"7" * 5000 + b", 1, 1, 1]]}", "4300 digits"),
        (b'{"instances": ' + b"[" * 66 + b"0.5" + b"]" * 66 + b"}", "more than 64 deep"),
        (b'{"inputs": {"x": [[0.0, 0, 0, 0]], "extra": ' + b"[" * 70 + b"1" + b"]" * 70 + b"}}", "64"),
    ],
)
@REST_ONLY
def test_rest_client_mistakes_are_400(server, dataplane, body, message) -> None:
    """Item 9 on REST: recursion, a 5,000-digit integer and 65+ dimensions are 400 with the reason."""
    response = _post(server, body)
    assert response.status_code == 400, response.text
    if message == "nested too deeply":  # or parsed (the recursion limit depends on the process) and refused as a tensor
        assert re.search("nested too deeply|nest more than 64 deep", response.json()["error"]), response.text
    else:
        assert message in response.json()["error"]


@REST_ONLY
def test_compressed_bodies_are_inflated_with_a_bound(server, dataplane) -> None:
    """Item 7: gzip/deflate/br work; a bomb is refused naming the inflated bound; a body that is
    not what its Content-Encoding says is 400."""
    body = json.dumps({"instances": [[1.0, 2.0, 3.0, 4.0]]}).encode()
    for encoding, compressed in (
        ("gzip", gzip.compress(body)),
        ("deflate", zlib.compress(body)),
        ("br", brotli.compress(body)),
    ):
        response = _post(server, compressed, **{"Content-Encoding": encoding})
        assert response.status_code == 200, (encoding, response.text)
        assert response.json() == {"predictions": [[2.0, 3.0, 4.0, 5.0]]}
    bomb = gzip.compress(b" " * 50_000_000)  # ~50 KB that inflates to 50 MB; the server allows 1 MB
    response = _post(server, bomb, **{"Content-Encoding": "gzip"})
    assert response.status_code == 429
    assert "inflated body exceeds 1000000 bytes" in response.json()["error"]
    for encoding in ("gzip", "deflate", "br"):
        response = _post(server, body, **{"Content-Encoding": encoding})
        assert response.status_code == 400, (encoding, response.text)
        assert f"not valid {encoding} data" in response.json()["error"]
    response = _post(server, body, **{"Content-Encoding": "zstd-or-so"})
    assert response.status_code == 400 and "not supported" in response.json()["error"]


@REST_ONLY
def test_large_rest_bodies_are_parsed_off_the_event_loop(server, dataplane, monkeypatch) -> None:
    """Item 6: while a large body is being parsed, a tiny gRPC request is answered. The parse is
    held (deterministically, by an event) until that request completed: on the event loop it
    could not complete at all."""
    entered, released = threading.Event(), threading.Event()
    parse = rest_json.parse_body

    def held_parse(body: bytes):
        if len(body) > OFFLOAD_BYTES:
            entered.set()
            assert released.wait(60), "the tiny request was not answered while the body was being parsed"
        return parse(body)

    monkeypatch.setattr(rest_json, "parse_body", held_parse)
    rows = 20_000  # ~0.5 MB of JSON, above the offload threshold
    body = json.dumps({"instances": np.ones((rows, 4)).tolist()}).encode()
    assert len(body) > OFFLOAD_BYTES
    result: dict = {}
    poster = threading.Thread(target=lambda: result.update(response=_post(server, body)))
    poster.start()
    try:
        assert entered.wait(60)
        with _channel(server) as channel:
            status_call = channel.unary_unary(
                grpc_paths.GET_MODEL_STATUS.path,
                request_serializer=pb.GetModelStatusRequest.SerializeToString,
                response_deserializer=pb.GetModelStatusResponse.FromString,
            )
            answer = status_call(pb.GetModelStatusRequest(model_spec=pb.ModelSpec(name="affine")), timeout=30)
        assert answer.model_version_status[0].state == pb.ModelVersionStatus.AVAILABLE
    finally:
        released.set()
        poster.join(60)
    response = result["response"]
    assert response.status_code == 200
    assert np.array_equal(np.array(response.json()["predictions"]), np.full((rows, 4), 2.0))


def _recv_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@REST_ONLY
def test_rest_connections_are_timed_out(server, dataplane) -> None:
    """Item 8: an idle connection and half a header are closed (idle timeout); half a body is 408."""
    address = ("127.0.0.1", server.server.rest_port)
    with socket.create_connection(address, timeout=30) as idle:
        assert _recv_all(idle) == b""  # closed by the server, not by the 30 s guard (that raises)
    with socket.create_connection(address, timeout=30) as half_header:
        half_header.sendall(b"POST /v1/models/affine:predict HTTP/1.1\r\nHost: x\r\nContent-")
        assert _recv_all(half_header) == b""
    with socket.create_connection(address, timeout=30) as half_body:
        half_body.sendall(
            b"POST /v1/models/affine:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"instances": '
        )
        answer = _recv_all(half_body)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"--rest_body_timeout_seconds" in answer


def test_grpc_connections_have_keepalive_and_idle_limits_by_default() -> None:
    """Item 8 (gRPC): keepalive pings and an idle limit on by default, each a flag; age off."""
    from deploykit.serving.api import server_config
    from deploykit.serving.options import ServeOptions

    options = ServerConfig().grpc_connection_options()
    assert options == {
        "grpc.keepalive_time_ms": 120_000,
        "grpc.keepalive_timeout_ms": 20_000,
        "grpc.max_connection_idle_ms": 600_000,
    }
    config = server_config(
        ServeOptions.parse(
            path=Path("models"),
            grpc_keepalive_seconds=0,
            grpc_max_connection_idle_seconds=5,
            grpc_max_connection_age_seconds=60,
            rest_idle_timeout_seconds=3,
            max_decoded_tensor_bytes=1000,
        )
    )
    assert config.grpc_connection_options() == {
        "grpc.max_connection_idle_ms": 5_000,
        "grpc.max_connection_age_ms": 60_000,
        "grpc.max_connection_age_grace_ms": 30_000,
    }
    assert config.rest_idle_timeout_s == 3 and config.max_tensor_bytes == 1000


def test_an_idle_grpc_connection_is_closed(repo) -> None:
    """Item 8 (gRPC): after --grpc_max_connection_idle_seconds the server sends GOAWAY; the
    channel notices (it leaves READY) and reconnects on the next call."""
    config = ServerConfig(
        model_path=repo, grpc_port=0, rest_port=None, dataplane="python", grpc_max_connection_idle_s=0.3
    )
    with ServerThread(config) as running, _channel(running) as channel:
        grpc.channel_ready_future(channel).result(30)
        left = threading.Event()
        channel.subscribe(lambda state: state != grpc.ChannelConnectivity.READY and left.set())
        assert left.wait(30)


def test_requests_with_tensor_values_are_answered_exactly(server) -> None:
    """The bounds leave ordinary requests alone (typed values and tensor_content)."""
    with _channel(server) as channel:
        for content in (False, True):
            request = tfserving_grpc.predict_request(
                "affine", {"x": np.arange(8, dtype=np.float32).reshape(2, 4)}, tensor_content=content
            )
            answer = pb.PredictResponse.FromString(_raw_predict(channel, request.SerializeToString()))
            assert list(answer.outputs["y"].float_val) == [float(v + 1) for v in range(8)]


def test_a_non_loopback_bind_without_tls_warns_once(caplog) -> None:
    """Item 3: --host 0.0.0.0 (any non-loopback address) without TLS says, in one line, that the
    API is open to the network and unauthenticated; loopback or TLS says nothing."""
    import logging

    from deploykit.server.config import warn_if_open
    from deploykit.tls import ServerTls

    with caplog.at_level(logging.WARNING, logger="deploykit.server.server"):
        for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
            warn_if_open(ServerConfig(host=host))
        warn_if_open(ServerConfig(host="0.0.0.0", tls=ServerTls(cert=b"c", key=b"k")))
        assert caplog.records == []
        warn_if_open(ServerConfig(host="0.0.0.0"))
    (record,) = caplog.records
    assert "open to the network and unauthenticated" in record.getMessage()
