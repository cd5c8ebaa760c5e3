"""``deploykit pipeline run`` end to end on small configurations: real training, exports, servers on
loopback ports, the shared load tester, and the report opened in headless Chromium."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from deploykit.pipeline import config as pipeline_config
from deploykit.pipeline import parity
from deploykit.pipeline import servers as pipeline_servers
from deploykit.pipeline.run import run_pipeline
from tests import browser

SHORT_LOAD = {"duration_s": 0.5, "warmup_s": 0.1, "window_s": 0.25, "rounds": 2, "under_load_concurrency": 2}


def _config(tmp: Path, serving: dict | None = None, **model) -> pipeline_config.PipelineConfig:
    return pipeline_config.parse(
        {
            "reports_dir": str(tmp / "reports"),
            "work_dir": str(tmp / "work"),
            "run_name": "t",
            "models": [{"name": "mlp", "epochs": 1, **model}],
            "serving": serving or {},
            "load": SHORT_LOAD,
        },
        "test",
    )


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline and "pytest" not in cmdline and _alive(int(entry)):
                found.append(cmdline)
    return found


def _assert_no_server_left(report: dict, report_dir: Path) -> None:
    pids = [s["pid"] for m in report["models"] for s in m.get("servers", []) if s.get("pid")]
    assert pids, "the run started no server"
    assert not [p for p in pids if _alive(p)]
    assert not _processes_mentioning(str(report_dir))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> tuple[dict, Path, int]:
    """The MLP twins, every format, the default protocols, a short load, and Triton's compatible mode
    (no tritonserver here: deploykit's v2 server serves Triton's repository, labelled as such)."""
    tmp = tmp_path_factory.mktemp("pipeline")
    messages: list[str] = []
    report, directory, code = run_pipeline(_config(tmp, serving={"triton": "compatible"}), messages.append)
    report["_messages"] = messages
    return report, directory, code


@pytest.mark.slow
@pytest.mark.timeout(1800)  # its setup is a whole pipeline run: ~4 min alone, far more on a shared machine
def test_every_section_of_the_json_report(full_run) -> None:
    report, directory, code = full_run
    assert code == 0, report["failed_step"]
    on_disk = json.loads((directory / "report.json").read_text())
    assert on_disk["schema_version"] == 1 and on_disk["status"] == "passed" and on_disk["exit_code"] == 0
    assert [s["step"] for s in on_disk["steps"]][:6] == [
        "train",
        "export",
        "validate",
        "start servers",
        "serving parity",
        "load test at batch 1 (concurrency 1)",
    ]
    assert all(s["status"] == "ok" and s["seconds"] is not None for s in on_disk["steps"])
    (model,) = on_disk["models"]
    assert set(model["train"]["frameworks"]) == {"torch", "tf"}
    assert all(0 <= r["test_accuracy"] <= 1 for r in model["train"]["frameworks"].values())
    formats = {(a["framework"], a["format"]) for a in model["export"]["artifacts"]}
    assert formats == {
        ("torch", "torchscript"),
        ("torch", "pt2"),
        ("torch", "onnx"),
        ("tf", "savedmodel"),
        ("tf", "onnx"),
    }
    assert all(a["size_bytes"] > 0 and a["export_s"] > 0 for a in model["export"]["artifacts"])
    assert all(v["passed"] for v in model["validation"])
    paths = {r["path"] for r in model["serving_parity"]}
    # TF Serving's API (gRPC, REST) for all 5 artifacts, v2 gRPC for the 4 deploykit serves, and
    # Triton's 3 (both ONNX exports, TorchScript) over v2 gRPC.
    assert {r["protocol"] for r in model["serving_parity"]} == {"grpc", "rest", "v2-grpc"}
    assert {p for p in paths if p.endswith(" via triton")} == {
        "mlp-tf-onnx v2-grpc via triton",
        "mlp-torch-onnx v2-grpc via triton",
        "mlp-torch-torchscript v2-grpc via triton",
    }
    assert len(paths) == 5 * 2 + 4 + 3 and all(r["passed"] for r in model["serving_parity"])
    assert {r["batch_size"] for r in model["serving_parity"]} == {2, 7}
    servers = {s["group"]: s for s in model["servers"]}
    assert set(servers) == {"onnxruntime", "torch", "tfserving", "triton"}
    for s in servers.values():
        assert s["cold_start_s"] > 0 and s["rss_mb"]["ready"] > 0 and s["rss_mb"]["after_load"] > 0
        assert s["engine"] and s["exit_code"] is not None
    assert "compatible mode" in servers["tfserving"]["engine"]  # no tensorflow_model_server here: labelled
    assert "Triton's compatible mode" in servers["triton"]["engine"]  # nor tritonserver
    assert sorted(servers["triton"]["models"]) == ["mlp-tf-onnx", "mlp-torch-onnx", "mlp-torch-torchscript"]
    assert len(model["paths"]) == len(paths)
    for p in model["paths"]:
        for key in ("batch1", "under_load"):
            m = p[key]
            assert m["p50_ms"] > 0 and m["p99_ms"] >= m["p50_ms"] and m["rps"] > 0
            assert m["p50_ci95_ms"] is not None and m["rps_ci95"] is not None
            assert {"client_network", "compute"} <= set(m["breakdown_ms"])
    assert model["load"]["under_load"]["levels"][0]["level"] == SHORT_LOAD["under_load_concurrency"]
    verdict = model["verdict"]
    assert verdict["agree_numerically"] is True
    assert verdict["fastest_batch1"] and verdict["most_throughput_under_load"]
    assert "Fastest at batch 1" in verdict["text"]
    for claim in model["frameworks"].values():
        assert claim["first_attempt_ok"] == claim["formats_attempted"]
        assert set(claim["converter_warnings"]) == set(claim["formats_attempted"])
        assert all(v > 0 for v in claim["serving_environment_mb"].values())
        assert all(c["cold_start_s"] > 0 for c in claim["cold_start"].values())
        assert all("deploykit serve" in e for e in claim["engines_accepting"].values())
    assert "TF Serving" in model["frameworks"]["tf"]["engines_accepting"]["savedmodel"]
    assert (directory / "report.md").read_text().startswith("# deploykit pipeline `t`: PASSED")
    assert 'tests="' in (directory / "junit.xml").read_text()
    assert any(m.startswith("==> mlp: load test") for m in report["_messages"])  # progress per step


def test_triton_auto_without_tritonserver_is_a_note_not_a_server(tmp_path: Path, monkeypatch) -> None:
    """No tritonserver on PATH and no Docker engine here: auto starts nothing and says why."""
    monkeypatch.setenv("PATH", str(tmp_path))  # neither tritonserver nor docker
    server, notes = pipeline_servers._triton(tmp_path, ["mlp-torch-onnx"], tmp_path, "auto")
    assert server is None
    assert notes and "Triton not started: no tritonserver on PATH and no Docker engine" in notes[0]
    assert pipeline_servers._triton(tmp_path, ["mlp-torch-onnx"], tmp_path, "off") == (None, [])


@pytest.mark.slow
def test_no_server_survives_success(full_run) -> None:
    report, directory, _ = full_run
    _assert_no_server_left(report, directory)


@pytest.mark.slow
@pytest.mark.skipif(browser.chromium() is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_html_report_renders_in_chromium(full_run, tmp_path: Path) -> None:
    _, directory, _ = full_run
    page = browser.open_page(directory / "report.html", tmp_path / "report.png")
    assert page.console_errors == []
    plots = [i for i in page.images if i["alt"]]
    captions = " ".join(i["alt"] for i in plots)
    for kind in ("latency percentile spectrum", "throughput vs latency", "p50 per path", "throughput per path"):
        assert kind in captions
    assert all(i["complete"] and i["width"] > 100 and i["height"] > 100 for i in plots)
    assert page.screenshot.stat().st_size > 10_000 and page.screenshot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_a_parity_mismatch_fails_the_run(tmp_path: Path, monkeypatch) -> None:
    """The servers answer correctly here, so one REST answer is corrupted on its way to the check
    (the seam is the pipeline's one request function); the run must fail naming path and output."""
    real = parity.predict

    def wrong(path, inputs):
        outputs = real(path, inputs)
        if path.protocol == "rest":
            outputs = {k: np.asarray(v) + 0.5 for k, v in outputs.items()}
        return outputs

    monkeypatch.setattr(parity, "predict", wrong)
    report, directory, code = run_pipeline(_config(tmp_path, frameworks=["torch"], formats=["onnx"]), lambda m: None)
    assert code == 1 and report["status"] == "failed"
    failed = report["failed_step"]
    assert failed["step"] == "serving parity"
    assert "mlp-torch-onnx rest: output logits at batch 2: max abs error" in failed["error"]
    assert "mlp-torch-onnx grpc" not in failed["error"]
    on_disk = json.loads((directory / "report.json").read_text())
    assert on_disk["exit_code"] == 1 and "load" not in on_disk["models"][0]  # later steps did not run
    assert "**Failed step:** `serving parity`" in (directory / "report.md").read_text()
    assert (directory / "report.html").is_file()
    _assert_no_server_left(report, directory)


@pytest.mark.slow
def test_sigint_stops_every_server_and_writes_the_report(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "reports_dir": str(tmp_path / "reports"),
                "work_dir": str(tmp_path / "work"),
                "run_name": "int",
                "models": [{"name": "mlp", "epochs": 1, "frameworks": ["torch"], "formats": ["onnx", "torchscript"]}],
                "load": {**SHORT_LOAD, "duration_s": 60},
            }
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "deploykit", "pipeline", "run", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    seen = []
    for line in process.stderr:  # step lines are printed as they start
        seen.append(line)
        if "==> mlp: load test" in line:
            break
    time.sleep(2)  # inside the load test: servers running, load generator busy
    process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()  # the assertion below reports it; leave nothing running behind the test
        out, err = process.communicate()
    assert process.returncode == 130, "".join(seen) + err
    report = json.loads((tmp_path / "reports" / "int" / "report.json").read_text())
    assert report["status"] == "interrupted"
    assert [s["status"] for s in report["steps"]][-1] == "interrupted"
    assert "report:" in out
    _assert_no_server_left(report, tmp_path / "reports" / "int")


def test_config_errors_name_the_field_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - name: mlp\n    formats: [onnx, tflite]\n    epoch: 3\nload:\n  rounds: 0\n")
    result = subprocess.run(
        [sys.executable, "-m", "deploykit", "pipeline", "run", str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "models[0].formats: unknown format(s) ['tflite']; allowed: 'all' or a list of" in result.stderr
    assert "models[0].epoch: unknown key; allowed here: name, architecture" in result.stderr
    assert "load.rounds: Input should be greater than or equal to 1" in result.stderr
    assert pipeline_config.load().models[0].name == "mlp"  # the shipped default is valid
