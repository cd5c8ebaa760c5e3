"""``deploykit predict``: one request to a TF Serving API or v2 endpoint through the shared client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deploykit.cli.common import exits_on_error, make_console


@exits_on_error
def predict(
    target: Annotated[
        str,
        typer.Argument(
            help="grpc://HOST:PORT or http://HOST:PORT (grpcs:// / https:// for TLS); v2+grpc://, v2+http://, ... "
            "for the Open Inference Protocol (Triton, KServe, MLServer)",
            show_default=False,
        ),
    ],
    model: Annotated[str, typer.Argument(help="Model name.", show_default=False)],
    version: Annotated[int | None, typer.Option(help="Model version (default: latest).")] = None,
    label: Annotated[str | None, typer.Option(help="Version label instead of a version.")] = None,
    signature: Annotated[str, typer.Option(help="Signature name (default serving_default).")] = "",
    npz: Annotated[Path | None, typer.Option(help=".npz file with one array per input name.")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size of generated random inputs.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of generated random inputs.")] = 0,
    output_filter: Annotated[
        list[str] | None, typer.Option("--output", help="Only these outputs (repeatable).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Deadline in seconds (retries UNAVAILABLE until then).")] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outputs as JSON.")] = False,
    ca_file: Annotated[
        Path | None, typer.Option(help="TLS: CA that signed the server's certificate (default: system store).")
    ] = None,
    cert_file: Annotated[Path | None, typer.Option(help="Mutual TLS: this client's certificate (PEM).")] = None,
    key_file: Annotated[Path | None, typer.Option(help="Mutual TLS: this client's private key (PEM).")] = None,
) -> None:
    """Send one Predict request and print the outputs.

    Inputs come from --npz, or are generated from the model's metadata (seeded random values of
    --batch-size). Exit 3 if the target is unreachable, 1 on an error status.
    """
    import numpy as np

    from deploykit.client import Client
    from deploykit.errors import UsageError
    from deploykit.tensors import random_inputs

    with Client(target, timeout=timeout, ca_file=ca_file, cert_file=cert_file, key_file=key_file) as client:
        if npz is not None:
            try:
                with np.load(npz, allow_pickle=False) as archive:
                    inputs = {name: archive[name] for name in archive.files}
            except (OSError, ValueError) as exc:
                raise UsageError(f"{npz}: cannot read ({exc})") from None
        else:
            signatures = client.metadata(model, version=version, label=label)
            name = signature or "serving_default"
            if name not in signatures:
                raise UsageError(f"{model} has no signature {name!r}; it has {sorted(signatures)}")
            inputs = random_inputs(signatures[name], batch_size, seed)
        outputs = client.predict(
            model, inputs, version=version, label=label, signature=signature, output_filter=output_filter
        )
    if as_json:
        typer.echo(json.dumps({name: value.tolist() for name, value in outputs.items()}))
        return
    console = make_console()
    for name, value in outputs.items():
        console.print(f"[bold]{name}[/] {value.dtype} {list(value.shape)}", highlight=False)
        console.print(np.array2string(value, precision=5, threshold=40), highlight=False)
