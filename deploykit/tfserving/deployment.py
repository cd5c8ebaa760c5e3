"""``deploykit tfserving-deploy``: a complete TF Serving deployment of a repository's SavedModels.

Layout of the output directory::

    OUT/
      models/NAME/VERSION/...     the served SavedModels (TF Serving's layout)
      models.config               ModelServerConfig, base paths = absolute host paths (the binary)
      models.docker.config        the same with container paths (/models/models/NAME) for Docker
      batching_parameters.txt     BatchingParameters
      monitoring.config           MonitoringConfig: Prometheus at /monitoring/prometheus/metrics
      run.sh                      ./run.sh binary|docker: the exact commands
      README.md                   what was deployed, what was skipped and why, the commands
      deployment.json             the same facts for programs (deploykit serve --engine tfserving OUT)

**Model files are hard links** to the repository's files, or copies where a hard link is impossible
(another file system). Hard links are real files, so the directory works as a Docker bind mount
(symbolic links pointing outside a mount dangle inside the container) and survives the repository
being moved or deleted, at no extra disk cost. Sharing inodes is safe because deploykit never
modifies a published version (versions are immutable; a new export is a new version).

**Two model configs** because a base path is absolute and differs between the host and the
container: ``models.config`` serves the binary on this host, ``models.docker.config`` serves the
container, where OUT is mounted read-only at ``/models``. The batching and monitoring files hold no
paths and are shared.

The directory is built beside OUT and renamed into place when complete; an existing non-empty OUT is
replaced only with ``force`` and only if it is itself a deployment (it holds ``deployment.json``).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from deploykit import __version__
from deploykit.errors import UsageError
from deploykit.fsutil import atomic_directory
from deploykit.protocol.protos import config_pb2
from deploykit.server.model_config import ModelConfig, to_proto
from deploykit.serving.deployment_files import DEPLOYMENT_FILE, load_record, run_script, shell_line
from deploykit.serving.options import ServeOptions
from deploykit.tfserving.commands import (
    CONTAINER_ROOT,
    DEFAULT_IMAGE,
    binary_command,
    docker_command,
)
from deploykit.tfserving.config import monitoring_config, to_text
from deploykit.tfserving.planning import (  # re-exported: the deployment's public API
    ModelPlan,
    Plan,
    Skipped,
    plan,
    savedmodel_problem,
    split_savedmodels,
)

__all__ = [
    "Deployment",
    "ModelPlan",
    "Plan",
    "Skipped",
    "WriteOptions",
    "deployment_flags",
    "is_deployment",
    "plan",
    "read_record",
    "savedmodel_problem",
    "split_savedmodels",
    "write",
]

MODELS_DIR = "models"
HOST_CONFIG = "models.config"
DOCKER_CONFIG = "models.docker.config"
BATCHING_FILE = "batching_parameters.txt"
MONITORING_FILE = "monitoring.config"
SCHEMA_VERSION = 1


def deployment_flags(
    out: Path | str, *, batching: bool, monitoring: bool, grpc_port: int, rest_port: int, container: bool = False
) -> ServeOptions:
    """TF Serving options that serve deployment ``out``: host paths, or container paths with ``container``."""
    root = Path(CONTAINER_ROOT) if container else Path(out).resolve()
    return ServeOptions(
        port=grpc_port,
        rest_api_port=rest_port,
        model_config_file=root / (DOCKER_CONFIG if container else HOST_CONFIG),
        enable_batching=batching,
        batching_parameters_file=root / BATCHING_FILE if batching else None,
        # Prometheus is exposed on the REST port: without REST, the file would do nothing.
        monitoring_config_file=root / MONITORING_FILE if monitoring and rest_port else None,
    )


@dataclass
class Deployment:
    """A written deployment and its commands."""

    out: Path
    plan: Plan
    binary_command: list[str]
    docker_command: list[str]
    copied_files: int = 0
    linked_files: int = 0


@dataclass(frozen=True)
class WriteOptions:
    """Ports, batching, image and overwrite policy of :func:`write`."""

    batching: config_pb2.BatchingParameters | None = None
    grpc_port: int = 8500
    rest_port: int = 8501
    image: str = DEFAULT_IMAGE
    binary: str = "tensorflow_model_server"
    force: bool = False


def _check_out(out: Path, repo: Path, force: bool) -> None:
    out_abs, repo_abs = out.resolve(), repo.resolve()
    if out_abs == repo_abs or out_abs in repo_abs.parents or repo_abs in out_abs.parents:
        raise UsageError(f"--out {out} overlaps the model repository {repo}; write the deployment elsewhere")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise UsageError(f"--out {out} is not empty; give --force to replace the deployment there")
        if not (out / DEPLOYMENT_FILE).is_file():
            raise UsageError(
                f"--out {out} is not empty and holds no {DEPLOYMENT_FILE}: not a deploykit deployment, "
                "so --force will not replace it; remove it yourself or pick another directory"
            )


class _Linker:
    """``copytree`` copy function: hard link, or copy where linking fails (other file system)."""

    def __init__(self) -> None:
        self.linked = self.copied = 0

    def __call__(self, src: str, dst: str) -> None:
        try:
            os.link(src, dst)
            self.linked += 1
        except OSError:
            shutil.copy2(src, dst)
            self.copied += 1


def write(plan: Plan, out: Path, options: WriteOptions | None = None) -> Deployment:
    """Write the deployment of ``plan`` to ``out`` atomically (see the module docstring)."""
    options = options or WriteOptions()
    out = Path(out)
    _check_out(out, plan.repo, options.force)
    final = out.resolve()
    batching = options.batching is not None  # monitoring is always on (it costs nothing and needs no tuning)
    host = deployment_flags(
        final, batching=batching, monitoring=True, grpc_port=options.grpc_port, rest_port=options.rest_port
    )
    container = deployment_flags(
        final,
        batching=batching,
        monitoring=True,
        grpc_port=8500,
        rest_port=8501 if options.rest_port else 0,
        container=True,
    )
    deployment = Deployment(
        out,
        plan,
        binary_command(options.binary, host),
        docker_command(
            str(final), container, image=options.image, grpc_port=options.grpc_port, rest_port=options.rest_port
        ),
    )
    linker = _Linker()
    with atomic_directory(final, replace=final.exists()) as stage:
        stage.chmod(0o755)  # mkdtemp made it private; the server (e.g. in a container) must read it
        for model in plan.models:
            for path in model.versions.values():
                shutil.copytree(path, stage / MODELS_DIR / model.name / path.name, copy_function=linker)
        for name, root in ((HOST_CONFIG, f"{final}/{MODELS_DIR}"), (DOCKER_CONFIG, f"{CONTAINER_ROOT}/{MODELS_DIR}")):
            entries = [
                ModelConfig(m.name, Path(f"{root}/{m.name}"), plan.policy, m.labels, "tensorflow") for m in plan.models
            ]
            (stage / name).write_text(to_text(to_proto(entries)))
        if options.batching is not None:
            (stage / BATCHING_FILE).write_text(to_text(options.batching))
        (stage / MONITORING_FILE).write_text(to_text(monitoring_config()))
        run_sh = stage / "run.sh"
        run_sh.write_text(_run_script(deployment))
        run_sh.chmod(0o755)
        (stage / "README.md").write_text(_readme(deployment))
        (stage / DEPLOYMENT_FILE).write_text(json.dumps(_record(deployment, options), indent=2) + "\n")
    deployment.linked_files, deployment.copied_files = linker.linked, linker.copied
    return deployment


def _record(deployment: Deployment, options: WriteOptions) -> dict:
    plan = deployment.plan
    return {
        "schema_version": SCHEMA_VERSION,
        "written_by": f"deploykit {__version__}",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "repo": str(plan.repo.resolve()),
        "version_policy": plan.policy.describe(),
        "models": [
            {
                "name": m.name,
                "versions": sorted(m.versions),
                "labels": dict(m.labels),
                "source": str(m.source.resolve()),
            }
            for m in plan.models
        ],
        "skipped": [{"what": s.what, "reason": s.reason} for s in plan.skipped],
        "batching": options.batching is not None,
        "monitoring": True,
        "grpc_port": options.grpc_port,
        "rest_port": options.rest_port,
        "image": options.image,
        "commands": {"binary": deployment.binary_command, "docker": deployment.docker_command},
    }


def read_record(out: Path) -> dict:
    """The ``deployment.json`` of a deployment directory; :class:`UsageError` if it is not one."""
    path, record = load_record(out, "tfserving-deploy")
    if record.get("schema_version") != SCHEMA_VERSION:
        raise UsageError(
            f"{path}: schema_version {record.get('schema_version')!r}, this deploykit reads {SCHEMA_VERSION}"
        )
    return record


def is_deployment(path: Path) -> bool:
    """Whether ``path`` is a deployment directory written by :func:`write`."""
    return (Path(path) / DEPLOYMENT_FILE).is_file()


def _run_script(deployment: Deployment) -> str:
    return run_script(
        "TensorFlow Serving on this deployment",
        "tfserving-deploy",
        "tensorflow_model_server",
        deployment.binary_command,
        deployment.docker_command,
    )


def _readme(deployment: Deployment) -> str:
    plan = deployment.plan
    rows = "\n".join(
        f"| `{m.name}` | {', '.join(map(str, sorted(m.versions)))} | "
        f"{', '.join(f'{k}={v}' for k, v in m.labels.items()) or '-'} | `{m.source.resolve()}` |"
        for m in plan.models
    )
    skipped = "\n".join(f"- `{s.what}`: {s.reason}" for s in plan.skipped) or "- nothing"
    return f"""# TensorFlow Serving deployment

Written by deploykit {__version__} `tfserving-deploy` from `{plan.repo.resolve()}`;
version policy `{plan.policy.describe()}`.

| model | versions | labels | from |
|---|---|---|---|
{rows}

Skipped (TF Serving serves only TensorFlow SavedModels):

{skipped}

## Run it

`./run.sh binary` (or `./run.sh docker`; without an argument: the binary when on PATH, else Docker).

With `tensorflow_model_server` on this host (`models.config` holds absolute host paths):

```sh
{shell_line(deployment.binary_command)}
```

With Docker (the official image; this directory is mounted read-only at `/models`, and
`models.docker.config` holds the container paths):

```sh
{shell_line(deployment.docker_command)}
```

Or let deploykit start it, wait until every model is AVAILABLE and stop it on Ctrl-C:
`deploykit serve {deployment.out} --engine tfserving` (add `--docker` for the image).

Model files are hard links to the repository's (copies across file systems): real files, so the
Docker mount works, and deploykit never modifies a published version. Moving this directory
breaks `models.config` (absolute paths); `models.docker.config` does not care where it is mounted from.
Prometheus metrics: `http://HOST:REST_PORT/monitoring/prometheus/metrics`. TF Serving does not name
itself in responses: load-test reports against it say the engine is "not self-reported".
"""
