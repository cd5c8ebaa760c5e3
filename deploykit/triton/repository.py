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
import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from deploykit import __version__
from deploykit.errors import UsageError
from deploykit.fsutil import atomic_directory
from deploykit.protocol import v2_model_config
from deploykit.protocol.protos import v2_model_config_pb2 as mc
from deploykit.server.model_config import VersionPolicy
from deploykit.server.models import MANIFEST, version_dirs
from deploykit.tensors import Signature
from deploykit.triton import commands

log = logging.getLogger(__name__)

DEPLOYMENT_FILE = "deployment.json"
FALLBACK_CONFIG = "deploykit.models.config"
FALLBACK_BATCHING = "deploykit.batching.txt"
MODELS_DIR = "models"
GOLDEN = "golden.npz"
SCHEMA_VERSION = 1
ENGINE = "triton"

#: deploykit format -> the file or directory name Triton's backend loads from a version directory.
DEFAULT_FILENAMES = {"onnx": "model.onnx", "torchscript": "model.pt", "savedmodel": "model.savedmodel"}
TENSORFLOW_DEPRECATED = (
    "Triton deprecated its TensorFlow backend in 25.03 and no longer builds it; this SavedModel needs an "
    "image that still has it (--triton-version 25.02 or older). Prefer the model's ONNX export"
)
_SKIP_REASONS = {
    "pt2": "torch.export program run eagerly; Triton's torch_aoti platform takes AOTInductor packages "
    "(beta, batch 1 only); deploy the TorchScript or ONNX export",
    "aoti": "AOTInductor package: Triton's torch_aoti platform is beta and does not batch (batch > 1 unsupported)",
}


@dataclass(frozen=True)
class Options:
    """What ``config.pbtxt`` says beyond the signature."""

    policy: VersionPolicy = field(default_factory=VersionPolicy)
    #: Largest batch when the signature has a dynamic batch dimension (Triton's max_batch_size).
    max_batch_size: int = 8
    dynamic_batching: bool = True
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_microseconds: int = 100
    gpu: bool = False
    instance_count: int = 1
    #: ONNX Runtime's TensorRT execution accelerator (GPU only), with this precision.
    tensorrt: str | None = None
    warmup: bool = True
    allow_tensorflow: bool = False

    def validate(self) -> None:
        if self.max_batch_size < 1 or self.instance_count < 1 or self.max_queue_delay_microseconds < 0:
            raise UsageError("--max-batch-size and --instances must be >= 1, --max-queue-delay-us >= 0")
        if any(not 1 <= size <= self.max_batch_size for size in self.preferred_batch_sizes):
            raise UsageError(
                f"--preferred-batch-sizes {list(self.preferred_batch_sizes)}: each must be in 1..--max-batch-size "
                f"({self.max_batch_size})"
            )
        if self.tensorrt is not None and not self.gpu:
            raise UsageError("--tensorrt needs --gpu: TensorRT is a GPU execution accelerator")
        if self.tensorrt not in (None, "FP32", "FP16", "BF16", "INT8"):
            raise UsageError(f"--tensorrt {self.tensorrt!r}: expected FP32, FP16, BF16 or INT8")


@dataclass
class ModelPlan:
    """One Triton model: its versions (number -> version directory), format and signature."""

    name: str
    source: Path
    format: str
    signature: Signature
    versions: dict[int, Path]
    manifest: dict


@dataclass
class Plan:
    repo: Path
    options: Options
    models: list[ModelPlan]
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _manifest(version_dir: Path) -> tuple[dict | None, str | None]:
    path = version_dir / MANIFEST
    if not path.is_file():
        return None, f"no {MANIFEST}: a deploykit export records the signature config.pbtxt needs"
    try:
        manifest = json.loads(path.read_text())
        manifest["format"], manifest["artifact"], manifest["signature"]  # noqa: B018 (presence check)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"unreadable {MANIFEST} ({type(exc).__name__}: {exc})"
    if not manifest.get("validation", {}).get("passed", True):
        return None, "failed validation at export (published with --allow-mismatch); not deployed"
    return manifest, None


def _model_dirs(repo: Path) -> list[Path]:
    if not repo.is_dir():
        raise UsageError(f"{repo}: no such directory; expected a model repository NAME/VERSION/...")
    if version_dirs(repo):
        return [repo]
    models = [p for p in sorted(repo.iterdir()) if p.is_dir() and not p.name.startswith(".") and version_dirs(p)]
    if not models:
        raise UsageError(f"{repo}: found no models (expected NAME/VERSION/ directories with integer versions)")
    return models


def plan(repo: Path, options: Options | None = None, only: tuple[str, ...] = ()) -> Plan:
    """Pick what Triton can serve in ``repo``; everything else is listed as skipped with the reason."""
    options = options or Options()
    options.validate()
    repo = Path(repo)
    dirs = _model_dirs(repo)
    unknown = sorted(set(only) - {d.name for d in dirs})
    if unknown:
        raise UsageError(f"no model(s) {', '.join(unknown)} in {repo}; it has: {', '.join(d.name for d in dirs)}")
    result = Plan(repo, options, [])
    for model_dir in dirs:
        if only and model_dir.name not in only:
            continue
        model = _plan_model(model_dir, result)
        if model is not None:
            result.models.append(model)
    if not result.models:
        raise UsageError(f"{repo}: nothing Triton can serve ({'; '.join(result.skipped) or 'no versions'})")
    return result


def _plan_model(model_dir: Path, result: Plan) -> ModelPlan | None:
    name, usable = model_dir.name, {}
    for number, path in version_dirs(model_dir).items():
        manifest, problem = _manifest(path)
        fmt = manifest["format"] if manifest else None
        if problem is None and fmt in _SKIP_REASONS:
            problem = _SKIP_REASONS[fmt]
        elif problem is None and fmt not in DEFAULT_FILENAMES:
            problem = f"{fmt} artifact: no Triton backend for it"
        elif problem is None and fmt == "savedmodel" and not result.options.allow_tensorflow:
            problem = f"SavedModel: {TENSORFLOW_DEPRECATED} (give --allow-tensorflow to deploy it anyway)"
        if problem:
            result.skipped.append(f"{name} v{number}: {problem}")
        else:
            usable[number] = (path, manifest)
    if not usable:
        return None
    selected = sorted(result.options.policy.select(usable))
    if not selected:
        result.skipped.append(
            f"{name}: version policy {result.options.policy.describe()} selects none of "
            f"{', '.join(map(str, sorted(usable)))}"
        )
        return None
    newest = usable[selected[-1]][1]
    versions = {}
    for number in selected:
        path, manifest = usable[number]
        if (manifest["format"], manifest["signature"]) != (newest["format"], newest["signature"]):
            result.skipped.append(
                f"{name} v{number}: format or signature differs from v{selected[-1]} (one config.pbtxt per model)"
            )
        else:
            versions[number] = path
    if newest["format"] == "savedmodel":
        result.warnings.append(f"{name}: {TENSORFLOW_DEPRECATED}")
    return ModelPlan(name, model_dir, newest["format"], Signature.from_dict(newest["signature"]), versions, newest)


# ---------------------------------------------------------------------------------------------- config


def model_config(model: ModelPlan, options: Options) -> mc.ModelConfig:
    """The model's ``config.pbtxt`` as a message (deploykit's copy of Triton's ModelConfig)."""
    platform = v2_model_config.PLATFORMS[model.format]
    batched = v2_model_config.batch_dimension(model.signature)
    batching = None
    if batched and options.dynamic_batching:
        batching = v2_model_config.Batching(
            options.max_batch_size, options.preferred_batch_sizes, options.max_queue_delay_microseconds
        )
    config = v2_model_config.model_config(
        model.name, platform, model.signature, batching, options.max_batch_size if batched else 0
    )
    policy = options.policy
    if policy.kind == "all":
        config.version_policy.all.SetInParent()
    elif policy.kind == "specific":
        config.version_policy.specific.versions.extend(sorted(model.versions))
    else:
        config.version_policy.latest.num_versions = policy.num_versions
    kind = mc.ModelInstanceGroup.KIND_GPU if options.gpu else mc.ModelInstanceGroup.KIND_CPU
    config.instance_group.add(kind=kind, count=options.instance_count)
    if options.tensorrt and model.format == "onnx":
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        accelerator.parameters["precision_mode"] = options.tensorrt
        accelerator.parameters["max_workspace_size_bytes"] = str(1 << 30)
        accelerator.parameters["trt_engine_cache_enable"] = "1"
    return config


def _warmup(model: ModelPlan, config: mc.ModelConfig, warmup_dir: Path) -> bool:
    """Add ``model_warmup`` from the newest version's first golden sample; False when there is none."""
    golden = model.versions[max(model.versions)] / GOLDEN
    if not golden.is_file():
        return False
    from deploykit.export.manifest import load_golden

    cases = load_golden(golden)
    inputs, _ = cases[min(cases)]
    warmup = config.model_warmup.add(name=f"{model.name}_golden_sample", batch_size=1, count=1)
    warmup_dir.mkdir(parents=True, exist_ok=True)
    for spec in model.signature.inputs:
        array = np.asarray(inputs[spec.name])
        sample = array[:1] if config.max_batch_size > 0 else array
        if spec.dtype == "string":
            return False  # raw BYTES warm-up files need Triton's length prefixes; not worth a warm-up
        (warmup_dir / spec.name).write_bytes(np.ascontiguousarray(sample, sample.dtype.newbyteorder("<")).tobytes())
        shape = sample.shape[1:] if config.max_batch_size > 0 else sample.shape
        warmup.inputs[spec.name].CopyFrom(
            mc.ModelWarmup.Input(
                data_type=v2_model_config.CONFIG_TYPES[spec.dtype], dims=list(shape), input_data_file=spec.name
            )
        )
    return True


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
            if plan_.options.warmup and not _warmup(model, config, root / "warmup"):
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
    path = Path(out) / DEPLOYMENT_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{out}: no {DEPLOYMENT_FILE}; not a deployment written by deploykit triton-deploy") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable ({exc})") from exc
    if record.get("engine") != ENGINE or record.get("schema_version") != SCHEMA_VERSION:
        raise UsageError(f"{path}: not a deploykit triton-deploy deployment (schema {SCHEMA_VERSION})")
    return record


def _run_script(deployment: Deployment) -> str:
    binary = commands.shell_line(deployment.binary_command)
    docker = commands.shell_line(deployment.docker_command)
    return f"""#!/bin/sh
# Start NVIDIA Triton on this model repository (written by deploykit {__version__} triton-deploy).
# Usage: ./run.sh [binary|docker]; default: binary when tritonserver is on PATH, else docker.
set -eu
mode="${{1:-}}"
if [ -z "$mode" ]; then
  if command -v tritonserver >/dev/null 2>&1; then mode=binary; else mode=docker; fi
fi
case "$mode" in
  binary) exec {binary} ;;
  docker) exec {docker} ;;
  *) echo "usage: $0 [binary|docker]" >&2; exit 2 ;;
esac
"""


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
{commands.shell_line(deployment.binary_command)}
```

```sh
{commands.shell_line(deployment.docker_command)}
```

Or let deploykit start it, wait for v2 readiness and stop it on Ctrl-C:
`deploykit serve {deployment.out} --engine triton` (add `--docker` for the image). Then point deploykit's
client at it: `deploykit predict v2+grpc://127.0.0.1:8001 MODEL`.
"""
