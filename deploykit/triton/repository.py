"""``deploykit triton-deploy``: a Triton model repository written from deploykit's manifests.

Layout of the output directory::

    OUT/
      models/NAME/config.pbtxt        generated from the manifest's signature (Triton's ModelConfig)
      models/NAME/VERSION/model.onnx  ONNX Runtime backend (platform onnxruntime_onnx)
      models/NAME/VERSION/model.pt    PyTorch backend, TorchScript (platform pytorch_libtorch)
      models/NAME/VERSION/model.savedmodel/   TensorFlow backend, only with allow_tensorflow (deprecated)
      models/NAME/warmup/INPUT        raw warm-up data: the first golden sample of the newest version
      run.sh, README.md               the exact tritonserver and docker run commands
      deployment.json                 the same facts for programs (deploykit serve OUT --engine triton)
      deploykit.models.config         what deploykit's own server serves when Triton cannot run: the
      deploykit.batching.txt          source models and deployed versions, the same dynamic batching

Version directories are renamed to plain integers (Triton ignores ``0``-prefixed names such as TF
Serving's ``00000123``). Artifacts are hard links (copies across file systems), as in
``tfserving-deploy``, and the manifest and golden file are linked beside them so each version stays
self-describing (Triton ignores other files in a version directory). All versions of one model share
its ``config.pbtxt``: a version whose format or signature differs from the newest one is skipped.
The directory is built beside OUT and renamed into place when complete.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from google.protobuf import text_format

from deploykit import __version__
from deploykit.errors import UsageError
from deploykit.fsutil import atomic_directory
from deploykit.protocol import v2_model_config
from deploykit.repository import MANIFEST
from deploykit.server.model_config import VersionPolicy
from deploykit.serving.deployment_files import DEPLOYMENT_FILE, load_record, run_script, shell_line
from deploykit.triton import commands
from deploykit.triton.config import GOLDEN, add_warmup, model_config
from deploykit.triton.plan import DEFAULT_FILENAMES, ModelPlan, Options, Plan, plan

__all__ = ["Deployment", "ModelPlan", "Options", "Plan", "WriteOptions", "plan", "read_record", "write"]


FALLBACK_CONFIG = "deploykit.models.config"
FALLBACK_BATCHING = "deploykit.batching.txt"
MODELS_DIR = "models"
SCHEMA_VERSION = 1
ENGINE = "triton"

# ---------------------------------------------------------------------------------------------- write


@dataclass
class Deployment:
    out: Path
    plan: Plan
    binary_command: list[str]
    docker_command: list[str]
    linked_files: int = 0
    copied_files: int = 0


@dataclass(frozen=True)
class WriteOptions:
    http_port: int = commands.HTTP_PORT
    grpc_port: int = commands.GRPC_PORT
    metrics_port: int = commands.METRICS_PORT
    version: str = commands.DEFAULT_VERSION
    force: bool = False


class _Linker:
    def __init__(self) -> None:
        self.linked = self.copied = 0

    def __call__(self, src, dst) -> None:
        try:
            os.link(src, dst)
            self.linked += 1
        except OSError:
            shutil.copy2(src, dst)
            self.copied += 1


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
            raise UsageError(f"--out {out} holds no {DEPLOYMENT_FILE}: not a deploykit deployment; not replaced")


def _link_version(model: ModelPlan, source: Path, target: Path, linker: _Linker) -> None:
    """A version in Triton's layout: the artifact under the backend's default name, plus the manifest
    and golden file (self-describing; Triton ignores them)."""
    target.mkdir(parents=True)
    artifact = source / model.manifest["artifact"] if model.manifest["artifact"] not in ("", ".") else source
    destination = target / DEFAULT_FILENAMES[model.format]
    if artifact.is_dir():
        shutil.copytree(artifact, destination, copy_function=linker, ignore=shutil.ignore_patterns(MANIFEST, GOLDEN))
    else:
        linker(artifact, destination)
    for extra in (MANIFEST, GOLDEN):
        if (source / extra).is_file():
            linker(source / extra, target / extra)


def write(plan_: Plan, out: Path, options: WriteOptions | None = None) -> Deployment:
    """Write the repository of ``plan_`` to ``out`` atomically; returns it with its commands."""
    options = options or WriteOptions()
    out = Path(out)
    _check_out(out, plan_.repo, options.force)
    final = out.resolve()
    flags = commands.TritonFlags(f"{final}/{MODELS_DIR}", options.http_port, options.grpc_port, options.metrics_port)
    deployment = Deployment(
        out,
        plan_,
        commands.binary_command("tritonserver", flags),
        commands.docker_command(
            f"{final}/{MODELS_DIR}",
            version=options.version,
            gpus=plan_.options.gpu,
            http_port=options.http_port,
            grpc_port=options.grpc_port,
            metrics_port=options.metrics_port,
        ),
    )
    linker = _Linker()
    with atomic_directory(final, replace=final.exists()) as stage:
        stage.chmod(0o755)
        for model in plan_.models:
            root = stage / MODELS_DIR / model.name
            for number, path in model.versions.items():
                _link_version(model, path, root / str(number), linker)
            config = model_config(model, plan_.options)
            if plan_.options.warmup and not add_warmup(model, config, root / "warmup"):
                shutil.rmtree(root / "warmup", ignore_errors=True)
            (root / "config.pbtxt").write_text(text_format.MessageToString(config))
        run_sh = stage / "run.sh"
        run_sh.write_text(_run_script(deployment))
        run_sh.chmod(0o755)
        (stage / "README.md").write_text(_readme(deployment))
        _write_fallback(plan_, stage)
        (stage / DEPLOYMENT_FILE).write_text(json.dumps(_record(deployment, options), indent=2) + "\n")
    deployment.linked_files, deployment.copied_files = linker.linked, linker.copied
    return deployment


def _write_fallback(plan_: Plan, stage: Path) -> None:
    """deploykit's own server settings for the same deployment (``serve --engine triton`` without Triton):
    TF Serving's ModelServerConfig of the source models and versions, and its batching parameters."""
    from deploykit.server.model_config import ModelConfig, to_proto
    from deploykit.tfserving.config import batching_parameters, to_text

    models = [
        ModelConfig(m.name, m.source.resolve(), VersionPolicy("specific", versions=tuple(sorted(m.versions))))
        for m in plan_.models
    ]
    (stage / FALLBACK_CONFIG).write_text(to_text(to_proto(models)))
    opts = plan_.options
    if opts.dynamic_batching:
        params = batching_parameters(
            max_batch_size=opts.max_batch_size, batch_timeout_micros=opts.max_queue_delay_microseconds
        )
        (stage / FALLBACK_BATCHING).write_text(to_text(params))


def _record(deployment: Deployment, options: WriteOptions) -> dict:
    plan_ = deployment.plan
    opts = plan_.options
    return {
        "schema_version": SCHEMA_VERSION,
        "engine": ENGINE,
        "written_by": f"deploykit {__version__}",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "repo": str(plan_.repo.resolve()),
        "version_policy": opts.policy.describe(),
        "models": [
            {"name": m.name, "format": m.format, "versions": sorted(m.versions), "source": str(m.source.resolve())}
            for m in plan_.models
        ],
        "skipped": plan_.skipped,
        "warnings": plan_.warnings,
        "batching": {
            "enabled": opts.dynamic_batching,
            "max_batch_size": opts.max_batch_size,
            "preferred_batch_sizes": list(opts.preferred_batch_sizes),
            "max_queue_delay_microseconds": opts.max_queue_delay_microseconds,
        },
        "gpu": opts.gpu,
        "ports": {"http": options.http_port, "grpc": options.grpc_port, "metrics": options.metrics_port},
        "triton_version": options.version,
        "commands": {"binary": deployment.binary_command, "docker": deployment.docker_command},
    }


def read_record(out: Path) -> dict:
    """The ``deployment.json`` of a Triton deployment; :class:`UsageError` if ``out`` is not one."""
    path, record = load_record(out, "triton-deploy")
    if record.get("engine") != ENGINE or record.get("schema_version") != SCHEMA_VERSION:
        raise UsageError(f"{path}: not a deploykit triton-deploy deployment (schema {SCHEMA_VERSION})")
    return record


def _run_script(deployment: Deployment) -> str:
    return run_script(
        "NVIDIA Triton on this model repository",
        "triton-deploy",
        "tritonserver",
        deployment.binary_command,
        deployment.docker_command,
    )


def _readme(deployment: Deployment) -> str:
    plan_ = deployment.plan
    rows = "\n".join(
        f"| `{m.name}` | {v2_model_config.PLATFORMS[m.format]} | {', '.join(map(str, sorted(m.versions)))} | "
        f"`{m.source.resolve()}` |"
        for m in plan_.models
    )
    skipped = "\n".join(f"- {s}" for s in plan_.skipped) or "- nothing"
    warnings = "\n".join(f"- {w}" for w in plan_.warnings) or "- none"
    return f"""# Triton model repository

Written by deploykit {__version__} `triton-deploy` from `{plan_.repo.resolve()}`;
version policy `{plan_.options.policy.describe()}`. Each `models/NAME/config.pbtxt` is generated from the
export's manifest (inputs, outputs, dtypes, dims, max_batch_size from the dynamic batch dimension,
dynamic batching, instance group, warm-up from the golden inputs).

| model | platform | versions | from |
|---|---|---|---|
{rows}

Skipped:

{skipped}

Warnings:

{warnings}

## Run it

`./run.sh binary` (or `./run.sh docker`; without an argument: the binary when on PATH, else Docker).

```sh
{shell_line(deployment.binary_command)}
```

```sh
{shell_line(deployment.docker_command)}
```

Or let deploykit start it, wait for v2 readiness and stop it on Ctrl-C:
`deploykit serve {deployment.out} --engine triton` (add `--docker` for the image). Then point deploykit's
client at it: `deploykit predict v2+grpc://127.0.0.1:8001 MODEL`.
"""
