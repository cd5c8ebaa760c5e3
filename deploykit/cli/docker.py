"""``deploykit docker``: container images and a compose file for a model repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deploykit.cli.common import exits_on_error, make_console
from deploykit.deploy.servers import TRITON_REPOSITORY

Repo = Annotated[Path, typer.Argument(help="Model repository (NAME/VERSION/...).", show_default=False)]
TritonRepo = Annotated[
    Path | None,
    typer.Option(help=f"Triton model repository to include (default: {TRITON_REPOSITORY} when it exists)."),
]


def triton_repository(option: Path | None) -> Path | None:
    """The Triton repository given, or the default one when it exists."""
    return option if option is not None else (TRITON_REPOSITORY if TRITON_REPOSITORY.is_dir() else None)


@exits_on_error
def docker(
    repo: Repo,
    out: Annotated[Path, typer.Option(help="Build context to write.")] = Path("serving/docker"),
    triton_repo: TritonRepo = None,
    force: Annotated[bool, typer.Option(help="Replace an existing OUT.")] = False,
) -> None:
    """Write a build context: ONNX Runtime GPU and CPU serving images (the serve extra only), a TF
    Serving image with the SavedModels baked in, a Triton image with its model repository, and
    compose.yaml running the servers (GPU ones under the 'gpu' profile) and a load test
    ('loadtest' profile). Build with `docker compose -f OUT/compose.yaml build`."""
    from deploykit.deploy import docker as writer

    written = writer.write(repo, out, triton_repository(triton_repo), force)
    console = make_console()
    for path in written:
        console.print(f"wrote {path}", highlight=False)
    console.print(
        f"run: docker compose -f {out}/compose.yaml up -d; load test: docker compose -f {out}/compose.yaml "
        "--profile loadtest run loadtest",
        highlight=False,
    )
