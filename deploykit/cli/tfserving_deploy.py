"""``deploykit tfserving-deploy``: a ready-to-run TensorFlow Serving deployment of a model repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deploykit.cli.common import csv_ints, exits_on_error, report_written


@exits_on_error
def tfserving_deploy(
    repo: Annotated[
        Path,
        typer.Argument(
            help="Model repository NAME/VERSION/... (or one model directory VERSION/...).", show_default=False
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Deployment directory to write.")] = Path(
        "serving/tfserving"
    ),
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="Deploy only this model (repeatable). Default: every SavedModel."),
    ] = None,
    version_policy: Annotated[
        str, typer.Option(help="TF Serving version policy: latest[:N], all, or specific:V1,V2.")
    ] = "latest:1",
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label",
            metavar="[MODEL:]LABEL=VERSION",
            help="Version label, e.g. stable=1 (every model) or mlp:stable=1 (one model); repeatable.",
        ),
    ] = None,
    batching: Annotated[
        bool, typer.Option(help="Enable TF Serving's batching (--enable_batching) with the parameters below.")
    ] = True,
    max_batch_size: Annotated[int, typer.Option(help="BatchingParameters.max_batch_size.")] = 128,
    batch_timeout_micros: Annotated[
        int, typer.Option(help="BatchingParameters.batch_timeout_micros (0: lowest latency; try 1000-10000).")
    ] = 0,
    num_batch_threads: Annotated[
        int | None, typer.Option(help="BatchingParameters.num_batch_threads (default: this machine's cores).")
    ] = None,
    max_enqueued_batches: Annotated[
        int | None, typer.Option(help="BatchingParameters.max_enqueued_batches (default: num_batch_threads).")
    ] = None,
    allowed_batch_sizes: Annotated[
        str | None, typer.Option(help="BatchingParameters.allowed_batch_sizes, comma-separated, ending at max.")
    ] = None,
    grpc_port: Annotated[int, typer.Option(help="gRPC port in the commands (host side for Docker).")] = 8500,
    rest_port: Annotated[int, typer.Option(help="REST port in the commands (0: no REST, no Prometheus).")] = 8501,
    image: Annotated[str, typer.Option(help="TF Serving Docker image; pin a tag for reproducibility.")] = (
        "tensorflow/serving:latest"
    ),
    force: Annotated[
        bool,
        typer.Option(
            help="Replace an existing deployment in --out. The swap is two renames: for a moment --out does not "
            "exist, and a TF Serving polling it then finds no model path; replace a deployment no server uses, "
            "or write a new --out."
        ),
    ] = False,
) -> None:
    """Write a complete TensorFlow Serving deployment of REPO's SavedModels to --out.

    Writes models/NAME/VERSION (hard links to the repository's files, copies across file systems),
    models.config (host paths, for tensorflow_model_server) and models.docker.config (container
    paths), batching_parameters.txt, monitoring.config (Prometheus), run.sh and README.md, then
    prints the exact tensorflow_model_server and docker run commands. Artifacts TF Serving cannot
    serve (ONNX, TorchScript, .pt2) are skipped and listed. The directory appears complete or not
    at all; a non-empty --out is replaced only with --force.
    """
    from deploykit.server.model_config import VersionPolicy, parse_label
    from deploykit.tfserving import deployment
    from deploykit.tfserving.config import batching_parameters

    if grpc_port < 1 or rest_port < 0:
        raise typer.BadParameter("--grpc-port must be >= 1 and --rest-port >= 0")
    labels = tuple(parse_label(text) for text in label or [])
    params = (
        batching_parameters(
            max_batch_size=max_batch_size,
            batch_timeout_micros=batch_timeout_micros,
            num_batch_threads=num_batch_threads,
            max_enqueued_batches=max_enqueued_batches,
            allowed_batch_sizes=csv_ints(allowed_batch_sizes),
        )
        if batching
        else None
    )
    plan = deployment.plan(repo, policy=VersionPolicy.parse(version_policy), labels=labels, only=tuple(model or ()))
    written = deployment.write(
        plan,
        out,
        deployment.WriteOptions(batching=params, grpc_port=grpc_port, rest_port=rest_port, image=image, force=force),
    )
    for m in plan.models:
        versions = ", ".join(map(str, sorted(m.versions)))
        typer.echo(f"deployed {m.name} versions {versions} -> {written.out / deployment.MODELS_DIR / m.name}", err=True)
    report_written(written, plan.skipped)
