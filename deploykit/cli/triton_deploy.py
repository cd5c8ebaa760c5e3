"""``deploykit triton-deploy``: a ready-to-run NVIDIA Triton model repository of a deploykit repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deploykit.cli.common import csv_ints, exits_on_error, report_written


@exits_on_error
def triton_deploy(
    repo: Annotated[
        Path,
        typer.Argument(help="Model repository NAME/VERSION/... written by deploykit export.", show_default=False),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Deployment directory to write.")] = Path("serving/triton"),
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Deploy only this model (repeatable). Default: all.")
    ] = None,
    version_policy: Annotated[
        str, typer.Option(help="Triton version_policy: latest[:N], all, or specific:V1,V2.")
    ] = "latest:1",
    max_batch_size: Annotated[
        int, typer.Option(help="max_batch_size for models with a dynamic batch dimension (others get 0).")
    ] = 8,
    dynamic_batching: Annotated[bool, typer.Option(help="Triton's dynamic batcher for batchable models.")] = True,
    preferred_batch_sizes: Annotated[
        str | None, typer.Option(help="dynamic_batching.preferred_batch_size, comma-separated (Triton: usually unset).")
    ] = None,
    max_queue_delay_us: Annotated[
        int, typer.Option(help="dynamic_batching.max_queue_delay_microseconds (0: never wait for a fuller batch).")
    ] = 100,
    gpu: Annotated[
        bool, typer.Option(help="instance_group KIND_GPU and docker --gpus=all (default: KIND_CPU).")
    ] = False,
    instances: Annotated[int, typer.Option(help="instance_group count: model instances per device.")] = 1,
    tensorrt: Annotated[
        str | None,
        typer.Option(
            help="ONNX Runtime's TensorRT accelerator with this precision (FP32, FP16, BF16, INT8); --gpu only."
        ),
    ] = None,
    warmup: Annotated[bool, typer.Option(help="model_warmup from the newest version's golden inputs.")] = True,
    allow_tensorflow: Annotated[
        bool,
        typer.Option(help="Deploy SavedModels to Triton's TensorFlow backend (deprecated in 25.03; needs <= 25.02)."),
    ] = False,
    triton_version: Annotated[
        str, typer.Option(help="NGC release for the docker command: nvcr.io/nvidia/tritonserver:<version>-py3.")
    ] = "26.07",
    http_port: Annotated[int, typer.Option(help="HTTP port in the commands.")] = 8000,
    grpc_port: Annotated[int, typer.Option(help="gRPC port in the commands.")] = 8001,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port in the commands.")] = 8002,
    force: Annotated[bool, typer.Option(help="Replace an existing deployment in --out.")] = False,
) -> None:
    """Write a Triton model repository of REPO's exports to --out.

    ONNX goes to ONNX Runtime (onnxruntime_onnx), TorchScript to the PyTorch backend
    (pytorch_libtorch), SavedModels to the TensorFlow backend only with --allow-tensorflow (Triton
    deprecated it in 25.03); other formats are listed as skipped with the reason. Each model gets a
    config.pbtxt generated from its manifest: inputs/outputs with dtypes and dims, max_batch_size
    from the dynamic batch dimension, dynamic batching, instance group, optional TensorRT, warm-up
    from the golden inputs and the version policy. Artifacts are hard-linked; run.sh and README.md
    hold the exact tritonserver and docker run commands, which are also printed.
    """
    from deploykit.server.model_config import VersionPolicy
    from deploykit.triton import repository

    options = repository.Options(
        policy=VersionPolicy.parse(version_policy),
        max_batch_size=max_batch_size,
        dynamic_batching=dynamic_batching,
        preferred_batch_sizes=csv_ints(preferred_batch_sizes),
        max_queue_delay_microseconds=max_queue_delay_us,
        gpu=gpu,
        instance_count=instances,
        tensorrt=tensorrt.upper() if tensorrt else None,
        warmup=warmup,
        allow_tensorflow=allow_tensorflow,
    )
    plan = repository.plan(repo, options, tuple(model or ()))
    written = repository.write(
        plan,
        out,
        repository.WriteOptions(http_port, grpc_port, metrics_port, version=triton_version, force=force),
    )
    for warning in plan.warnings:
        typer.echo(f"warning: {warning}", err=True)
    for m in plan.models:
        typer.echo(
            f"deployed {m.name} ({m.format}) versions {', '.join(map(str, sorted(m.versions)))} "
            f"-> {written.out / repository.MODELS_DIR / m.name}",
            err=True,
        )
    report_written(written, plan.skipped)
