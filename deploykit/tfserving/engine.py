"""Choosing and preparing the engine for ``deploykit serve --engine tfserving|auto``.

Engines:

* ``tfserving``: ``tensorflow_model_server`` (``--tfserving-binary`` or on PATH), or the official
  Docker image with ``--docker`` when a Docker engine answers ``docker info``. It serves what TF
  Serving can (SavedModels; the rest are listed as skipped). With neither, deploykit's own
  TF-Serving-compatible server serves instead (a :class:`Fallback`).
* ``auto``: the same, except that deploykit's server (which serves every format) is also chosen when
  the models include artifacts TF Serving cannot serve.

What is served (:func:`resolve_target`): a deployment directory written by ``deploykit
tfserving-deploy`` (its ``models.config``, batching and monitoring files), a ``--model_config_file``
(passed as it is), one model directory (``--model_name`` / ``--model_base_path``), or a model
repository. A repository is deployed first into a temporary directory (hard links, so this is cheap)
and served through its ``models.config``; so is one model directory when TF Serving's single-model
flags would serve something else than the plan (a version skipped, a ``--version-policy`` or
``--label``). The temporary directory goes in the system temp dir when hard links work there, else
beside the repository; the launcher removes it when the server stops (a SIGKILL leaves it behind).

Which ``serve`` options reach TF Serving, which are refused and which only deploykit's server uses is
declared once, on the options (:mod:`deploykit.serving.options`); :func:`check_options` applies it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.errors import UsageError
from deploykit.repository import version_dirs
from deploykit.server import model_config
from deploykit.serving.events import PROGRAM
from deploykit.serving.flag import Rule, flags
from deploykit.serving.options import ServeOptions
from deploykit.tfserving import deployment
from deploykit.tfserving.commands import CONTAINER_ROOT, fixed_by_deployment, refusals

ENGINES = ("deploykit", "tfserving", "auto")
BINARY = "tensorflow_model_server"
#: Options a target sets itself (what is served, where); the user's other TF Serving options go on top.
_TARGET_FIELDS = ("port", "rest_api_port", "model_name", "model_base_path", "model_config_file")


def docker_engine_reachable() -> bool:
    """Whether ``docker info`` succeeds: a client alone (no engine) is not enough to run a container."""
    if not shutil.which("docker"):
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@dataclass(frozen=True)
class EngineChoice:
    """``binary`` or ``docker`` runs TF Serving; ``deploykit`` with ``reason`` is the fallback."""

    kind: str
    binary: str | None = None
    reason: str = ""


def choose_engine(engine: str, *, binary: str | None = None, docker: bool = False) -> EngineChoice:
    """Which engine can run, by availability alone (see the module docstring)."""
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if engine == "deploykit":
        if binary or docker:
            raise UsageError("--tfserving-binary and --docker need --engine tfserving or auto")
        return EngineChoice("deploykit")
    if binary and docker:
        raise UsageError("give --tfserving-binary or --docker, not both")
    if binary:
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            raise UsageError(f"--tfserving-binary {binary}: not an executable file")
        return EngineChoice("binary", str(Path(binary).resolve()))
    if docker:
        if docker_engine_reachable():
            return EngineChoice("docker")
        return EngineChoice("deploykit", reason="--docker: no Docker engine reachable (`docker info` failed)")
    found = shutil.which(BINARY)
    if found:
        return EngineChoice("binary", found)
    return EngineChoice("deploykit", reason=f"no {BINARY} on PATH (give --tfserving-binary PATH, or --docker)")


def check_request(options: ServeOptions) -> None:
    """Refuse option combinations no engine can honour (before an engine is chosen)."""
    path = options.served_path
    if (path is None) == (options.model_config_file is None):
        raise UsageError(
            "give one of a model repository (PATH or --model_base_path) or --model_config_file"
            if path is None
            else "give either PATH/--model_base_path or --model_config_file, not both"
        )
    if path is not None and deployment.is_deployment(path):
        given = fixed_by_deployment(options)
        if given:
            raise UsageError(
                f"{', '.join(given)}: deployment {path} fixes version policies and labels (models.config), "
                "batching and monitoring; write a new one with deploykit tfserving-deploy "
                "--version-policy/--label/--batching"
            )


def check_for_tf_serving(options: ServeOptions) -> None:
    """Refuse the options TF Serving cannot honour (when TF Serving is to run)."""
    if options.model_config_file is not None and (options.label or options.changed("version_policy")):
        raise UsageError(
            f"--version-policy/--label with --model_config_file: TF Serving reads them from the file "
            f"(model_version_policy, version_labels per model); edit {options.model_config_file}"
        )
    found = refusals(options, docker=options.docker)
    if found:
        raise UsageError(found[0])


@dataclass
class ServingTarget:
    """What TF Serving serves: options for the host and for the container, and what was skipped.

    ``container_flags`` is None when the target cannot run in the container (a model config file
    of the user's: its paths are host paths). ``unservable`` lists versions a user's model config
    file selects that TF Serving cannot load (nothing can be skipped there: the file is served as is).
    """

    models: list[str]
    host_flags: ServeOptions
    container_flags: ServeOptions | None
    mount: Path
    skipped: list[deployment.Skipped] = field(default_factory=list)
    temporary: Path | None = None
    unservable: list[deployment.Skipped] = field(default_factory=list)


def resolve_target(options: ServeOptions) -> ServingTarget:
    """Options serving ``options`` with TF Serving: a model config file, a deployment directory, one
    model directory, or a repository.

    One model directory is served with TF Serving's single-model flags when that serves exactly what
    the plan picked (nothing skipped, default version policy, no labels); otherwise it is deployed
    into a temporary directory first, like a repository, so TF Serving sees only the planned versions.
    """
    grpc_port, rest_port = options.port, options.rest_api_port
    if options.model_config_file is not None:
        return _config_file_target(options.model_config_file, grpc_port, rest_port)
    path = Path(options.served_path).resolve()
    if deployment.is_deployment(path):
        return _deployment_target(path, deployment.read_record(path), grpc_port, rest_port)
    single = bool(version_dirs(path))
    if options.model_name and not single:
        raise UsageError(f"--model_name {options.model_name}: {path} is not one model directory VERSION/...")
    name = (options.model_name or path.name) if single else None
    plan = deployment.plan(path, policy=options.policy, labels=options.labels, model_name=name)
    if single and not plan.skipped and not options.changed("version_policy") and not options.label:
        return ServingTarget(
            [name],
            ServeOptions(port=grpc_port, rest_api_port=rest_port, model_name=name, model_base_path=path),
            ServeOptions(rest_api_port=8501 if rest_port else 0, model_name=name, model_base_path=CONTAINER_ROOT),
            path,
        )
    return _temporary_target(plan, grpc_port, rest_port)


def _config_file_target(config_file: Path, grpc_port: int, rest_port: int) -> ServingTarget:
    """A user's ``--model_config_file``, passed as it is; the versions its policies pick are checked."""
    config_file = Path(config_file).resolve()
    models = model_config.read_file(config_file)
    unservable = []
    for model in models:
        on_disk = version_dirs(model.base_path)
        picked = {v: on_disk[v] for v in sorted(model.policy.select(on_disk))}
        unservable += deployment.split_savedmodels(model.name, picked)[1]
    flags = ServeOptions(port=grpc_port, rest_api_port=rest_port, model_config_file=config_file)
    return ServingTarget([m.name for m in models], flags, None, config_file.parent, unservable=unservable)


def _temporary_target(plan: deployment.Plan, grpc_port: int, rest_port: int) -> ServingTarget:
    """``plan`` deployed into a temporary directory (removed by the launcher when the server stops)."""
    temporary = temporary_root(plan)
    try:
        out = temporary / "deployment"
        deployment.write(plan, out)
        target = _deployment_target(out, deployment.read_record(out), grpc_port, rest_port)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    target.skipped, target.temporary = plan.skipped, temporary
    return target


def temporary_root(plan: deployment.Plan) -> Path:
    """A new directory for a temporary deployment of ``plan``.

    In the system temp dir when a hard link from the repository works there (same file system):
    a launcher killed by SIGKILL cannot remove it, and the system cleans its temp dir. Otherwise
    beside the repository, where hard links work (a deployment of copies would double the disk use
    and take time); a read-only parent leaves the system temp dir, with copies.
    """
    version = next(iter(plan.models[0].versions.values()))
    sample = next(p for p in (version / "saved_model.pb", version / "saved_model.pbtxt") if p.is_file())
    root = Path(tempfile.mkdtemp(prefix="deploykit-tfserving-"))
    try:
        os.link(sample, root / "link-probe")
    except OSError:
        shutil.rmtree(root, ignore_errors=True)
    else:
        (root / "link-probe").unlink()
        return root
    try:
        return Path(tempfile.mkdtemp(prefix=f".{plan.repo.name}.tfserving-", dir=plan.repo.resolve().parent))
    except OSError:
        return Path(tempfile.mkdtemp(prefix="deploykit-tfserving-"))


def _deployment_target(out: Path, record: dict, grpc_port: int, rest_port: int) -> ServingTarget:
    options = {"batching": record["batching"], "monitoring": record["monitoring"]}
    return ServingTarget(
        [m["name"] for m in record["models"]],
        deployment.deployment_flags(out, grpc_port=grpc_port, rest_port=rest_port, **options),
        deployment.deployment_flags(out, grpc_port=8500, rest_port=8501 if rest_port else 0, container=True, **options),
        out,  # what was skipped when it was written is not in it: nothing is skipped now
    )


def pass_through(options: ServeOptions, target: ServeOptions) -> ServeOptions:
    """``target`` plus the TF Serving options the user gave ``serve`` (paths made absolute)."""
    given = {
        name: Path(value).resolve() if isinstance(value, Path) else value
        for name, flag in flags(ServeOptions).items()
        if flag.tfserving is Rule.PASSED and name not in _TARGET_FIELDS and options.changed(name)
        for value in (getattr(options, name),)
    }
    merged = target.model_copy(update=given)
    if merged.batching_parameters_file is not None:  # a parameters file means batching, as it always did
        merged = merged.model_copy(update={"enable_batching": True})
    return merged


@dataclass(frozen=True)
class Fallback:
    """deploykit's own server serves ``path`` instead; ``line`` says why (print it once).

    When ``path`` came from a deployment, ``config_file``, ``batching_file`` and ``monitoring_file``
    are its ``models.config`` (version policies and labels), ``batching_parameters.txt`` (None when
    it was written without batching) and ``monitoring.config``: served as TF Serving would.
    """

    path: Path | None
    line: str
    config_file: Path | None = None
    batching_file: Path | None = None
    monitoring_file: Path | None = None

    @classmethod
    def because(cls, options: ServeOptions, reason: str) -> Fallback:
        """The fallback for ``options``, with ``reason`` (why TF Serving does not serve)."""
        line = (
            f"{PROGRAM}: engine deploykit (deploykit's own TF-Serving-compatible server), "
            f"not TensorFlow Serving: {reason}"
        )
        path = options.served_path
        if path is None or not deployment.is_deployment(path):
            return cls(path, line)
        batching = Path(path) / deployment.BATCHING_FILE
        return cls(
            Path(path) / deployment.MODELS_DIR,
            line,
            Path(path) / deployment.HOST_CONFIG,
            batching if batching.is_file() else None,
            Path(path) / deployment.MONITORING_FILE,
        )

    @property
    def message(self) -> str:
        """The line without the program's name."""
        return self.line.split(": ", 1)[1]

    def apply(self, options: ServeOptions) -> ServeOptions:
        """The options deploykit's server serves in TF Serving's place."""
        changes: dict = {"path": self.path, "model_base_path": None}
        if self.config_file is not None:  # a deployment: served with its own config, batching, monitoring
            changes.update(
                path=None,
                model_config_file=self.config_file,
                monitoring_config_file=self.monitoring_file,
                enable_batching=self.batching_file is not None,
                batching_parameters_file=self.batching_file,
            )
        return options.model_copy(update=changes)
