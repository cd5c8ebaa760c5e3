"""ONNX Runtime session options chosen from cores, workers and model; GPU provider selection is
checked with made-up provider lists (no GPU here: CUDA graphs, IO binding and TensorRT cannot run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from deploykit.runtimes import ort_tuning
from deploykit.runtimes.onnx import OnnxRuntime
from deploykit.tensors import Signature, TensorSpec

CPU, CUDA, TRT = ort_tuning.CPU, ort_tuning.CUDA, ort_tuning.TENSORRT


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """y = relu(x @ W): enough for the optimizer to have something to write."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.arange(12, dtype=np.float32).tolist())
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [weight],
    )
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), path)
    return path


def test_gpu_providers_get_caches_and_cuda_graphs_only_for_static_shapes(tmp_path: Path) -> None:
    chosen = dict(ort_tuning.provider_options([TRT, CUDA, CPU], static_shapes=True, cache=tmp_path))
    assert list(chosen) == [TRT, CUDA, CPU]
    assert chosen[TRT]["trt_engine_cache_enable"] == "1"
    assert chosen[TRT]["trt_engine_cache_path"] == str(tmp_path / "tensorrt")
    assert chosen[TRT]["trt_cuda_graph_enable"] == "1" and chosen[CUDA]["enable_cuda_graph"] == "1"
    dynamic = dict(ort_tuning.provider_options([CUDA, CPU], static_shapes=False, cache=tmp_path))
    assert "enable_cuda_graph" not in dynamic[CUDA] and dynamic[CUDA]["cudnn_conv_algo_search"] == "HEURISTIC"
    assert ort_tuning.provider_options([CPU], static_shapes=True) == [(CPU, {})]  # CPU always last, once


def test_gpu_settings_bind_io_and_skip_the_graph_cache(model: Path) -> None:
    static = Signature((TensorSpec("x", "float32", (8, 4)),), (TensorSpec("y", "float32", (8, 3)),))
    settings = ort_tuning.choose(model, [TRT, CUDA, CPU], static)
    assert settings.io_binding and settings.cuda_graph
    assert settings.optimized_model_path is None  # TensorRT builds engines from the original graph
    assert not ort_tuning.choose(model, [CUDA, CPU]).cuda_graph  # no signature: shapes unknown


def test_threads_follow_cores_and_workers(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort_tuning, "physical_cores", lambda: 8)
    monkeypatch.setattr("deploykit.runtimes.threads.physical_cores", lambda: 8)
    one = ort_tuning.choose(model, [CPU], workers=1, cache=False)
    assert (one.intra_op_num_threads, one.inter_op_num_threads, one.allow_spinning) == (8, 1, True)
    monkeypatch.setenv("DEPLOYKIT_WORKERS", "3")
    shared = ort_tuning.choose(model, [CPU], cache=False)
    # 8 cores // 3 workers; idle threads must not spin on cores the other workers need.
    assert (shared.intra_op_num_threads, shared.allow_spinning, shared.workers) == (2, False, 3)
    assert ort_tuning.choose(model, [CPU], intra_op_threads=5, cache=False).intra_op_num_threads == 5
    default = ort_tuning.choose(model, [CPU], tuning="default", cache=False)
    assert (default.tuning, default.intra_op_num_threads, default.allow_spinning) == ("default", 0, None)


def test_optimized_graph_is_cached_and_reused(model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYKIT_CACHE_DIR", str(tmp_path / "cache"))
    x = {"x": np.ones((2, 4), np.float32)}
    first = OnnxRuntime(model, providers=[CPU])
    described = first.describe()["session_options"]
    assert described["optimized_model_cached"] is False and Path(described["optimized_model_path"]).is_file()
    assert described["graph_optimization_level"] == "ORT_ENABLE_ALL"
    second = OnnxRuntime(model, providers=[CPU])
    assert second.describe()["session_options"]["optimized_model_cached"] is True
    np.testing.assert_array_equal(second.predict(x)["y"], first.predict(x)["y"])
    assert second.signature == first.signature
    with pytest.raises(Exception, match="tuning 'fast'"):
        OnnxRuntime(model, providers=[CPU], tuning="fast")
