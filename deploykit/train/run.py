"""Orchestration of ``deploykit train``: data, twins, both loops, checkpoints and the report."""

from __future__ import annotations

import hashlib
import importlib
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from deploykit import __version__
from deploykit.data import Dataset, load_dataset
from deploykit.errors import TrainingError, UsageError
from deploykit.fsutil import atomic_directory
from deploykit.train.common import Hyper, accuracy, cross_entropy
from deploykit.zoo.spec import ArchSpec, make_spec

#: Frameworks ``deploykit train`` can train, in the order they run.
FRAMEWORKS = ("torch", "tf")

SPEC_FILE = "spec.json"
REPORT_FILE = "train_report.json"
CHECKPOINTS = {"torch": "model.safetensors", "tf": "model.keras"}


class EpochCallback(Protocol):
    """Called after every epoch; the CLI uses it to drive a progress bar."""

    def __call__(self, framework: str, epoch: int, epochs: int, loss: float) -> None: ...


@dataclass(frozen=True)
class TrainConfig:
    """What to train and how. ``frameworks`` is a subset of :data:`FRAMEWORKS`."""

    model: str = "mlp"
    frameworks: tuple[str, ...] = FRAMEWORKS
    data: str = "digits"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    out: Path = Path("runs/mlp")

    def check(self) -> None:
        """Reject unusable settings before anything is loaded or written."""
        unknown = [f for f in self.frameworks if f not in FRAMEWORKS]
        if unknown or not self.frameworks:
            raise UsageError(f"framework must be one of {', '.join(FRAMEWORKS)} or both, got {unknown}")
        for name, value in (("epochs", self.epochs), ("batch-size", self.batch_size)):
            if value < 1:
                raise UsageError(f"--{name} must be a positive integer, got {value}")
        if not self.lr > 0:
            raise UsageError(f"--lr must be a positive number, got {self.lr}")


@dataclass
class FrameworkResult:
    """Outcome of training one twin."""

    framework: str
    framework_version: str
    test_accuracy: float
    test_loss: float
    final_train_loss: float
    epochs: int
    wall_time_s: float
    parameters: int
    checkpoint: str
    train_loss_history: list[float] = field(default_factory=list)


@dataclass
class TrainReport:
    """Everything ``train_report.json`` records."""

    deploykit_version: str
    model: dict[str, Any]
    data: dict[str, Any]
    hyperparameters: dict[str, Any]
    same_initial_weights: bool
    results: dict[str, FrameworkResult]
    #: Share of test samples on which both twins predict the same class (both frameworks only).
    prediction_agreement: float | None
    environment: dict[str, str]
    out: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["results"] = {k: asdict(v) for k, v in self.results.items()}
        return data


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


class _Twin:
    """One framework's model plus the loop module that trains it (imported lazily)."""

    def __init__(self, framework: str, spec: ArchSpec, seed: int) -> None:
        self.framework = framework
        prefix = "torch" if framework == "torch" else "keras"
        loop = importlib.import_module(f"deploykit.train.{prefix}_loop")
        models = importlib.import_module(f"deploykit.zoo.{prefix}_models")
        self.loop = loop
        loop.seed_everything(seed)
        self.model = models.build(spec, seed=seed)


def _data_summary(data: Dataset) -> dict[str, Any]:
    return {
        **data.summary(),
        "train_sha256": _sha256(data.x_train),
        "test_sha256": _sha256(data.x_test),
    }


def train(config: TrainConfig, on_epoch: EpochCallback | None = None) -> TrainReport:
    """Train the requested twins, write checkpoints and the report into ``config.out`` atomically.

    ``config.out`` ends up containing ``spec.json`` (architecture, to rebuild either twin),
    ``model.safetensors`` and/or ``model.keras``, and ``train_report.json``. Nothing is written when
    the data or settings are unusable or when a framework fails; an existing ``out`` is replaced only
    once the new run is complete.
    """
    config.check()
    data = load_dataset(config.data, config.model, seed=config.seed)
    spec = make_spec(config.model, data.sample_shape, data.num_classes)
    hyper = Hyper(config.epochs, config.batch_size, config.lr, config.seed)
    report_epoch = on_epoch or (lambda *args: None)

    twins = {fw: _Twin(fw, spec, config.seed) for fw in FRAMEWORKS if fw in config.frameworks}
    same_init = len(twins) == 2
    if same_init:
        from deploykit.zoo.transfer import torch_to_keras

        torch_to_keras(spec, twins["torch"].model, twins["tf"].model)

    results: dict[str, FrameworkResult] = {}
    logits: dict[str, np.ndarray] = {}
    for fw, twin in twins.items():
        started = time.perf_counter()
        try:
            history = twin.loop.fit(
                twin.model,
                data.x_train,
                data.y_train,
                hyper,
                lambda epoch, loss, fw=fw: report_epoch(fw, epoch, hyper.epochs, loss),
            )
        except Exception as exc:
            raise TrainingError(f"{fw} training of {config.model!r} failed: {exc}") from exc
        wall = time.perf_counter() - started
        logits[fw] = twin.loop.predict(twin.model, data.x_test)
        results[fw] = FrameworkResult(
            framework=fw,
            framework_version=_version("torch" if fw == "torch" else "tensorflow"),
            test_accuracy=accuracy(logits[fw], data.y_test),
            test_loss=cross_entropy(logits[fw], data.y_test),
            final_train_loss=history[-1],
            epochs=hyper.epochs,
            wall_time_s=round(wall, 3),
            parameters=twin.loop.parameter_count(twin.model),
            checkpoint=CHECKPOINTS[fw],
            train_loss_history=history,
        )

    agreement = None
    if same_init:
        agreement = float((logits["torch"].argmax(1) == logits["tf"].argmax(1)).mean())

    report = TrainReport(
        deploykit_version=__version__,
        model=spec.to_dict(),
        data=_data_summary(data),
        hyperparameters={**asdict(hyper), "optimizer": "adam", "loss": "softmax cross-entropy"},
        same_initial_weights=same_init,
        results=results,
        prediction_agreement=agreement,
        environment={"python": platform.python_version(), "platform": platform.platform()},
        out=str(config.out),
    )
    with atomic_directory(config.out, replace=True) as staging:
        (staging / SPEC_FILE).write_text(json.dumps(spec.to_dict(), indent=2) + "\n")
        for fw, twin in twins.items():
            twin.loop.save(twin.model, staging / CHECKPOINTS[fw])
        (staging / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report
