"""What ``deploykit triton-deploy`` deploys: a repository's exports that Triton's backends load, and
why the others are skipped (:func:`plan`); :class:`Options` holds what ``config.pbtxt`` says beyond
the signature."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.errors import UsageError
from deploykit.repository import MANIFEST, version_dirs
from deploykit.server.model_config import VersionPolicy
from deploykit.tensors import Signature

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
    name = model_dir.name
    usable: dict[int, tuple[Path, dict]] = {}
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
            assert manifest is not None  # _manifest returns a manifest whenever it reports no problem
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
