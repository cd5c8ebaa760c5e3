"""``deploykit pipeline run``: train -> export (validated) -> re-validate -> serve -> wait ready ->
serving parity -> compare under load -> stop -> report, for every model of the configuration.

Every server is stopped whatever happens (success, a failed step, Ctrl-C or SIGTERM), and the report
of the steps that ran is written in every case: ``REPORTS_DIR/RUN/report.{json,md,html}``.
Exit codes: 0 passed, 1 a step failed (a parity mismatch names the path, output and error), 2
configuration error (raised before anything runs), 130 interrupted.
"""

from __future__ import annotations

import contextlib
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deploykit import __version__
from deploykit.errors import DeployKitError
from deploykit.pipeline.config import ModelConfig, PipelineConfig
from deploykit.pipeline.parity import DeployPath
from deploykit.pipeline.servers import Server, plan_servers

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130
#: How a server group's engine is labelled when deploykit's own server stood in for the real one.
COMPATIBLE_MODES = {
    "tfserving": "TF Serving's compatible mode (no tensorflow_model_server or Docker engine here)",
    "triton": "Triton's compatible mode (deploykit's v2 server on the triton-deploy repository; no tritonserver here)",
}

Progress = Callable[[str], None]
#: Progress messages starting with this begin a step (the CLI prints them as lines, the rest as status).
STEP_MARK = "==> "


class StepFailed(DeployKitError):
    """A step's own verdict (parity mismatch, failed export): the run fails with exit 1."""

    exit_code = 1


class Interrupted(BaseException):
    """SIGTERM, turned into an exception so cleanup runs as for Ctrl-C."""


class Run:
    """One pipeline run: its directories, its report dict (filled as steps finish) and its servers."""

    def __init__(self, config: PipelineConfig, progress: Progress) -> None:
        self.config = config
        self.progress = progress
        self.name = config.run_name or datetime.now().strftime("%Y%m%d-%H%M%S")
        self.report_dir = config.reports_dir / self.name
        self.work_dir = config.work_dir / self.name
        self.servers: list[Server] = []
        self.report: dict = {
            "schema_version": 1,
            "kind": "pipeline",
            "tool": f"deploykit {__version__}",
            "run": self.name,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": config.model_dump(mode="json"),
            "status": "running",
            "exit_code": None,
            "failed_step": None,
            "steps": [],
            "models": [],
        }

    @contextlib.contextmanager
    def step(self, name: str, model: str | None = None) -> Iterator[None]:
        """Time a step, record its outcome; a failure is recorded with the step's name and re-raised."""
        entry: dict[str, Any] = {"step": name, "model": model, "status": "running", "seconds": None, "error": None}
        self.report["steps"].append(entry)
        self.progress(f"{STEP_MARK}{model + ': ' if model else ''}{name}")
        started = time.monotonic()
        try:
            yield
            entry["status"] = "ok"
        except (KeyboardInterrupt, Interrupted):
            entry["status"] = "interrupted"
            raise
        except Exception as exc:
            entry["status"] = "failed"
            entry["error"] = str(exc) if isinstance(exc, DeployKitError) else f"{type(exc).__name__}: {exc}"
            self.report["failed_step"] = {"step": name, "model": model, "error": entry["error"]}
            if not isinstance(exc, DeployKitError):
                entry["traceback"] = traceback.format_exc(limit=8)
            raise
        finally:
            entry["seconds"] = round(time.monotonic() - started, 3)

    def stop_servers(self) -> None:
        for server in self.servers:
            if server.process is not None and server.exit_code is None:
                self.progress(f"stopping {server.title}")
                server.stop()


def _train(run: Run, model: ModelConfig, out: Path) -> dict:
    from deploykit.train.run import TrainConfig, train

    def on_epoch(framework: str, epoch: int, epochs: int, loss: float) -> None:
        run.progress(f"{model.name}: train {framework} epoch {epoch}/{epochs} loss {loss:.4f}")

    config = TrainConfig(
        model=model.architecture,
        frameworks=tuple(model.frameworks),
        data=model.data,
        epochs=model.epochs,
        batch_size=model.batch_size,
        lr=model.lr,
        seed=model.seed,
        out=out,
    )
    config.check()
    report = train(config, on_epoch)
    return {
        "frameworks": {
            name: {k: v for k, v in asdict(r).items() if k != "train_loss_history"}
            for name, r in report.results.items()
        },
        "prediction_agreement": report.prediction_agreement,
        "data": report.data,
    }


def _export(run: Run, model: ModelConfig, train_dir: Path, repo: Path) -> dict:
    from deploykit.export.run import ExportOptions, export
    from deploykit.export.sources import load_sources
    from deploykit.report.export import to_dict

    sources = load_sources(str(train_dir), tuple(model.frameworks), name=model.name)
    formats = {f for fw in model.frameworks for f in model.formats_for(fw)}
    options = ExportOptions(repo=repo, formats=tuple(sorted(formats)), seed=model.seed)
    report = export(sources, options, lambda artifact, stage: run.progress(f"{model.name}: export {artifact}: {stage}"))
    return to_dict(report)


def _validate(export: dict) -> list[dict]:
    from deploykit.export.verify import verify

    results = []
    for artifact in export["artifacts"]:
        if artifact["path"]:
            r = verify(Path(artifact["path"]))
            results.append(
                {
                    "artifact": artifact["name"],
                    "passed": r.passed,
                    "error": r.error,
                    "file_problems": r.file_problems,
                    "parity": [p.to_dict() for p in r.parity],
                }
            )
    return results


def _compare(run: Run, paths: list[DeployPath], concurrency: int, label: str) -> dict:
    from deploykit.loadtest.api import compare
    from deploykit.loadtest.runner import RunSettings
    from deploykit.loadtest.target import parse_load_target

    load = run.config.load
    settings = RunSettings(
        mode="closed",
        levels=(float(concurrency),),
        duration_s=load.duration_s,
        warmup_s=load.warmup_s,
        window_s=load.window_s,
        processes=load.processes,
        max_trials=2,
        seed=0,
    )
    targets = [parse_load_target(p.target) for p in paths]
    if len(targets) == 1:
        targets.append(targets[0])  # compare needs two; the same path twice is still one measurement
    report = compare(
        targets,
        settings,
        rounds=load.rounds,
        batch_size=load.batch_size,
        progress=lambda target, r: run.progress(f"{label}: round {r + 1}/{load.rounds}: {target}"),
    )
    for lv in report["levels"]:
        lv.pop("histograms", None)  # kept out of the pipeline report: it stays readable
    return report


def _model(run: Run, model: ModelConfig) -> None:
    from deploykit.pipeline import parity, verdict
    from deploykit.repository import read_manifest

    entry: dict = {"name": model.name, "architecture": model.architecture}
    run.report["models"].append(entry)
    work = run.work_dir / model.name
    repo = run.work_dir / "models"

    with run.step("train", model.name):
        entry["train"] = _train(run, model, work / "train")
    with run.step("export", model.name):
        entry["export"] = _export(run, model, work / "train", repo)
        failed = [f"{a['name']}: {a['error']}" for a in entry["export"]["artifacts"] if not a["passed"]]
        if failed:
            raise StepFailed("export failed for " + "; ".join(failed))
    with run.step("validate", model.name):
        entry["validation"] = _validate(entry["export"])
        failed = [v["artifact"] for v in entry["validation"] if not v["passed"]]
        if failed:
            raise StepFailed(f"re-validation from disk failed for {', '.join(failed)}")

    artifacts = entry["export"]["artifacts"]
    manifests = {a["name"]: read_manifest(Path(a["path"])) for a in artifacts}
    with run.step("start servers", model.name):
        servers, entry["serving_notes"] = plan_servers(repo, artifacts, run.report_dir, run.config.serving)
        for note in entry["serving_notes"]:
            run.progress(f"{model.name}: {note}")
        run.servers += servers
        entry["servers"] = [s.to_dict() for s in servers]
        for server in servers:  # one at a time: a cold start measured alone is the engine's own
            run.progress(f"{model.name}: starting {server.title} ({', '.join(server.models)})")
            server.start()
            server.wait_ready(run.config.serving.ready_timeout_s)
        entry["servers"] = [s.to_dict() for s in servers]

    by_name = {a["name"]: a for a in artifacts}
    paths = [
        DeployPath(
            name,
            by_name[name]["framework"],
            by_name[name]["format"],
            protocol,
            server.title,
            server.endpoint(protocol),
            Path(by_name[name]["path"]),
            via="triton" if server.group == "triton" else "",
        )
        for server in servers
        for name in server.models
        for protocol in run.config.serving.protocols
        if protocol in server.protocols
    ]
    with run.step("serving parity", model.name):
        entry["serving_parity"] = []
        for path in paths:
            run.progress(f"{model.name}: serving parity: {path.name}")
            entry["serving_parity"] += parity.check(path)
        problems = parity.describe_failures(entry["serving_parity"])
        if problems:
            raise StepFailed("serving parity mismatch: " + "; ".join(problems))

    entry["load"] = {}
    with run.step("load test at batch 1 (concurrency 1)", model.name):
        entry["load"]["batch1"] = _compare(run, paths, 1, f"{model.name}: batch 1")
    concurrency = run.config.load.under_load_concurrency
    with run.step(f"load test under load (concurrency {concurrency})", model.name):
        entry["load"]["under_load"] = _compare(run, paths, concurrency, f"{model.name}: concurrency {concurrency}")
    for server in servers:
        server.rss_mb["after_load"] = _rss(server)
    entry["servers"] = [s.to_dict() for s in servers]
    entry["paths"] = verdict.path_rows(paths, entry["load"]["batch1"], entry["load"]["under_load"])
    for server in servers:
        engines = {p["engine"] for p in entry["paths"] if p["server"] == server.title and p["engine"]}
        server.engine = "; ".join(sorted(engines))
        if server.engine.startswith("deploykit") and server.group in COMPATIBLE_MODES:
            server.engine += f" = {COMPATIBLE_MODES[server.group]}"
    entry["servers"] = [s.to_dict() for s in servers]
    entry["verdict"] = verdict.conclusion(entry["paths"], entry["serving_parity"], entry["export"])
    entry["frameworks"] = verdict.framework_claim(entry["export"], entry["servers"], manifests)


def _rss(server: Server) -> float | None:
    from deploykit.pipeline.servers import process_tree_rss_mb

    return process_tree_rss_mb(server.process.pid) if server.process else None


def _raise_interrupted(signum, frame) -> None:
    raise Interrupted(f"signal {signum}")


def run_pipeline(config: PipelineConfig, progress: Progress = print) -> tuple[dict, Path, int]:
    """Run every model of ``config`` and write the report (also when a step fails or on Ctrl-C).

    Returns (report, report directory, exit code).
    """
    from deploykit.report import pipeline as render
    from deploykit.report.loadtest import environment

    run = Run(config, progress)
    run.report["environment"] = environment()
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    # Ctrl-C must stop the run even when the pipeline was started with SIGINT ignored (a shell's
    # background job inherits SIG_IGN, and Python then leaves it ignored): no server is left behind.
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    code = EXIT_OK
    try:
        for model in config.models:
            _model(run, model)
        run.report["status"] = "passed"
    except (KeyboardInterrupt, Interrupted):
        run.report["status"], code = "interrupted", EXIT_INTERRUPTED
        progress("interrupted: stopping the servers and writing the report of the steps that ran")
    except Exception as exc:
        run.report["status"], code = "failed", EXIT_FAILED
        failed = run.report["failed_step"] or {"step": "pipeline", "error": str(exc)}
        progress(f"step '{failed['step']}' failed: {failed['error']}")
    finally:
        try:
            run.stop_servers()
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, previous_int)
        for entry in run.report["models"]:  # exit codes of the stopped servers
            names = {s.title: s.to_dict() for s in run.servers}
            entry["servers"] = [names.get(s["name"], s) for s in entry.get("servers", [])]
        run.report["exit_code"] = code
        run.report["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        render.write(run.report, run.report_dir)
    return run.report, run.report_dir, code
