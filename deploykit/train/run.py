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
from deploykit.zoo.spec import SIZES, ArchSpec, make_spec, preset_spec

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
    #: Size preset of resnet50/bert (``full`` or ``small``); None = full. Other models have none.
    size: str | None = None

    def check(self) -> None:
        """Reject unusable settings before anything is loaded or written."""
        unknown = [f for f in self.frameworks if f not in FRAMEWORKS]
        if unknown or not self.frameworks:
            raise UsageError(f"framework must be one of {', '.join(FRAMEWORKS)} or both, got {unknown}")
        if self.epochs < 0:
            raise UsageError(f"--epochs must be 0 (untrained, seeded twins) or more, got {self.epochs}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be a positive integer, got {self.batch_size}")
        if self.model in SIZES and self.epochs:
            raise UsageError(
                f"{self.model} is not trained by deploykit (no dataset of its size ships with it); "
                "use --epochs 0 to write seeded twins with the same weights"
            )
        if self.size is not None and self.model not in SIZES:
            raise UsageError(f"--size applies to {' and '.join(SIZES)}, not to {self.model}")
        if not self.lr > 0:
            raise UsageError(f"--lr must be a positive number, got {self.lr}")


@dataclass
class FrameworkResult:
    """Outcome of training one twin (metrics are None without a dataset, or loss without epochs)."""

    framework: str
    framework_version: str
    test_accuracy: float | None
    test_loss: float | None
    final_train_loss: float | None
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
    #: Largest difference between the twins' logits on the evaluation inputs (both frameworks only).
    twin_max_abs_diff: float | None
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

    def __init__(self, framework: str, spec: ArchSpec, seed: int, untrained: bool) -> None:
        self.framework = framework
        prefix = "torch" if framework == "torch" else "keras"
        loop = importlib.import_module(f"deploykit.train.{prefix}_loop")
        models = importlib.import_module(f"deploykit.zoo.{prefix}_models")
        self.loop = loop
        loop.seed_everything(seed)
        self.model = models.build(spec, seed=seed)
        if untrained and framework == "torch":  # before the transfer, so both twins get the statistics
            models.calibrate(self.model, spec, seed)


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
    data: Dataset | None = None
    if config.model in SIZES:  # realistic architectures: seeded twins, no data (epochs is 0)
        spec = preset_spec(config.model, config.size or "full")
    else:
        data = load_dataset(config.data, config.model, seed=config.seed)
        spec = make_spec(config.model, data.sample_shape, data.num_classes)
    hyper = Hyper(config.epochs, config.batch_size, config.lr, config.seed)
    report_epoch = on_epoch or (lambda *args: None)

    untrained = config.epochs == 0
    twins = {fw: _Twin(fw, spec, config.seed, untrained) for fw in FRAMEWORKS if fw in config.frameworks}
    same_init = len(twins) == 2
    if same_init:
        from deploykit.zoo.transfer import torch_to_keras

        torch_to_keras(spec, twins["torch"].model, twins["tf"].model)

    # Without a dataset the twins are compared on seeded example inputs of the architecture.
    eval_inputs = data.x_test if data is not None else spec.example_inputs(8, config.seed)
    results: dict[str, FrameworkResult] = {}
    logits: dict[str, np.ndarray] = {}
    for fw, twin in twins.items():
        started = time.perf_counter()
        history: list[float] = []
        try:
            if hyper.epochs:
                # config.check() refuses epochs for the architectures without a dataset: data is loaded
                assert data is not None
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
        logits[fw] = twin.loop.predict(twin.model, eval_inputs)
        results[fw] = FrameworkResult(
            framework=fw,
            framework_version=_version("torch" if fw == "torch" else "tensorflow"),
            test_accuracy=accuracy(logits[fw], data.y_test) if data is not None else None,
            test_loss=cross_entropy(logits[fw], data.y_test) if data is not None else None,
            final_train_loss=history[-1] if history else None,
            epochs=hyper.epochs,
            wall_time_s=round(wall, 3),
            parameters=twin.loop.parameter_count(twin.model),
            checkpoint=CHECKPOINTS[fw],
            train_loss_history=history,
        )

    agreement = max_diff = None
    if same_init:
        agreement = float((logits["torch"].argmax(1) == logits["tf"].argmax(1)).mean())
        max_diff = float(np.abs(logits["torch"] - logits["tf"]).max())

    report = TrainReport(
        deploykit_version=__version__,
        model=spec.to_dict(),
        data=_data_summary(data) if data is not None else {"name": "none (seeded, untrained twins)"},
        hyperparameters={**asdict(hyper), "optimizer": "adam", "loss": "softmax cross-entropy"},
        same_initial_weights=same_init,
        results=results,
        prediction_agreement=agreement,
        twin_max_abs_diff=max_diff,
        environment={"python": platform.python_version(), "platform": platform.platform()},
        out=str(config.out),
    )
    with atomic_directory(config.out, replace=True) as staging:
        (staging / SPEC_FILE).write_text(json.dumps(spec.to_dict(), indent=2) + "\n")
        for fw, twin in twins.items():
            twin.loop.save(twin.model, staging / CHECKPOINTS[fw])
        (staging / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report
