"""``deploykit loadtest`` and ``deploykit compare``: latency you can trust, as a CI gate."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from deploykit.cli.common import exits_on_error, make_console

_DURATION = re.compile(r"^\s*(?P<value>[0-9.]+)\s*(?P<unit>ms|s|m|h)?\s*$")


def parse_duration(text: str) -> float:
    """``30s``, ``500ms``, ``2m``, ``1h`` or a number of seconds."""
    from deploykit.errors import UsageError

    match = _DURATION.match(text)
    if not match:
        raise UsageError(f"cannot parse duration {text!r}; expected e.g. 30s, 500ms, 2m")
    return float(match["value"]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match["unit"] or "s"]


def _levels(text: str | None, what: str) -> tuple[float, ...]:
    from deploykit.errors import UsageError

    if text is None:
        return ()
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--{what} expects comma-separated numbers, got {text!r}") from None


# Options shared by both commands (Typer reads them from each signature).
Concurrency = Annotated[str | None, typer.Option(help="Closed loop: concurrent requests, or a sweep 1,2,4,8.")]
Rate = Annotated[str | None, typer.Option(help="Open loop: requests/s, or a sweep 100,200,400.")]
Arrival = Annotated[str, typer.Option(help="Open-loop arrivals: constant or poisson.")]
Pacing = Annotated[
    str,
    typer.Option(
        help="Open loop: how each intended send time is waited for. timer: a kernel timer (Linux timerfd), "
        "precise and no CPU spent waiting; spin: sleep to ~1 ms before, then yield until due: keeps a core "
        "busy, takes the server's CPU when they share cores (for a dedicated load machine); sleep: asyncio "
        "sleep alone, up to ~1 ms late by construction (whole-millisecond timeouts). auto: timer on Linux, "
        "else sleep. The report names the pacing used."
    ),
]
Duration = Annotated[str, typer.Option(help="Measured time per level (after warm-up), e.g. 30s.")]
Warmup = Annotated[str, typer.Option(help="Warm-up before measuring (sent, not recorded).")]
Window = Annotated[str, typer.Option(help="Measurement window for stability and time series.")]
Processes = Annotated[int, typer.Option(help="Load-generating processes (each with its own event loop).")]
Connections = Annotated[int, typer.Option(help="gRPC channels (connections) per process.")]
BatchSize = Annotated[int, typer.Option(help="Batch size of generated inputs.")]
Npz = Annotated[Path | None, typer.Option(help="Inputs from an .npz (one array per input name).")]
Thresholds = Annotated[
    list[str] | None,
    typer.Option("--threshold", help="Gate, e.g. 'p99<20ms', 'error_rate<0.001', 'rps>=500' (repeatable)."),
]
Outputs = Annotated[
    list[Path] | None,
    typer.Option("--output", "-o", help="Report file(s): .json, .csv, .md, .html, .xml (JUnit) (repeatable)."),
]
CaFile = Annotated[
    Path | None, typer.Option(help="grpcs:// / https:// targets: CA of the server's certificate (default: system).")
]
CertFile = Annotated[Path | None, typer.Option(help="Mutual TLS: client certificate (PEM).")]
KeyFile = Annotated[Path | None, typer.Option(help="Mutual TLS: client private key (PEM).")]
WaitReady = Annotated[
    str,
    typer.Option(help="Wait this long for a target that refuses connections (e.g. 30s); default: exit 3 at once."),
]
MaxTrials = Annotated[int, typer.Option(help="Re-run an unstable level, at most this many trials (all of them count).")]
Stability = Annotated[
    float, typer.Option(help="Stable: the last 3 windows agree within this % on rps and p50 latency.")
]
RequireStable = Annotated[
    bool,
    typer.Option(help="A level that never stabilises makes the run invalid (exit 4); default: a warning."),
]


def _settings(
    *,
    concurrency,
    rate,
    arrival,
    pacing,
    duration,
    requests,
    warmup,
    window,
    processes,
    connections,
    max_inflight,
    timeout,
    seed,
    max_trials,
    stability,
    max_send_lag,
    wait_ready,
    require_stable,
):
    from deploykit.errors import UsageError
    from deploykit.loadtest import pacing as pacings
    from deploykit.loadtest.runner import RunSettings

    if concurrency and rate:
        raise UsageError("give --concurrency (closed loop) or --rate (open loop), not both")
    mode = "open" if rate else "closed"
    levels = _levels(rate, "rate") if rate else (_levels(concurrency, "concurrency") or (1.0,))
    return RunSettings(
        mode=mode,
        levels=levels,
        arrival=arrival,
        pacing=pacings.resolve(pacing),
        duration_s=parse_duration(duration),
        requests=requests,
        warmup_s=parse_duration(warmup),
        window_s=parse_duration(window),
        processes=processes,
        connections=connections,
        max_inflight=max_inflight,
        timeout_s=timeout,
        seed=seed,
        max_trials=max_trials,
        stability=stability / 100.0,
        max_send_lag_ms=parse_duration(max_send_lag) * 1000,
        wait_ready_s=parse_duration(wait_ready),
        require_stable=require_stable,
    )


def _progress_printer(settings):
    """Progress on stderr, one line per event, whether stderr is a terminal or a pipe (CI logs)."""
    console = make_console(stderr=True)

    def progress(event) -> None:
        console.print(event.line(settings.mode), highlight=False, markup=False, soft_wrap=True)

    return console, progress


def _plus_minus(value: float | None, digits: int) -> str:
    return "-" if value is None else f"±{value:.{digits}f}"


def _finish(result: dict, outputs: list[Path] | None) -> None:
    from deploykit.report import loadtest as report

    if outputs:
        report.write(result, outputs)
    console = make_console()
    console.print(report.to_markdown(result), markup=False, highlight=False, soft_wrap=True)
    for path in outputs or []:
        console.print(f"wrote {path}", highlight=False)
    code = result["verdict"]["exit_code"]
    if code:
        raise typer.Exit(code)


@exits_on_error
def loadtest(
    target: Annotated[
        str,
        typer.Argument(
            # "\\[": rich markup would read "[/versions...]" as a closing tag
            help="grpc(s)://HOST:PORT/MODEL\\[/versions/N|/labels/L] or http(s)://HOST:PORT/v1/models/MODEL\\[...] "
            "(TF Serving's API); v2+grpc(s)://HOST:PORT/MODEL\\[/versions/N] or "
            "v2+http(s)://HOST:PORT/v2/models/MODEL\\[...] (Open Inference Protocol: Triton, KServe, MLServer)",
            show_default=False,
        ),
    ],
    concurrency: Concurrency = None,
    rate: Rate = None,
    arrival: Arrival = "constant",
    pacing: Pacing = "auto",
    duration: Duration = "10s",
    requests: Annotated[int | None, typer.Option(help="Measured requests per level instead of --duration.")] = None,
    warmup: Warmup = "1s",
    window: Window = "2s",
    signature: Annotated[str, typer.Option(help="Signature name (default serving_default).")] = "",
    batch_size: BatchSize = 1,
    npz: Npz = None,
    request_json: Annotated[Path | None, typer.Option(help="REST: send this request JSON file as is.")] = None,
    processes: Processes = 1,
    connections: Connections = 1,
    max_inflight: Annotated[
        int, typer.Option(help="Open loop: in-flight limit; beyond it requests are dropped.")
    ] = 1000,
    timeout: Annotated[float, typer.Option(help="Per-request deadline in seconds.")] = 30.0,
    seed: Annotated[int, typer.Option(help="Seed of generated inputs and Poisson arrivals.")] = 0,
    max_trials: MaxTrials = 3,
    stability: Stability = 20.0,
    max_send_lag: Annotated[
        str, typer.Option(help="Open loop: send-lag p99 above this makes the run invalid.")
    ] = "10ms",
    threshold: Thresholds = None,
    baseline: Annotated[Path | None, typer.Option(help="Earlier JSON report to compare against.")] = None,
    max_regression: Annotated[
        list[str] | None,
        typer.Option(help="Allowed regression vs --baseline, e.g. p99=10% (repeatable; default p99=10%)."),
    ] = None,
    output: Outputs = None,
    ca_file: CaFile = None,
    cert_file: CertFile = None,
    key_file: KeyFile = None,
    wait_ready: WaitReady = "0s",
    require_stable: RequireStable = False,
) -> None:
    """Load-test a TF Serving API or Open Inference Protocol (v2) endpoint and gate on the result.

    Closed loop (--concurrency) or open loop (--rate, latency from the intended send time: corrected
    for coordinated omission). Exit codes: 0 pass, 99 thresholds failed, 2 usage error,
    3 target unreachable, 4 run invalid (generator fell behind, dropped requests, never stable).
    """
    from deploykit.loadtest.api import loadtest as run
    from deploykit.loadtest.target import parse_load_target
    from deploykit.report import loadtest as report

    report.check_outputs(output or [])
    settings = _settings(
        concurrency=concurrency,
        rate=rate,
        arrival=arrival,
        pacing=pacing,
        duration=duration,
        requests=requests,
        warmup=warmup,
        window=window,
        processes=processes,
        connections=connections,
        max_inflight=max_inflight,
        timeout=timeout,
        seed=seed,
        max_trials=max_trials,
        stability=stability,
        max_send_lag=max_send_lag,
        wait_ready=wait_ready,
        require_stable=require_stable,
    )
    console, progress = _progress_printer(settings)
    with console.status("preparing"):
        result = run(
            parse_load_target(target, signature, ca_file=ca_file, cert_file=cert_file, key_file=key_file),
            settings,
            npz=npz,
            request_json=request_json,
            batch_size=batch_size,
            thresholds=threshold or [],
            baseline=baseline,
            max_regression=max_regression or [],
            progress=progress,
        )
    _finish(result, output)


@exits_on_error
def compare(
    targets: Annotated[
        list[str], typer.Argument(help="Two or more load-test targets (see loadtest).", show_default=False)
    ],
    concurrency: Concurrency = None,
    rate: Rate = None,
    arrival: Arrival = "constant",
    pacing: Pacing = "auto",
    duration: Duration = "5s",
    warmup: Warmup = "1s",
    window: Window = "1s",
    rounds: Annotated[int, typer.Option(help="Interleaved rounds (A B C A B C ...).")] = 3,
    max_trials: MaxTrials = 3,
    stability: Stability = 20.0,
    batch_size: BatchSize = 1,
    npz: Npz = None,
    processes: Processes = 1,
    connections: Connections = 1,
    seed: Annotated[int, typer.Option(help="Seed of generated inputs.")] = 0,
    threshold: Thresholds = None,
    output: Outputs = None,
    ca_file: CaFile = None,
    cert_file: CertFile = None,
    key_file: KeyFile = None,
    wait_ready: WaitReady = "0s",
    require_stable: RequireStable = False,
) -> None:
    """Run the same payload against several endpoints or models, interleaved so machine drift hits
    all alike; print them side by side with ratios to the fastest and 95% confidence intervals over
    measurement windows."""
    from deploykit.loadtest.api import compare as run
    from deploykit.loadtest.target import parse_load_target
    from deploykit.report import loadtest as report

    report.check_outputs(output or [])
    tls: dict[str, Any] = {"ca_file": ca_file, "cert_file": cert_file, "key_file": key_file}  # TLS targets
    settings = _settings(
        concurrency=concurrency,
        rate=rate,
        arrival=arrival,
        pacing=pacing,
        duration=duration,
        requests=None,
        warmup=warmup,
        window=window,
        processes=processes,
        connections=connections,
        max_inflight=1000,
        timeout=30.0,
        seed=seed,
        max_trials=max_trials,
        stability=stability,
        max_send_lag="10ms",
        wait_ready=wait_ready,
        require_stable=require_stable,
    )
    console, trial_done = _progress_printer(settings)
    with console.status("preparing"):
        result = run(
            [parse_load_target(t, **(tls if t.startswith(("grpcs:", "https:")) else {})) for t in targets],
            settings,
            rounds=rounds,
            npz=npz,
            batch_size=batch_size,
            thresholds=threshold or [],
            progress=lambda target, r: console.print(f"round {r + 1}/{rounds}: {target}", highlight=False),
            trial_done=trial_done,
        )
    table = make_console()
    from rich.table import Table

    side = Table(title="Side by side (all rounds merged)", title_justify="left")
    side.add_column("target", no_wrap=True)
    for column in (
        "rps",
        "rps 95% CI",
        "p50 ms",
        "p50 (windows) 95% CI",
        "p99 ms",
        "p50 / fastest",
        "rps / best",
        "errors",
        "valid",
    ):
        side.add_column(column, justify="right")
    for lv in result["levels"]:
        side.add_row(
            lv["target"],
            f"{lv['achieved_rps']:.1f}",
            _plus_minus(lv["window_rps_ci95"][1], 1),
            f"{lv['latency_ms']['p50']}",
            _plus_minus(lv["window_p50_ms_ci95"][1], 3),
            f"{lv['latency_ms']['p99']}",
            f"{lv['ratio_p50_to_fastest']}x",
            f"{lv['ratio_rps_to_best']}x",
            str(lv["count"]["error"]),
            "yes" if lv["valid"] else "NO",
        )
    table.print(side)
    _finish(result, output)
