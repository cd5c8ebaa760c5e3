"""Issue 13's done-when fuzz test: a seeded mutator sends >= 10,000 malformed gRPC and >= 3,000
malformed REST requests, good ones interleaved, concurrently, to a real server (both gRPC data
planes). Expected: no INTERNAL / UNKNOWN / 500 answer, every good request answered exactly, and
the process's peak RSS bounded (requests declaring gigabytes are among the malformed ones).

Bounded and reproducible: a fixed seed per data plane; sent fast and concurrently so it stays
well under a minute and a half on 2 cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import random
from collections import Counter
from pathlib import Path

import aiohttp
import grpc
import numpy as np
import pytest
from onnx_builders import write_affine_onnx

from deploykit.protocol import grpc_paths, tfserving_grpc
from deploykit.protocol.protos import serving_pb2 as pb
from deploykit.protocol.protos import types_pb2
from deploykit.server import ServerConfig, ServerThread

pytestmark = pytest.mark.lean

GRPC_MALFORMED = 10_000
REST_MALFORMED = 3_000
GOOD_EVERY = 8  # one good request after every 8 malformed ones
CONCURRENCY = 32
#: Statuses a malformed request must never get: the server's own failure.
SERVER_FAULTS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}


@pytest.fixture(scope="module")
def server(tmp_path_factory, dataplane):
    repo = tmp_path_factory.mktemp("fuzz-repo")
    write_affine_onnx(repo / "affine" / "1" / "model.onnx", 1.0, 1.0)
    config = ServerConfig(
        model_path=repo,
        grpc_port=0,
        rest_port=0,
        dataplane=dataplane,
        file_system_poll_seconds=0,
        max_inflated_body_bytes=4_000_000,
        # Requests declaring up to the limit are legitimate and allocate it, 32 at a time here:
        # a small limit makes the RSS bound below a statement about the limit, not the machine.
        max_tensor_bytes=4 * 2**20,
    )
    with ServerThread(config) as running:
        yield running


# ------------------------------------------------------------------------------ gRPC mutations


def _good_predict(rng: random.Random, content: bool) -> tuple[bytes, np.ndarray]:
    x = np.array([[rng.uniform(-9, 9) for _ in range(4)] for _ in range(rng.randint(1, 3))], np.float32)
    request = tfserving_grpc.predict_request("affine", {"x": x}, tensor_content=content)
    return request.SerializeToString(), x + 1


def _structured(rng: random.Random) -> bytes:
    """A well-formed PredictRequest with one malformed part."""
    request = pb.PredictRequest()
    request.model_spec.name = rng.choice(["affine", "affine", "", "nope", "a" * 3000, "\u00e9"])
    if rng.random() < 0.2:
        request.model_spec.version.value = rng.choice([0, -1, 2**62, 1])
    if rng.random() < 0.2:
        request.model_spec.signature_name = rng.choice(["", "x", "serving_default", "\x00"])
    if rng.random() < 0.1:
        request.output_filter.extend(rng.choice([["y"], ["y", "y"], ["z"], [""]]))
    tensor = request.inputs[rng.choice(["x", "x", "x", "y", ""])]
    tensor.dtype = rng.choice(
        [
            types_pb2.DT_FLOAT,
            types_pb2.DT_FLOAT,
            types_pb2.DT_STRING,
            types_pb2.DT_INT64,
            types_pb2.DT_HALF,
            types_pb2.DT_BFLOAT16,
            types_pb2.DT_RESOURCE,
            types_pb2.DT_INVALID,
            999,
        ]
    )
    rank = rng.choice([0, 1, 2, 2, 2, 3, 65, 70])
    for _ in range(rank):
        tensor.tensor_shape.dim.add(size=rng.choice([1, 2, 4, 0, -1, 2**28 - 1, 2**29 - 1, 2**40, 2**62]))
    if rng.random() < 0.05:
        tensor.tensor_shape.unknown_rank = True
    kind = rng.random()
    if kind < 0.3:
        tensor.float_val.extend(rng.uniform(-1, 1) for _ in range(rng.choice([0, 1, 3, 8])))
    elif kind < 0.5:
        tensor.tensor_content = rng.randbytes(rng.choice([0, 3, 16, 32, 33]))
    elif kind < 0.6:
        tensor.string_val.extend(rng.randbytes(rng.randint(0, 5)) for _ in range(rng.choice([1, 2, 8])))
    elif kind < 0.7:
        tensor.int64_val.extend(rng.randint(-(2**63), 2**63 - 1) for _ in range(rng.choice([1, 8])))
    elif kind < 0.8:
        tensor.half_val.extend(rng.randint(-(2**31), 2**31 - 1) for _ in range(rng.choice([1, 8])))
    if rng.random() < 0.1:
        request.inputs["extra"].dtype = types_pb2.DT_FLOAT
    if rng.random() < 0.05:
        request.ClearField("model_spec")
    return request.SerializeToString()


def _mutated(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if choice < 0.4 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice < 0.6 and data:
            del data[rng.randrange(len(data)) :]
        elif choice < 0.8:
            position = rng.randrange(len(data) + 1)
            data[position:position] = rng.randbytes(rng.randint(1, 8))
        else:
            position = rng.randrange(len(data) + 1)  # a varint that declares a huge length
            data[position:position] = bytes([0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0x07])
    return bytes(data)


def _malformed_grpc(rng: random.Random) -> tuple[grpc_paths.Method, bytes]:
    choice = rng.random()
    if choice < 0.45:
        return grpc_paths.PREDICT, _structured(rng)
    if choice < 0.85:
        good, _ = _good_predict(rng, rng.random() < 0.5)
        return grpc_paths.PREDICT, _mutated(rng, good)
    method = rng.choice(grpc_paths.METHODS)
    if method is grpc_paths.HANDLE_RELOAD_CONFIG:  # refused by default (PERMISSION_DENIED)
        return method, _mutated(rng, b"\n\x06\n\x04\n\x02\n\x00")
    return method, rng.randbytes(rng.randint(0, 64))


async def _grpc_campaign(target: str, seed: int) -> tuple[Counter, list[str]]:
    rng = random.Random(seed)
    jobs = []
    for i in range(GRPC_MALFORMED):
        jobs.append(("bad", *_malformed_grpc(rng), None))
        if i % GOOD_EVERY == 0:
            good, expected = _good_predict(rng, rng.random() < 0.5)
            jobs.append(("good", grpc_paths.PREDICT, good, expected))
    codes: Counter = Counter()
    wrong: list[str] = []
    options = [("grpc.max_receive_message_length", 2**31 - 1), ("grpc.max_send_message_length", 2**31 - 1)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        calls = {m.path: channel.unary_unary(m.path) for m in grpc_paths.METHODS}
        queue: asyncio.Queue = asyncio.Queue()
        for job in jobs:
            queue.put_nowait(job)

        async def worker() -> None:
            while not queue.empty():
                kind, method, payload, expected = queue.get_nowait()
                try:
                    answer = await calls[method.path](payload, timeout=60)
                    code = grpc.StatusCode.OK
                except grpc.aio.AioRpcError as exc:
                    code, answer = exc.code(), exc.details()
                codes[(kind, code)] += 1
                if kind == "good":
                    if code != grpc.StatusCode.OK:
                        wrong.append(f"good request answered {code}: {answer}")
                    else:
                        y = tfserving_grpc.predict_outputs(pb.PredictResponse.FromString(answer))["y"]
                        if not np.array_equal(y, expected):
                            wrong.append(f"good request answered {y.tolist()}, expected {expected.tolist()}")
                elif code in SERVER_FAULTS:
                    wrong.append(f"{method.name} {payload[:80]!r} answered {code}: {answer}")

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return codes, wrong


# ------------------------------------------------------------------------------ REST mutations

_PATHS = [
    "/v1/models/affine:predict",
    "/v1/models/affine/versions/1:predict",
    "/v1/models/affine/versions/99999999999999999999999:predict",
    "/v1/models/affine/labels/x:predict",
    "/v1/models/nope:predict",
    "/v1/models/affine:regress",
    "/v1/models/affine:classify",
    "/v1/models/affine:explode",
    "/v1/models/%ZZ:predict",
    "/v2/whatever",
    "/monitoring/x",
    "/",
]


def _good_rest(rng: random.Random) -> tuple[bytes, list]:
    rows = [[round(rng.uniform(-9, 9), 3) for _ in range(4)] for _ in range(rng.randint(1, 3))]
    expected = (np.array(rows, np.float32) + 1).tolist()
    return json.dumps({"instances": rows}).encode(), expected


def _malformed_rest(rng: random.Random) -> tuple[str, str, bytes, dict]:
    method, path, headers = "POST", rng.choice(_PATHS[:3]) if rng.random() < 0.7 else rng.choice(_PATHS), {}
    choice = rng.random()
    good, _ = _good_rest(rng)
    if choice < 0.3:
        body = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            body[rng.randrange(len(body))] = rng.choice(b'[]{}",:0123456789eE.-+ntfa\\\x00\xff')
        body = bytes(body)
    elif choice < 0.4:
        body = good[: rng.randrange(len(good))]
    elif choice < 0.55:
        depth = rng.choice([60, 63, 64, 65, 100, 1000, 5000])
        body = b'{"instances":' + b"[" * depth + b"1" + b"]" * depth + b"}"
    elif choice < 0.65:
        body = b'{"instances": [[' + b"9" * rng.choice([20, 400, 4301, 5000, 20000]) + b", 1, 2, 3]]}"
    elif choice < 0.8:
        value = rng.choice(
            [
                None,
                True,
                "s",
                {"b64": "!!"},
                {"b64": "AAAA"},
                [],
                [[]],
                [[1, 2]],
                [[1e400] * 4],
                1.5,
                {"x": 1},
                [[1, 2, 3, "4"]],
                [[None] * 4],
                [[2**70] * 4],
            ]
        )
        key = rng.choice(["instances", "inputs", "signature_name", "examples", "bogus"])
        body = json.dumps({key: value, **({"signature_name": 7} if rng.random() < 0.1 else {})}).encode()
    elif choice < 0.9:
        headers["Content-Encoding"] = rng.choice(["gzip", "deflate", "br", "gzip, gzip", "compress"])
        body = gzip.compress(good) if rng.random() < 0.3 else rng.randbytes(rng.randint(0, 40))
        if rng.random() < 0.2:
            body = gzip.compress(b"[" * 5_000_000)  # a bomb above the 4 MB inflated bound
    else:
        method = rng.choice(["GET", "PUT", "DELETE", "PATCH"])
        body = rng.randbytes(rng.randint(0, 20))
    return method, path, body, headers


async def _rest_campaign(target: str, seed: int) -> tuple[Counter, list[str]]:
    rng = random.Random(seed)
    jobs = []
    for i in range(REST_MALFORMED):
        jobs.append(("bad", *_malformed_rest(rng), None))
        if i % GOOD_EVERY == 0:
            body, expected = _good_rest(rng)
            jobs.append(("good", "POST", _PATHS[0], body, {}, expected))
    codes: Counter = Counter()
    wrong: list[str] = []
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(target, connector=connector, auto_decompress=False) as session:
        queue: asyncio.Queue = asyncio.Queue()
        for job in jobs:
            queue.put_nowait(job)

        async def worker() -> None:
            while not queue.empty():
                kind, method, path, body, headers, expected = queue.get_nowait()
                async with session.request(method, path, data=body, headers=headers) as response:
                    text = await response.read()
                codes[(kind, response.status)] += 1
                if kind == "good":
                    if response.status != 200 or json.loads(text) != {"predictions": expected}:
                        wrong.append(f"good REST request answered {response.status}: {text[:200]!r}")
                elif response.status >= 500 and response.status != 501:
                    wrong.append(f"{method} {path} {body[:80]!r} {headers} answered {response.status}: {text[:300]!r}")

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return codes, wrong


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_fuzz_grpc_and_rest(server, dataplane) -> None:
    with contextlib.suppress(OSError):  # reset the peak RSS, where the kernel lets us
        Path("/proc/self/clear_refs").write_text("5")
    before = _peak_rss()
    seed = {"python": 13, "native": 31}[dataplane]
    grpc_target = f"127.0.0.1:{server.server.grpc_port}"

    async def both():
        return await asyncio.gather(_grpc_campaign(grpc_target, seed), _rest_campaign(server.rest_target, seed))

    (grpc_codes, grpc_wrong), (rest_codes, rest_wrong) = asyncio.run(both())
    assert grpc_wrong == [] and rest_wrong == [], (grpc_wrong[:10], rest_wrong[:10])
    assert sum(n for (kind, _), n in grpc_codes.items() if kind == "bad") == GRPC_MALFORMED
    assert sum(n for (kind, _), n in rest_codes.items() if kind == "bad") == REST_MALFORMED
    assert grpc_codes[("good", grpc.StatusCode.OK)] == GRPC_MALFORMED // GOOD_EVERY
    assert rest_codes[("good", 200)] == REST_MALFORMED // GOOD_EVERY
    assert _peak_rss() - before < 512 * 2**20
