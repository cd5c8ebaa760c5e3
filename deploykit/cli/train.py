"""``deploykit train``: train the PyTorch and Keras twins of a zoo model on the same data."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deploykit.cli.common import exits_on_error, make_console


class Framework(StrEnum):
    torch = "torch"
    tf = "tf"
    both = "both"


class Model(StrEnum):
    mlp = "mlp"
    cnn = "cnn"
    transformer = "transformer"
    resnet50 = "resnet50"
    bert = "bert"


class Size(StrEnum):
    full = "full"
    small = "small"


@exits_on_error
def train(
    model: Annotated[Model, typer.Option(help="Zoo architecture to train.")] = Model.mlp,
    framework: Annotated[Framework, typer.Option(help="Which twin(s) to train.")] = Framework.both,
    data: Annotated[
        str,
        typer.Option(help="'digits' (scikit-learn's bundled 8x8 digits) or a .npz file with arrays X and y."),
    ] = "digits",
    epochs: Annotated[
        int,
        typer.Option(min=0, help="Passes over the training split; 0 writes seeded, untrained twins (no data needed)."),
    ] = 30,
    size: Annotated[
        Size | None,
        typer.Option(
            help="resnet50/bert only: 'full' (published size, the default) or 'small' (same architecture, "
            "fewer and narrower layers)."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Samples per optimiser step.")] = 64,
    lr: Annotated[float, typer.Option(help="Adam learning rate (> 0).")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed for the split, initial weights and batch order.")] = 0,
    out: Annotated[
        Path | None,
        typer.Option(help="Output directory (replaced atomically). Default: runs/MODEL."),
    ] = None,
) -> None:
    """Train the PyTorch and/or Keras twin of MODEL natively, on the same split with the same
    hyper-parameters, and compare them.

    Writes spec.json, model.safetensors (PyTorch state dict), model.keras and train_report.json
    into OUT. With both frameworks, the Keras twin starts from the PyTorch twin's initial weights.
    resnet50 and bert take --epochs 0: seeded twins with transferred weights, ready for export.
    """
    from deploykit.train import FRAMEWORKS, TrainConfig
    from deploykit.train import train as run_training

    frameworks = FRAMEWORKS if framework is Framework.both else (framework.value,)
    config = TrainConfig(
        model=model.value,
        frameworks=frameworks,
        data=data,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        out=out or Path("runs") / model.value,
        size=size.value if size else None,
    )
    console = make_console()
    with Progress(
        TextColumn("[bold]{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        tasks = {fw: progress.add_task(fw, total=epochs, loss="-") for fw in frameworks}

        def on_epoch(framework: str, epoch: int, epochs: int, loss: float) -> None:
            progress.update(tasks[framework], completed=epoch, loss=f"{loss:.4f}")

        report = run_training(config, on_epoch)

    title = f"{model.value} on {report.data['name']}: {epochs} epochs, batch {batch_size}, lr {lr:g}, seed {seed}"
    shown = lambda value: "-" if value is None else f"{value:.4f}"  # noqa: E731
    table = Table(title=title, title_justify="left")
    for column in ("framework", "version", "accuracy", "test loss", "train loss", "time", "params"):
        table.add_column(column, justify="left" if column in ("framework", "version") else "right")
    for result in report.results.values():
        table.add_row(
            result.framework,
            result.framework_version,
            shown(result.test_accuracy),
            shown(result.test_loss),
            shown(result.final_train_loss),
            f"{result.wall_time_s:.2f} s",
            f"{result.parameters:,}",
        )
    console.print(table)
    if report.prediction_agreement is not None and "test_samples" in report.data:
        console.print(
            f"Both twins started from the same weights; they agree on "
            f"{report.prediction_agreement:.1%} of {report.data['test_samples']} test predictions."
        )
    elif report.twin_max_abs_diff is not None:
        console.print(
            f"Both twins hold the same weights; on seeded example inputs their logits differ by at most "
            f"{report.twin_max_abs_diff:.3g}."
        )
    console.print(f"Checkpoints and train_report.json written to [bold]{config.out}[/]")
