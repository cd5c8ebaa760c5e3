"""Which models and versions of a repository a TF Serving deployment serves, and why the others are
left out: the plan that :func:`deploykit.tfserving.deployment.write` writes and ``deploykit serve
--engine tfserving`` serves.

TF Serving serves only TensorFlow SavedModels: other formats, unreadable manifests and versions the
version policy does not select are listed as :class:`Skipped` with a reason, never dropped silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.errors import UsageError
from deploykit.repository import MANIFEST, version_dirs
from deploykit.server.model_config import VersionPolicy


@dataclass(frozen=True)
class Skipped:
    """A model or version left out of the deployment, and why."""

    what: str
    reason: str

    def __str__(self) -> str:
        return f"{self.what}: {self.reason}"


@dataclass
class ModelPlan:
    """One model to deploy: its repository directory, the versions served, its labels."""

    name: str
    source: Path
    versions: dict[int, Path]
    labels: dict[str, int] = field(default_factory=dict)


@dataclass
class Plan:
    """What a deployment will hold."""

    repo: Path
    policy: VersionPolicy
    models: list[ModelPlan]
    skipped: list[Skipped] = field(default_factory=list)


def savedmodel_problem(version_dir: Path) -> str | None:
    """Why TF Serving cannot serve ``version_dir`` as it is; None when it can.

    A deploykit export says its format in its manifest; a directory without one (e.g. a SavedModel
    exported elsewhere) is judged by ``saved_model.pb``/``.pbtxt`` at its root, where TF Serving
    looks.
    """
    manifest_path = version_dir / MANIFEST
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
            fmt, artifact = manifest["format"], manifest["artifact"]
            passed = manifest.get("validation", {}).get("passed", True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"unreadable {MANIFEST} ({type(exc).__name__}: {exc})"
        if fmt != "savedmodel":
            return f"{fmt} artifact; TF Serving serves only TensorFlow SavedModels"
        if not passed:
            return "failed validation at export (published with --allow-mismatch); not deployed"
        if artifact not in (".", ""):
            return f"SavedModel in {artifact}/; TF Serving needs saved_model.pb at the version root"
    if not ((version_dir / "saved_model.pb").is_file() or (version_dir / "saved_model.pbtxt").is_file()):
        return "no saved_model.pb at the version root; not a SavedModel"
    return None


def split_savedmodels(name: str, versions: dict[int, Path]) -> tuple[dict[int, Path], list[Skipped]]:
    """Model ``name``'s ``versions`` split into the SavedModels TF Serving can serve and the rest, skipped."""
    servable, skipped = {}, []
    for version, path in versions.items():
        problem = savedmodel_problem(path)
        if problem:
            skipped.append(Skipped(f"{name} v{version}", problem))
        else:
            servable[version] = path
    return servable, skipped


def _model_dirs(repo: Path) -> list[Path]:
    if not repo.is_dir():
        raise UsageError(f"{repo}: no such directory; expected a model repository NAME/VERSION/...")
    if version_dirs(repo):
        return [repo]  # one model directory VERSION/...
    models = [p for p in sorted(repo.iterdir()) if p.is_dir() and not p.name.startswith(".") and version_dirs(p)]
    if not models:
        raise UsageError(f"{repo}: found no models (expected NAME/VERSION/ directories with integer versions)")
    return models


def plan(
    repo: Path,
    *,
    policy: VersionPolicy | None = None,
    labels: tuple[tuple[str | None, str, int], ...] = (),
    only: tuple[str, ...] = (),
    model_name: str | None = None,
) -> Plan:
    """Pick the SavedModel versions of ``repo`` (only the models named in ``only``, when given).

    Versions TF Serving cannot serve are skipped with a reason; the version policy then selects
    among the SavedModel versions. ``labels`` are ``(model or None, label, version)`` as
    :func:`deploykit.server.model_config.parse_label` reads ``[MODEL:]LABEL=VERSION``; a label without
    a model applies to every model, and must point to a selected version (TF Serving refuses a label
    to a version it does not serve). ``model_name`` names the model when ``repo`` is one model
    directory (default: the directory's name).
    """
    repo = Path(repo)
    policy = policy or VersionPolicy()
    dirs = _model_dirs(repo)
    names = {d: (model_name or d.name) if d == repo else d.name for d in dirs}
    unknown = sorted((set(only) | {m for m, _, _ in labels if m}) - set(names.values()))
    if unknown:
        raise UsageError(f"no model(s) {', '.join(unknown)} in {repo}; it has: {', '.join(sorted(names.values()))}")
    result = Plan(repo, policy, [])
    for model_dir in dirs:
        name = names[model_dir]
        if only and name not in only:
            continue
        servable, skipped = split_savedmodels(name, version_dirs(model_dir))
        result.skipped += skipped
        if servable:
            selected = _select(name, policy, servable)
            own = {label: version for model, label, version in labels if model in (None, name)}
            _check_labels(name, policy, selected, own)
            result.models.append(ModelPlan(name, model_dir, {v: servable[v] for v in selected}, own))
    deployed = {m.name for m in result.models}
    for model, label, version in labels:
        if model and model not in deployed:
            raise UsageError(
                f"label {model}:{label}={version}: model {model} is not deployed "
                "(left out by --model, or it holds no SavedModel TF Serving can serve)"
            )
    if not result.models:
        reasons = "; ".join(map(str, result.skipped)) or "no versions"
        raise UsageError(f"{repo}: nothing TF Serving can serve ({reasons})")
    return result


def _select(name: str, policy: VersionPolicy, servable: dict[int, Path]) -> list[int]:
    """The policy's versions among the SavedModels; a specific version that is missing is an error."""
    missing = sorted(set(policy.versions) - set(servable)) if policy.kind == "specific" else []
    if missing:
        raise UsageError(
            f"model {name}: specific version(s) {', '.join(map(str, missing))} not found; "
            f"SavedModel versions present: {', '.join(map(str, sorted(servable)))}"
        )
    return sorted(policy.select(servable))


def _check_labels(name: str, policy: VersionPolicy, selected: list[int], labels: dict[str, int]) -> None:
    for label, version in labels.items():
        if version not in selected:
            raise UsageError(
                f"model {name}: label {label}={version} points to a version it does not serve "
                f"(version policy {policy.describe()} serves {', '.join(map(str, selected))}); TF Serving accepts "
                f"labels only for served versions (scope a label to one model with --label MODEL:LABEL=VERSION)"
            )
