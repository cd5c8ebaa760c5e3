"""``deploykit export``: every framework to every format, each export proven equal to its source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deploykit.cli.common import csv_ints, exits_on_error, make_console, parity_table
from deploykit.cli.train import Framework


@exits_on_error
def export(
    source: Annotated[
        str,
        typer.Argument(
            help="A 'deploykit train' output directory, a .keras file, a SavedModel directory, "
            "or a PyTorch factory package.module:callable.",
            show_default=False,
        ),
    ],
    framework: Annotated[Framework, typer.Option(help="Twin(s) to export from a train directory.")] = Framework.both,
    fmt: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            help="torchscript, pt2 (eager ExportedProgram), aoti (AOTInductor package), onnx, savedmodel "
            "(repeatable). Default: all for the framework except aoti (a 30 s+ compile: ask for it).",
        ),
    ] = None,
    repo: Annotated[Path, typer.Option(help="Model repository root (TF Serving layout NAME/VERSION).")] = Path(
        "models"
    ),
    name: Annotated[str | None, typer.Option(help="Base model name; artifacts are NAME-FRAMEWORK-FORMAT.")] = None,
    version: Annotated[
        int | None, typer.Option(help="Version to write (default: next free). Never overwrites.")
    ] = None,
    weights: Annotated[Path | None, typer.Option(help="PyTorch weights (state dict .pt/.pth or .safetensors).")] = None,
    input_specs: Annotated[
        list[str] | None,
        typer.Option(
            "--input", help="Input NAME:DTYPE[DIMS], -1 = dynamic, e.g. x:float32[-1,3,224,224] (repeatable)."
        ),
    ] = None,
    output_names: Annotated[
        list[str] | None, typer.Option("--output", help="Output names, in the model's output order (repeatable).")
    ] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (tf2onnx supports up to 18).")] = 18,
    atol: Annotated[
        float | None, typer.Option(help="Absolute tolerance for float outputs (default 1e-5 fp32).")
    ] = None,
    rtol: Annotated[
        float | None, typer.Option(help="Relative tolerance for float outputs (default 1e-5 fp32).")
    ] = None,
    tolerance: Annotated[
        list[str] | None, typer.Option(help="Per-output override OUTPUT=ATOL[:RTOL] (repeatable).")
    ] = None,
    batch_sizes: Annotated[str, typer.Option(help="Validation batch sizes, at least two.")] = "2,7",
    seed: Annotated[int, typer.Option(help="Seed of the validation inputs.")] = 0,
    allow_mismatch: Annotated[
        bool, typer.Option(help="Publish artifacts that fail validation (recorded in the manifest); exit 1 still.")
    ] = False,
    xla: Annotated[
        bool,
        typer.Option(
            "--xla",
            help="SavedModel with XLA (jit_compile=True), published as NAME-tf-savedmodel-xla; XLA compiles "
            "at the first request of each batch size.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Export a model to TorchScript, .pt2, AOTInductor, ONNX (PyTorch) and SavedModel, ONNX (TensorFlow).

    Each artifact is written atomically into REPO/NAME-FRAMEWORK-FORMAT/VERSION with a manifest
    (deploykit.json) and golden validation data (golden.npz), after being reloaded with the runtime
    that will serve it and compared with the source at two batch sizes. Exit 1 if any artifact fails.
    """
    from deploykit.errors import UsageError
    from deploykit.export.parity import Tolerance, parse_tolerance
    from deploykit.export.run import ExportOptions
    from deploykit.export.run import export as run_export
    from deploykit.export.sources import load_sources
    from deploykit.tensors import parse_tensor_spec
    from deploykit.train import FRAMEWORKS

    if any(v is not None and v < 0 for v in (atol, rtol)):
        raise UsageError("--atol and --rtol must be non-negative")
    frameworks = FRAMEWORKS if framework is Framework.both else (framework.value,)
    default_tol = None
    if atol is not None or rtol is not None:
        default_tol = Tolerance(atol if atol is not None else 1e-5, rtol if rtol is not None else 1e-5)
    options = ExportOptions(
        repo=repo,
        formats=tuple(fmt) if fmt else None,
        version=version,
        opset=opset,
        default_tolerance=default_tol,
        tolerances=dict(parse_tolerance(t) for t in tolerance or []),
        batch_sizes=csv_ints(batch_sizes),
        seed=seed,
        allow_mismatch=allow_mismatch,
        xla=xla,
    )
    options.check()
    _check_repository(repo)
    console = make_console(stderr=as_json)
    with console.status("loading source") as status:
        sources = load_sources(
            source,
            frameworks,
            weights=weights,
            inputs=[parse_tensor_spec(s) for s in input_specs or []],
            output_names=output_names,
            name=name,
        )
        cross = []
        if len(sources) == 2 and all(s.origin.get("kind") == "zoo-run" for s in sources):
            from deploykit.export.crosscheck import torch_vs_keras_twin
            from deploykit.zoo.spec import spec_from_dict

            status.update("cross-framework check")
            torch_source = next(s for s in sources if s.framework == "torch")
            cross = torch_vs_keras_twin(
                torch_source,
                spec_from_dict(torch_source.origin["architecture"]),
                options.batch_sizes,
                seed,
                default_tol,
            )
        report = run_export(
            sources, options, lambda artifact, stage: status.update(f"{artifact}: {stage}"), cross_checks=cross
        )

    if as_json:
        from deploykit.report.export import to_dict

        typer.echo(json.dumps(to_dict(report), indent=2))
    else:
        _print_report(console, report)
    if not report.ok:
        raise typer.Exit(1)


def _check_repository(repo: Path) -> None:
    """Fail before any conversion when the repository cannot be written."""
    import tempfile

    from deploykit.errors import UsageError

    if repo.exists() and not repo.is_dir():
        raise UsageError(f"--repo {repo} is a file; expected the model repository directory")
    try:
        repo.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=repo):
            pass
    except OSError as exc:
        raise UsageError(f"--repo {repo}: cannot write there ({exc.strerror or exc})") from None


def _print_report(console, report) -> None:
    from rich.table import Table

    table = Table(title="Artifacts", title_justify="left")
    table.add_column("artifact", no_wrap=True)
    for column in ("v", "status", "export", "validate", "size", "runtime"):
        table.add_column(column, justify="right" if column in ("export", "validate", "size") else "left")
    for a in report.artifacts:
        status = "[green]pass[/]" if a.passed else ("[yellow]published, FAILED[/]" if a.path else "[red]FAILED[/]")
        table.add_row(
            a.name,
            str(a.version or "-"),
            status,
            f"{a.export_s:.2f} s",
            f"{a.validate_s:.2f} s",
            f"{a.size_bytes / 1024:.1f} KiB" if a.size_bytes else "-",
            a.runtime or "-",
        )
    console.print(table)
    rows = [(a.name, r) for a in report.artifacts for r in a.parity]
    rows += [("torch->keras twin", r) for r in report.cross_checks]
    if rows:
        console.print(parity_table("Parity with the source", rows))
    for a in report.artifacts:
        if a.error:
            console.print(f"[red]FAILED[/] {a.error}", highlight=False)
        elif a.path:
            console.print(f"{a.name} v{a.version} -> {a.path}", highlight=False)
