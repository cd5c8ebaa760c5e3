"""The bench's TorchServe and SavedModel rows, piece by piece (cheap: no server, no TensorFlow import).

The rows themselves run in ``deploykit bench`` (full mode) and, when TorchServe's environment is built,
in the --quick smoke test (tests/test_bench.py)."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

from deploykit.bench import models, peers, savedmodel, torchserve
from deploykit.bench.run import Settings


def _point(p50: float, rps: float) -> dict:
    return {"p50_ms": p50, "p99_ms": p50 * 2, "rps": rps, "errors": 0}


def test_the_peer_table_names_each_rows_protocol_and_judges_peers_only() -> None:
    rows = [
        {"model": "mlp", "server": "deploykit native", "protocol": peers.PROTOCOLS["v2"],
         "c1": _point(0.5, 4000), "c32": _point(4, 4000), "rss_mb": 100},
        {"model": "mlp", "server": peers.LABELS["torchserve"], "protocol": peers.PROTOCOLS["torchserve"],
         "c1": _point(1.5, 1000), "c32": _point(30, 1000), "rss_mb": 430},
        {"model": "mlp", "server": savedmodel.LABEL, "protocol": peers.PROTOCOLS["tfserving"],
         "c1": _point(1.0, 2000), "c32": _point(16, 2000), "rss_mb": 600},
    ]  # fmt: skip
    lines = peers.section({"peers": rows})
    by_server = {line.split(" | ")[1]: line for line in lines if line.startswith("| mlp |")}
    assert (
        "| TorchServe gRPC Predictions | 1.500 | 1000 | 430 | 3.00x (met) | 4.00x (met) |"
        in by_server["TorchServe 0.12.0"]
    )
    # deploykit's own TF Serving compatible mode: its ratios, no verdict (the targets are against peers)
    assert by_server[savedmodel.LABEL].endswith("| TF Serving gRPC Predict | 1.000 | 2000 | 600 | 2.00x | 2.00x |")
    assert by_server["deploykit native"].endswith("| v2 gRPC ModelInfer | 0.500 | 4000 | 100 |  |  |")


def test_the_report_says_why_torchserve_and_the_savedmodel_were_not_measured() -> None:
    from deploykit.bench import report

    results: dict = {
        "machine": {"cpus": 2, "cpu": "cpu", "platform": "linux", "python": "3.11",
                    "load_average_start": (1.0,), "load_average_end": (1.0,)},
        "settings": {"duration_s": 1, "quick": True}, "floors": {}, "serving": [], "cold_start": [], "peers": [],
        "not_run": {f"peer {peers.LABELS['torchserve']}": torchserve.java_missing() or "Not measured: no Java",
                    savedmodel.LABEL: "Not measured: TensorFlow is not installed"},
    }  # fmt: skip
    text = report.markdown(results, "deploykit bench --quick")
    assert f"- peer TorchServe 0.12.0: {results['not_run']['peer TorchServe 0.12.0']}" in text
    assert f"- {savedmodel.LABEL}: Not measured: TensorFlow is not installed" in text


def test_without_java_torchserve_is_not_measured_and_its_environment_not_built(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no java on it
    monkeypatch.setenv("DEPLOYKIT_TORCHSERVE_VENV", str(tmp_path / "absent"))
    python, why = peers._peer_python("torchserve", Settings(work_dir=tmp_path))
    assert python is None and not (tmp_path / "absent").exists()
    assert why == "Not measured: TorchServe's front end needs Java 11+ and `java` is not on PATH"


def test_the_predictions_request_carries_raw_bytes_and_shape_per_input() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    request = torchserve.request_class().FromString(torchserve.predictions_request("mlp", {"x": x}))
    assert request.model_name == "mlp" and set(request.input) == {"x", "x:shape"}
    assert request.input["x:shape"] == b"2,3" and request.input["x"] == x.tobytes()


def test_torchserve_listens_on_loopback_only_without_token_authorization(tmp_path) -> None:
    ports = dict(grpc=1, grpc_management=2, http=3, management=4, metrics=5, worker=6)
    text = torchserve.config(tmp_path, ports)
    settings = dict(line.split("=", 1) for line in text.splitlines())
    assert settings["grpc_inference_port"] == "1" and settings["grpc_inference_address"] == "127.0.0.1"
    for key in ("inference_address", "management_address", "metrics_address"):
        assert settings[key].startswith("http://127.0.0.1:")
    assert settings["disable_token_authorization"] == "true" and settings["enable_model_api"] == "false"
    assert settings["default_workers_per_model"] == "1" and settings["model_store"] == str(tmp_path)


def test_the_torchserve_handler_answers_the_onnx_outputs_raw_bytes(tmp_path, monkeypatch) -> None:
    """The handler file TorchServe's worker loads, called the way the worker calls it (load, then a batch)."""
    import onnxruntime as ort

    from deploykit.bench.peer_servers import torchserve_onnx as handler

    monkeypatch.setattr(handler, "_session", None)
    models._save(models._mlp(), tmp_path / "model.onnx")
    context = types.SimpleNamespace(system_properties={"model_dir": str(tmp_path)})
    assert handler.handle(None, context) is None
    x = np.random.default_rng(0).random((3, 64), dtype=np.float32)
    [answer] = handler.handle([{"x": bytearray(x.tobytes()), "x:shape": bytearray(b"3,64")}], context)
    expected = ort.InferenceSession(str(tmp_path / "model.onnx")).run(None, {"x": x})[0]
    assert answer == expected.tobytes()


def test_quick_mode_leaves_the_savedmodel_out_and_says_why(tmp_path) -> None:
    repo, why = savedmodel.prepare(None, tmp_path, quick=True)
    assert repo is None and why.startswith("Not measured: quick mode") and not any(tmp_path.iterdir())


def test_the_savedmodel_is_exported_by_deploykit_train_and_export(tmp_path) -> None:
    train, export = savedmodel.commands(tmp_path)
    assert train == [
        "train",
        "--model",
        "mlp",
        "--framework",
        "tf",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "runs/mlp"),
    ]
    assert export[:2] == ["export", str(tmp_path / "runs/mlp")]
    assert export[export.index("--format") + 1] == "savedmodel" and export[-1] == str(tmp_path / "savedmodel")


def test_a_zoo_savedmodel_is_used_as_it_is(tmp_path) -> None:
    (tmp_path / "zoo" / savedmodel.NAME / "1").mkdir(parents=True)
    repo, why = savedmodel.prepare(tmp_path / "zoo", tmp_path / "work", quick=False)
    assert why == "" and repo is not None and (repo / savedmodel.NAME).resolve() == tmp_path / "zoo" / savedmodel.NAME


def test_the_savedmodel_request_is_a_tf_serving_predict_for_it(tmp_path) -> None:
    from deploykit.protocol.protos import serving_pb2 as pb

    x = np.ones((1, 64), np.float32)
    request = pb.PredictRequest.FromString(savedmodel.request_file({"x": x}, tmp_path).read_bytes())
    assert request.model_spec.name == savedmodel.NAME and list(request.inputs) == ["x"]
    assert request.inputs["x"].tensor_content == x.tobytes()


@pytest.mark.parametrize("peer", ["kserve", "mlserver", "torchserve"])
def test_every_peer_has_a_label_and_pins_its_onnxruntime(peer) -> None:
    from deploykit.bench import peer_envs

    assert peer in peers.LABELS and peer_envs.ONNXRUNTIME in peer_envs.PINS[peer]
    assert Path(peer_envs.venv_dir(peer)).name.startswith(peer)


def test_each_peer_is_sent_the_request_of_its_protocol(tmp_path) -> None:
    x = np.ones((1, 64), np.float32)
    case = models.Case("mlp", "mlp", tmp_path / "model.onnx", {"x": x}, b"", tmp_path / "r", 0, (1, 32))
    v2 = tmp_path / "mlp.v2.request"
    assert peers._peer_request("mlserver", case, v2, tmp_path) == (v2, "v2")
    path, protocol = peers._peer_request("torchserve", case, v2, tmp_path)
    assert protocol == "torchserve" and path.read_bytes() == torchserve.predictions_request("mlp", {"x": x})
