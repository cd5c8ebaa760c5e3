"""``deploykit bench``: the data planes against the transport floors, written to BENCHMARKS.md + JSON."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from deploykit.cli.common import exits_on_error


@exits_on_error
def bench(
    repo: Annotated[
        Path | None,
        typer.Option(
            help="Model repository with the ONNX zoo (mlp/cnn/transformer-torch-onnx); make bench exports it."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Markdown report; the JSON goes beside it (.json).")] = Path(
        "BENCHMARKS.md"
    ),
    duration: Annotated[float, typer.Option(help="Measured seconds per point (after 1 s warm-up).")] = 5.0,
    quick: Annotated[
        bool, typer.Option("--quick", help="Small generated models, 1 s points: under 2 minutes (a smoke test).")
    ] = False,
    section: Annotated[
        list[str] | None,
        typer.Option(
            help="Run only these of the sections generator, scaling, crosscheck (repeatable; default: all of "
            "them, none with --quick). Floors, serving and cold start always run."
        ),
    ] = None,
    peers: Annotated[
        bool,
        typer.Option(
            "--peers/--no-peers",
            help="Measure MLServer and KServe's ModelServer (over v2) and TorchServe (its gRPC API, needs Java), "
            "each in its own virtual environment under ~/.cache/deploykit (built on first use; --quick uses "
            "them only when already built).",
        ),
    ] = True,
    notes: Annotated[
        Path | None, typer.Option(help="Markdown appended to the report (the reading of the numbers).")
    ] = None,
) -> None:
    """Start the transport floors and `deploykit serve` (each data plane) on loopback, measure them with one
    independent client, and write BENCHMARKS.md and its JSON: p50/p99 and throughput against the native
    floor, per model and data plane; large tensors; cold start and RSS; the load tester's open-loop capacity against
    the native floor; dynamic batching and --workers ratios; Triton's perf_analyzer beside deploykit loadtest;
    MLServer and KServe's ModelServer against deploykit over v2 gRPC."""
    from deploykit.bench import report
    from deploykit.bench.extras import SECTIONS
    from deploykit.bench.run import Settings, run
    from deploykit.errors import UsageError

    unknown = sorted(set(section or ()) - set(SECTIONS))
    if unknown:
        raise UsageError(f"--section {', '.join(unknown)}: not a section; choose from {', '.join(SECTIONS)}")
    settings = Settings(
        repo=repo,
        duration=1.0 if quick else duration,
        warmup=0.5 if quick else 1.0,
        quick=quick,
        sections=tuple(section) if section else None,
        peers=peers,
    )
    results = run(settings)
    command = shlex.join(["deploykit", "bench", *sys.argv[2:]]) if sys.argv[1:2] == ["bench"] else "deploykit bench"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    report.write(results, out, command, notes.read_text() if notes else "")
    typer.echo(f"wrote {out} and {out.with_suffix('.json')}")
