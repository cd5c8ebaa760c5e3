"""Dynamic batching (``--enable_batching``): parameter files, and a real server on loopback batching
real ONNX Runtime models built here, driven by concurrent gRPC and REST callers.

The models' output row i depends only on input row i, so every caller can be checked against the
same model run on its inputs alone. A :class:`Gate` around the real runtime lets a test hold the
batch thread, queue requests behind it, and release it: batches then form deterministically,
without relying on timing.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import TFSERVING_TESTDATA, free_port
from onnx import TensorProto, helper
from runtime_doubles import Gate
from typer.testing import CliRunner

from deploykit.cli import app
from deploykit.client import AsyncClient, Client
from deploykit.errors import InvalidInput, ResourceExhausted, RuntimeFailure, Unreachable, UsageError
from deploykit.model_ref import ModelRef
from deploykit.server import ServerConfig, ServerThread, metrics
from deploykit.server.batching import options as batching_params
from deploykit.server.batching.options import BatchingOptions
from deploykit.server.core import Timing
from deploykit.server.version_loader import load_version

FLOAT = TensorProto.FLOAT


def _save(graph, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10  # onnx 1.23 stamps 14, which ONNX Runtime refuses
    onnx.checker.check_model(model)
    path.mkdir(parents=True)
    onnx.save(model, str(path / "model.onnx"))
    return path


def _rows_model(path: Path) -> Path:
    """x[-1,-1], k[-1] -> y = 2x+1 [-1,-1], s = rowsum(x)+k [-1]: row i of each output from row i only."""
    nodes = [
        helper.make_node("Mul", ["x", "two"], ["x2"]),
        helper.make_node("Add", ["x2", "one"], ["y"]),
        helper.make_node("ReduceSum", ["x", "axis1"], ["rowsum"], keepdims=0),
        helper.make_node("Add", ["rowsum", "k"], ["s"]),
    ]
    graph = helper.make_graph(
        nodes,
        "rows",
        [
            helper.make_tensor_value_info("x", FLOAT, ["batch", "width"]),
            helper.make_tensor_value_info("k", FLOAT, ["batch"]),
        ],
        [
            helper.make_tensor_value_info("y", FLOAT, ["batch", "width"]),
            helper.make_tensor_value_info("s", FLOAT, ["batch"]),
        ],
        initializer=[
            helper.make_tensor("two", FLOAT, [], [2.0]),
            helper.make_tensor("one", FLOAT, [], [1.0]),
            helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
        ],
    )
    return _save(graph, path)


def _lookup_model(path: Path) -> Path:
    """idx int64[-1] -> table[idx]; an index outside 0..4 makes ONNX Runtime raise at run time."""
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "idx"], ["value"], axis=0)],
        "lookup",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, ["batch"])],
        [helper.make_tensor_value_info("value", FLOAT, ["batch"])],
        initializer=[helper.make_tensor("table", FLOAT, [5], [10.0, 11.0, 12.0, 13.0, 14.0])],
    )
    return _save(graph, path)


def _fixed_model(path: Path) -> Path:
    """x[2,3] -> 2x+1: a fixed batch dimension, so it cannot be batched."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["x2"]), helper.make_node("Add", ["x2", "one"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", FLOAT, [2, 3])],
        initializer=[helper.make_tensor("two", FLOAT, [], [2.0]), helper.make_tensor("one", FLOAT, [], [1.0])],
    )
    return _save(graph, path)


def _pooled_model(path: Path) -> Path:
    """x[-1,-1], k[-1] -> y = sum over rows [1,-1], declared [-1,-1]: breaks the batching contract.
    (The Reshape to a computed shape hides the 1 from shape inference, so the declared shape stands.)"""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["x", "axis0"], ["pooled"], keepdims=1),
            helper.make_node("Shape", ["pooled"], ["pooled_shape"]),
            helper.make_node("Reshape", ["pooled", "pooled_shape"], ["y"]),
            helper.make_node("Identity", ["k"], ["s"]),
        ],
        "pooled",
        [
            helper.make_tensor_value_info("x", FLOAT, ["batch", "width"]),
            helper.make_tensor_value_info("k", FLOAT, ["batch"]),
        ],
        [
            helper.make_tensor_value_info("y", FLOAT, ["batch", "width"]),
            helper.make_tensor_value_info("s", FLOAT, ["batch"]),
        ],
        initializer=[helper.make_tensor("axis0", TensorProto.INT64, [1], [0])],
    )
    return _save(graph, path)


BUILDERS = {"rows": _rows_model, "lookup": _lookup_model, "fixed": _fixed_model, "pooled": _pooled_model}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("batching-models")
    return {kind: build(root / kind / "1") for kind, build in BUILDERS.items()}


@contextmanager
def serving(model_dirs, options: BatchingOptions | None, **models: str):
    """A server on loopback serving ``name=kind`` models, each behind a :class:`Gate`."""
    gates, preloaded = {}, []
    for name, kind in models.items():
        loaded = load_version(name, 1, model_dirs[kind])
        assert loaded.available, loaded.error
        loaded.runtime = gates[name] = Gate(loaded.runtime)
        preloaded.append(loaded)
    config = ServerConfig(preloaded=preloaded, grpc_port=0, rest_port=0, batching=options)
    with ServerThread(config) as server:
        yield server, gates


def on_loop(server: ServerThread, coro):
    """Run ``coro`` on the server's event loop (where its schedulers live)."""
    return asyncio.run_coroutine_threadsafe(coro, server._loop).result(60)


def queued_rows(server: ServerThread, name: str) -> int:
    async def count() -> int:
        service = server.server.service
        loaded = service.registry.get(name, 1)
        scheduler = service.batchers.get(loaded, "serving_default", loaded.signatures["serving_default"])
        return scheduler.queued_rows

    return on_loop(server, count())


async def wait_for(condition, what: str) -> None:
    """Poll ``condition`` (a synchronisation point, not a timing assertion)."""
    for _ in range(6000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"gave up waiting for {what}")


def rows_inputs(i: int, n: int, width: int = 3) -> dict[str, np.ndarray]:
    """Distinct inputs for caller ``i``: ``n`` rows no other caller sends."""
    x = (np.arange(n * width, dtype=np.float32).reshape(n, width) + 1000 * i).astype(np.float32)
    return {"x": x, "k": np.full((n,), float(i), np.float32)}


@pytest.fixture(scope="module")
def expected(model_dirs):
    """The same model, in its own ONNX Runtime session, run on one caller's inputs alone (unbatched)."""
    runtimes = {kind: load_version(kind, 1, path).runtime for kind, path in model_dirs.items()}
    yield lambda kind, inputs: runtimes[kind].predict(inputs)
    for runtime in runtimes.values():
        runtime.close()


def sample(name: str, labels: dict[str, str]) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


# ------------------------------------------------------------------------------------ parameters


def test_tfserving_testdata_file_parses_with_defaults_for_the_rest() -> None:
    options = batching_params.load(TFSERVING_TESTDATA / "batching_config.txt")
    assert (options.max_batch_size, options.batch_timeout_micros) == (128, 0)
    assert (options.max_enqueued_batches, options.num_batch_threads) == (1000000, 8)
    assert options.allowed_batch_sizes == () and not options.pad_variable_length_inputs
    assert not options.enable_large_batch_splitting and options.batch_limit == 128


def test_enable_batching_without_a_file_uses_tfserving_defaults() -> None:
    options = batching_params.resolve(True, None)
    assert (options.max_batch_size, options.batch_timeout_micros, options.max_enqueued_batches) == (1000, 0, 10)
    assert options.num_batch_threads >= 1 and options.thread_pool_name == "model_server_batch_threads"
    assert batching_params.resolve(False, None) is None


def test_a_file_without_enable_batching_is_refused() -> None:
    with pytest.raises(UsageError, match="You supplied --batching_parameters_file without --enable_batching"):
        batching_params.resolve(False, TFSERVING_TESTDATA / "batching_config.txt")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "max_batch_size { value: 8 } allowed_batch_sizes: 2 allowed_batch_sizes: 4",
            "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 4; expected 8",
        ),
        (
            "max_batch_size { value: 8 } allowed_batch_sizes: 4 allowed_batch_sizes: 2 allowed_batch_sizes: 8",
            "allowed_batch_sizes entries must be monotonically increasing; got 4, 2, 8",
        ),
        (
            "max_batch_size { value: 8 } allowed_batch_sizes: 4 allowed_batch_sizes: 4 allowed_batch_sizes: 8",
            "allowed_batch_sizes entries must be monotonically increasing",
        ),
        ("max_batch_size { value: 0 }", "max_batch_size must be positive; was 0"),
        ("batch_timeout_micros { value: -5 }", "batch_timeout_micros must be non-negative; was -5"),
        ("num_batch_threads { value: 0 }", "num_batch_threads must be positive; was 0"),
        ("max_enqueued_batches { value: -1 }", "max_enqueued_batches must be positive; was -1"),
        (
            "max_batch_size { value: 4 } enable_large_batch_splitting { value: true } "
            "max_execution_batch_size { value: 8 }",
            "max_batch_size must be greater than or equal to max_execution_batch_size",
        ),
        (
            "max_batch_size { value: 16 } enable_large_batch_splitting { value: true } "
            "max_execution_batch_size { value: 8 } allowed_batch_sizes: 4 allowed_batch_sizes: 16",
            "Last entry in allowed_batch_sizes must be equal to max_execution_batch_size; last entry was 16; "
            "expected 8",
        ),
    ],
)
def test_invalid_parameters_get_tfserving_messages_naming_the_file(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "batching.txt"
    path.write_text(text)
    with pytest.raises(UsageError) as raised:
        batching_params.resolve(True, path)
    assert str(raised.value).startswith(f"{path}: ") and message in str(raised.value)


def test_unparsable_file_names_the_file_and_the_parse_error(tmp_path) -> None:
    path = tmp_path / "batching.txt"
    path.write_text("max_batch_size { value: 8 }\nmax_batch_sise { value: 4 }\n")
    with pytest.raises(UsageError) as raised:
        batching_params.load(path)
    text = str(raised.value)
    assert text.startswith(f"Error parsing text-format tensorflow.serving.BatchingParameters: {path}: ")
    assert "2:1" in text and "max_batch_sise" in text
    with pytest.raises(UsageError, match="cannot read --batching_parameters_file .*missing.txt: No such file"):
        batching_params.load(tmp_path / "missing.txt")


def test_zero_max_enqueued_batches_becomes_one_like_tfserving() -> None:
    assert batching_params.parse_text("max_enqueued_batches { value: 0 }").max_enqueued_batches == 1


def test_padded_size_is_the_next_allowed_size() -> None:
    options = BatchingOptions(max_batch_size=8, allowed_batch_sizes=(2, 4, 8))
    assert [options.padded_size(n) for n in (1, 2, 3, 5, 8)] == [2, 2, 4, 8, 8]
    assert BatchingOptions(max_batch_size=8).padded_size(5) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batching_parameters_file", "{file}"], "You supplied --batching_parameters_file without --enable_batching"),
        (
            ["--enable_batching", "--batching_parameters_file", "{bad}"],
            "Error parsing text-format tensorflow.serving.BatchingParameters",
        ),
        (["--enable_batching", "--batching_parameters_file", "{missing}"], "cannot read --batching_parameters_file"),
    ],
)
def test_serve_refuses_bad_batching_flags_before_loading_anything(tmp_path, args, message) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("max_batch_size: 8")  # a wrapper message written as a scalar
    subs = {
        "{file}": str(TFSERVING_TESTDATA / "batching_config.txt"),
        "{bad}": str(bad),
        "{missing}": str(tmp_path / "missing.txt"),
    }
    result = CliRunner().invoke(app, ["serve", str(tmp_path), *(subs.get(a, a) for a in args)])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


# ------------------------------------------------------------------------------------ serving


def test_concurrent_callers_each_get_exactly_their_own_rows(model_dirs, expected) -> None:
    options = BatchingOptions(max_batch_size=8, num_batch_threads=1)
    labels = {"model": "rows_c", "version": "1", "signature": "serving_default"}
    before = sample("deploykit_batch_size_count", labels)
    with serving(model_dirs, options, rows_c="rows") as (server, gates):
        gate = gates["rows_c"]
        callers = [rows_inputs(i, 1 + i % 3, width=3 if i % 4 else 5) for i in range(32)]

        async def run() -> list[dict[str, np.ndarray]]:
            clients = [AsyncClient(server.grpc_target, timeout=60), AsyncClient(server.rest_target, timeout=60)]
            try:
                gate.hold()
                first = asyncio.create_task(clients[0].predict("rows_c", callers[0]))
                await wait_for(gate.entered.is_set, "the first batch to reach the model")
                rest = [
                    asyncio.create_task(clients[i % 2].predict("rows_c", inputs))
                    for i, inputs in enumerate(callers[1:], 1)
                ]
                queued = sum(len(inputs["k"]) for inputs in callers[1:])
                await wait_for(lambda: queued_rows(server, "rows_c") == queued, "all other callers to queue")
                gate.release()
                return await asyncio.gather(first, *rest)
            finally:
                for client in clients:
                    await client.close()

        answers = asyncio.run(run())
    for inputs, got in zip(callers, answers, strict=True):
        want = expected("rows", inputs)
        assert set(got) == {"y", "s"}
        np.testing.assert_array_equal(got["y"], want["y"])
        np.testing.assert_array_equal(got["s"], want["s"])
    # Callers of width 3 and of width 5 never share a batch; each batch holds at most 8 rows.
    assert len(gate.calls) < len(callers) and max(gate.calls) > 1 and max(gate.calls) <= 8
    assert sample("deploykit_batch_size_count", labels) - before == len(gate.calls)
    multi_row = sample("deploykit_batch_size_count", labels) - sample(
        "deploykit_batch_size_bucket", {**labels, "le": "1.0"}
    )
    assert multi_row >= 1


def test_batches_are_padded_to_allowed_sizes_and_padding_never_leaks(model_dirs, expected) -> None:
    options = BatchingOptions(max_batch_size=8, allowed_batch_sizes=(4, 8), num_batch_threads=1)
    labels = {"model": "rows_p", "version": "1", "signature": "serving_default"}
    padding_before = sample("deploykit_batch_padding_rows_total", labels)
    with serving(model_dirs, options, rows_p="rows") as (server, gates):
        gate = gates["rows_p"]
        callers = [rows_inputs(i, n) for i, n in enumerate((1, 2, 1, 2))]  # then 5 rows queue behind the first

        async def run():
            client = AsyncClient(server.grpc_target, timeout=60)
            try:
                gate.hold()
                first = asyncio.create_task(client.predict("rows_p", callers[0]))
                await wait_for(gate.entered.is_set, "the first batch to reach the model")
                rest = [asyncio.create_task(client.predict("rows_p", inputs)) for inputs in callers[1:]]
                await wait_for(lambda: queued_rows(server, "rows_p") == 5, "5 rows to queue")
                gate.release()
                return await asyncio.gather(first, *rest)
            finally:
                await client.close()

        answers = asyncio.run(run())
    assert gate.calls == [4, 8]  # 1 row padded to 4; 5 rows padded to 8
    for inputs, got in zip(callers, answers, strict=True):
        assert got["y"].shape == inputs["x"].shape and got["s"].shape == inputs["k"].shape
        want = expected("rows", inputs)
        np.testing.assert_array_equal(got["y"], want["y"])
        np.testing.assert_array_equal(got["s"], want["s"])
    assert sample("deploykit_batch_padding_rows_total", labels) - padding_before == 3 + 3


def test_full_queue_is_resource_exhausted_and_the_server_keeps_serving(model_dirs, expected) -> None:
    options = BatchingOptions(max_batch_size=2, max_enqueued_batches=1, num_batch_threads=1)
    with serving(model_dirs, options, rows_q="rows") as (server, gates):
        gate = gates["rows_q"]

        async def run():
            grpc_client, rest_client = AsyncClient(server.grpc_target, timeout=60), AsyncClient(server.rest_target)
            try:
                gate.hold()
                running = asyncio.create_task(grpc_client.predict("rows_q", rows_inputs(0, 1)))
                await wait_for(gate.entered.is_set, "the first batch to reach the model")
                queued = asyncio.create_task(grpc_client.predict("rows_q", rows_inputs(1, 2)))  # fills the queue
                await wait_for(lambda: queued_rows(server, "rows_q") == 2, "a full batch to queue")
                with pytest.raises(ResourceExhausted) as over_grpc:
                    await grpc_client.predict("rows_q", rows_inputs(2, 1))
                with pytest.raises(ResourceExhausted) as over_rest:  # HTTP 429
                    await rest_client.predict("rows_q", rows_inputs(3, 1))
                gate.release()
                answers = await asyncio.gather(running, queued)
                after = await grpc_client.predict("rows_q", rows_inputs(4, 2))
                return over_grpc.value, over_rest.value, answers, after
            finally:
                await grpc_client.close()
                await rest_client.close()

        over_grpc, over_rest, answers, after = asyncio.run(run())
    for error in (over_grpc, over_rest):
        assert "The batch scheduling queue to which this task was submitted is full" in str(error)
        assert "max_enqueued_batches=1" in str(error)
    for i, got in zip((0, 1), answers, strict=True):
        np.testing.assert_array_equal(got["s"], expected("rows", rows_inputs(i, 1 + i))["s"])
    np.testing.assert_array_equal(after["y"], expected("rows", rows_inputs(4, 2))["y"])


def test_callers_that_gave_up_free_their_queue_places_for_live_requests(model_dirs, expected) -> None:
    """A burst of requests whose deadline passes while queued must not leave the queue full: their
    rows leave the waiting batches, and live requests are then admitted and answered."""
    options = BatchingOptions(max_batch_size=2, max_enqueued_batches=3, num_batch_threads=1)
    with serving(model_dirs, options, rows_d="rows") as (server, gates):
        gate = gates["rows_d"]

        async def run():
            client = AsyncClient(server.grpc_target, timeout=60)
            try:
                gate.hold()
                running = asyncio.create_task(client.predict("rows_d", rows_inputs(0, 1)))
                await wait_for(gate.entered.is_set, "the first batch to reach the model")
                # 6 one-row callers fill the 3 queued batches of 2 rows; their deadlines pass there
                doomed = [
                    asyncio.create_task(client.predict("rows_d", rows_inputs(i, 1), timeout=1.0)) for i in range(1, 7)
                ]
                await wait_for(lambda: queued_rows(server, "rows_d") == 6, "the burst to queue")
                gave_up = await asyncio.gather(*doomed, return_exceptions=True)
                await wait_for(lambda: queued_rows(server, "rows_d") == 0, "the dead rows to leave the queue")
                live = [asyncio.create_task(client.predict("rows_d", rows_inputs(i, 2))) for i in range(7, 10)]
                await wait_for(lambda: queued_rows(server, "rows_d") == 6, "the live requests to queue")
                gate.release()
                return gave_up, await asyncio.gather(running, *live)
            finally:
                await client.close()

        gave_up, answers = asyncio.run(run())
    assert all(isinstance(error, Unreachable) and "deadline exceeded" in str(error) for error in gave_up), gave_up
    for i, got in zip((0, 7, 8, 9), answers, strict=True):
        np.testing.assert_array_equal(got["y"], expected("rows", rows_inputs(i, 1 if i == 0 else 2))["y"])
    assert gate.calls == [1, 2, 2, 2]  # no batch ran for the callers that gave up


def test_a_failing_batch_fails_its_requests_only(model_dirs) -> None:
    options = BatchingOptions(max_batch_size=8, num_batch_threads=1)
    with serving(model_dirs, options, lookup="lookup") as (server, gates):
        gate = gates["lookup"]

        def idx(*values):
            return {"idx": np.array(values, np.int64)}

        async def run():
            client = AsyncClient(server.grpc_target, timeout=60)
            try:
                gate.hold()
                first = asyncio.create_task(client.predict("lookup", idx(0, 1)))
                await wait_for(gate.entered.is_set, "the first batch to reach the model")
                batch = [asyncio.create_task(client.predict("lookup", idx(*v))) for v in ((2,), (7,), (3, 4))]
                await wait_for(lambda: queued_rows(server, "lookup") == 4, "the failing batch to queue")
                gate.release()
                results = await asyncio.gather(first, *batch, return_exceptions=True)
                after = await client.predict("lookup", idx(4, 0))
                return results, after
            finally:
                await client.close()

        (first, *batch), after = asyncio.run(run())
    np.testing.assert_array_equal(first["value"], [10.0, 11.0])
    for error in batch:  # the bad index fails its whole batch with the runtime's status, as in TF Serving
        assert isinstance(error, InvalidInput), error
        assert "indices element out of data bounds, idx=7" in str(error)
    np.testing.assert_array_equal(after["value"], [14.0, 10.0])


def test_a_model_breaking_the_batch_contract_fails_with_internal(model_dirs) -> None:
    """``pooled`` declares a dynamic batch dimension but sums over it: its output cannot be split."""
    options = BatchingOptions(max_batch_size=8, num_batch_threads=1)
    with serving(model_dirs, options, pooled="pooled") as (server, gates):
        gate = gates["pooled"]

        async def run():
            client = AsyncClient(server.grpc_target, timeout=60)
            try:
                gate.hold()
                first = asyncio.create_task(client.predict("pooled", rows_inputs(0, 1)))
                await wait_for(gate.entered.is_set, "the first batch to reach the model")
                batch = [asyncio.create_task(client.predict("pooled", rows_inputs(i, 1))) for i in (1, 2)]
                await wait_for(lambda: queued_rows(server, "pooled") == 2, "two requests to queue")
                gate.release()
                results = await asyncio.gather(first, *batch, return_exceptions=True)
                after = await client.predict("pooled", rows_inputs(3, 1))
                return results, after
            finally:
                await client.close()

        (first, *batch), after = asyncio.run(run())
    np.testing.assert_array_equal(first["y"], rows_inputs(0, 1)["x"])  # one row: the sum is the row
    for error in batch:
        assert isinstance(error, RuntimeFailure), error
        assert str(error) == (
            "pooled version 1: batched output 'y' is shape [1, 3]; its 0th dimension must equal the batch size 2 "
            "for the batch to be split back per request"
        )
    np.testing.assert_array_equal(after["y"], rows_inputs(3, 1)["x"])


def test_request_larger_than_max_batch_size_is_invalid_argument(model_dirs) -> None:
    with (
        serving(model_dirs, BatchingOptions(max_batch_size=4), rows_big="rows") as (server, _),
        Client(server.grpc_target, timeout=30) as client,
    ):
        with pytest.raises(InvalidInput, match="^Task size 5 is larger than maximum input batch size 4$"):
            client.predict("rows_big", rows_inputs(0, 5))
        with pytest.raises(InvalidInput, match="must have equal 0th-dimension size; got x: 2, k: 3"):
            client.predict("rows_big", {"x": rows_inputs(0, 2)["x"], "k": rows_inputs(0, 3)["k"]})
        np.testing.assert_array_equal(client.predict("rows_big", rows_inputs(1, 4))["s"], [3004, 3013, 3022, 3031])


def test_large_batch_splitting_runs_a_big_request_in_pieces(model_dirs, expected) -> None:
    options = BatchingOptions(
        max_batch_size=8, enable_large_batch_splitting=True, max_execution_batch_size=3, num_batch_threads=1
    )
    with serving(model_dirs, options, rows_s="rows") as (server, gates):
        gate = gates["rows_s"]
        with Client(server.grpc_target, timeout=30) as client:
            inputs = rows_inputs(5, 7)
            got = client.predict("rows_s", inputs)
    assert sorted(gate.calls) == [1, 3, 3]
    want = expected("rows", inputs)
    np.testing.assert_array_equal(got["y"], want["y"])
    np.testing.assert_array_equal(got["s"], want["s"])


def test_fixed_batch_dimension_runs_unbatched(model_dirs, caplog) -> None:
    labels = {"model": "fixed", "version": "1", "signature": "serving_default"}
    before = sample("deploykit_batch_size_count", labels)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    with (
        caplog.at_level(logging.INFO, logger="deploykit.server.batching"),
        serving(model_dirs, BatchingOptions(max_batch_size=8), fixed="fixed") as (server, gates),
        Client(server.grpc_target, timeout=30) as client,
    ):
        for _ in range(3):
            np.testing.assert_array_equal(client.predict("fixed", {"x": x})["y"], 2 * x + 1)
    assert gates["fixed"].calls == [2, 2, 2]
    assert sample("deploykit_batch_size_count", labels) == before
    notes = [r.getMessage() for r in caplog.records if "runs unbatched" in r.getMessage()]
    assert notes == [
        "model fixed version 1 signature serving_default runs unbatched: batching needs a dynamic "
        "first dimension on every input and output"
    ]


def test_release_version_answers_queued_requests_then_refuses(model_dirs, expected) -> None:
    with serving(model_dirs, BatchingOptions(max_batch_size=4, num_batch_threads=1), rows_r="rows") as (server, gates):
        gate = gates["rows_r"]
        service = server.server.service
        loaded = service.registry.get("rows_r", 1)

        async def run():
            client = AsyncClient(server.grpc_target, timeout=60)
            try:
                gate.hold()
                first = asyncio.create_task(client.predict("rows_r", rows_inputs(0, 1)))
                await wait_for(gate.entered.is_set, "the first batch to reach the model")
                queued = asyncio.create_task(client.predict("rows_r", rows_inputs(1, 3)))
                await wait_for(lambda: queued_rows(server, "rows_r") == 3, "a request to queue")
                closing = asyncio.wrap_future(
                    asyncio.run_coroutine_threadsafe(service.release_version(loaded, 60), server._loop)
                )
                await asyncio.sleep(0.05)
                assert not closing.done()  # waits for the batch in flight and the queued one
                gate.release()
                assert await closing  # released within the timeout
                answers = await asyncio.gather(first, queued)
                return answers
            finally:
                await client.close()

        first, queued = asyncio.run(run())
        np.testing.assert_array_equal(queued["y"], expected("rows", rows_inputs(1, 3))["y"])
        with Client(server.grpc_target, timeout=1) as client, pytest.raises(Unreachable, match="being unloaded"):
            client.predict("rows_r", rows_inputs(2, 1))


def test_unbatched_server_is_unchanged(model_dirs, expected) -> None:
    with serving(model_dirs, None, rows_u="rows") as (server, gates):
        assert server.server.service.batchers is None
        with Client(server.grpc_target, timeout=30) as client:
            got = client.predict("rows_u", rows_inputs(3, 2))
    np.testing.assert_array_equal(got["s"], expected("rows", rows_inputs(3, 2))["s"])


def test_timing_splits_batch_queue_wait_from_compute(model_dirs) -> None:
    with serving(model_dirs, BatchingOptions(max_batch_size=4, num_batch_threads=1), rows_t="rows") as (server, gates):
        gate, service = gates["rows_t"], server.server.service
        timings = [Timing(), Timing()]

        async def run():
            gate.hold()
            first = asyncio.create_task(service.predict(ModelRef("rows_t"), rows_inputs(0, 1), timing=timings[0]))
            await wait_for(gate.entered.is_set, "the first batch to reach the model")
            second = asyncio.create_task(service.predict(ModelRef("rows_t"), rows_inputs(1, 1), timing=timings[1]))
            held = time.perf_counter()
            await asyncio.sleep(0.2)
            gate.release()
            await asyncio.gather(first, second)
            return time.perf_counter() - held

        on_loop(server, run())
    first, second = timings
    # Causal bounds, not performance: the second request cannot start before the gate opened, and
    # the first one's computation spans the hold.
    assert second.queue_s >= 0.2 and first.compute_s >= 0.2
    assert first.queue_s < first.compute_s and second.compute_s > 0


def test_serve_process_with_tfserving_batching_flags(model_dirs, expected) -> None:
    port = free_port()
    exe = Path(sys.executable).with_name("deploykit")
    process = subprocess.Popen(
        [
            str(exe),
            "serve",
            "--model_base_path",
            str(model_dirs["rows"].parent),
            "--model_name",
            "rows",
            "--port",
            str(port),
            "--rest_api_port",
            "0",
            "--enable_batching",
            "--batching_parameters_file",
            str(TFSERVING_TESTDATA / "batching_config.txt"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with Client(f"grpc://127.0.0.1:{port}", timeout=60) as client:
            client.wait_until_ready("rows", timeout=60)

            async def run():
                clients = [AsyncClient(f"grpc://127.0.0.1:{port}", timeout=60) for _ in range(4)]
                try:
                    return await asyncio.gather(
                        *(clients[i % 4].predict("rows", rows_inputs(i, 1 + i % 2)) for i in range(16))
                    )
                finally:
                    for c in clients:
                        await c.close()

            answers = asyncio.run(run())
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    for i, got in enumerate(answers):
        np.testing.assert_array_equal(got["y"], expected("rows", rows_inputs(i, 1 + i % 2))["y"])
    assert process.returncode == 0, stderr
    assert (
        "dynamic batching on: max_batch_size=128 batch_timeout_micros=0 max_enqueued_batches=1000000 "
        "num_batch_threads=8 allowed_batch_sizes=any" in stderr
    )


def test_scalar_inputs_are_refused_by_the_scheduler(model_dirs) -> None:
    """Reaches the scheduler only for models fed without shape checks (TF1 graphs); TF Serving's text."""
    with serving(model_dirs, BatchingOptions(max_batch_size=4), rows_0="rows") as (server, _):
        service = server.server.service
        loaded = service.registry.get("rows_0", 1)

        async def run():
            scheduler = service.batchers.get(loaded, "serving_default", loaded.signatures["serving_default"])
            await scheduler.run({"x": np.zeros((1, 3), np.float32), "k": np.float32(1.0)})

        with pytest.raises(InvalidInput, match="^Batching Run\\(\\) input tensors must have at least one dimension$"):
            on_loop(server, run())
