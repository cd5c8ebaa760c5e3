"""``deploykit profile``: top operators by time, layout transposes and threads of one export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deploykit.cli.common import exits_on_error, make_console


@exits_on_error
def profile(
    target: Annotated[
        Path, typer.Argument(help="REPO/MODEL (its latest version) or REPO/MODEL/VERSION.", show_default=False)
    ],
    batch_size: Annotated[int, typer.Option(min=1, help="Rows per call.")] = 1,
    runs: Annotated[int, typer.Option(min=1, help="Profiled calls (after the warm-up).")] = 20,
    warmup: Annotated[int, typer.Option(min=0, help="Calls before profiling starts (not counted).")] = 5,
    top: Annotated[int, typer.Option(min=1, help="Operators to show.")] = 15,
    ort_tuning: Annotated[
        str | None,
        typer.Option(help="ONNX only: 'tuned' (deploykit's session options, as served) or 'default' (ONNX Runtime's)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole profile as JSON.")] = False,
) -> None:
    """Profile one exported model with its framework's own profiler: ONNX Runtime's profiler,
    torch.profiler (TorchScript, .pt2, AOTInductor) or TensorFlow's (SavedModel).

    Prints the top operators by time per call, the time spent in layout transposes that
    converters insert (Transpose, permute, contiguous), and the threads the runtime used.
    """
    from deploykit.profile import profile as run_profile

    result = run_profile(target, batch_size, runs, warmup, tuning=ort_tuning)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    from rich.table import Table

    console = make_console()
    title = (
        f"{result.model} v{result.version} ({result.format}, {result.profiler}): batch {result.batch_size}, "
        f"{result.wall_ms_per_run:.2f} ms per call over {result.runs} calls"
    )
    table = Table(title=title, title_justify="left")
    for column in ("operator", "ms/call", "share", "calls/call"):
        table.add_column(column, justify="left" if column == "operator" else "right")
    for op in result.top(top):
        table.add_row(op.op, f"{op.ms_per_run:.3f}", f"{op.share:.1%}", f"{op.calls_per_run:g}")
    console.print(table)
    console.print(
        f"layout transposes: {result.layout_ms_per_run:.3f} ms/call in {result.layout_calls_per_run:g} op(s); "
        f"threads: {', '.join(f'{k}={v}' for k, v in result.threads.items())}"
    )
    for note in result.notes:
        console.print(f"note: {note}")
