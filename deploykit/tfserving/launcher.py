"""``deploykit serve --engine tfserving|auto``: run the real TensorFlow Serving, or say why not.

Engines:

* ``tfserving``: ``tensorflow_model_server`` (``--tfserving-binary`` or on PATH), or the official
  Docker image with ``--docker`` when a Docker engine answers ``docker info``. It serves what TF
  Serving can (SavedModels; the rest are listed as skipped). With neither, deploykit's own
  TF-Serving-compatible server serves instead, and one line says so.
* ``auto``: the same, except that deploykit's server (which serves every format) is also chosen when
  the models include artifacts TF Serving cannot serve.

What is served: a deployment directory written by ``deploykit tfserving-deploy`` (its
``models.config``, batching and monitoring files), a ``--model_config_file`` (passed as it is), one
model directory (``--model_name`` / ``--model_base_path``), or a model repository. A repository is
deployed first into a temporary directory (hard links, so this is cheap) and served through its
``models.config``; so is one model directory when TF Serving's single-model flags would serve
something else than the plan (a version skipped, a ``--version-policy`` or ``--label``). The
temporary directory goes in the system temp dir when hard links work there, else beside the
repository; the launcher removes it when the server stops (a SIGKILL leaves it behind).

``serve``'s flags that TF Serving has under the same name are passed on (polling, batching,
monitoring, labels for unavailable models, the gRPC socket and channel arguments, tensor-content
outputs, CORS); ``--version-policy`` and ``--label``
shape the temporary deployment; the rest (``--workers``, the ``--ssl_*`` flags, host files with
``--docker``, a deployment's own settings) are refused with :class:`UsageError` rather than dropped.
Before launching, the ports must be free: readiness would otherwise ask whatever answers there.

The launched server's stdout/stderr lines are forwarded, prefixed; readiness is GetModelStatus
AVAILABLE for every model (no version still loading), through :class:`deploykit.client.Client`; SIGINT or
SIGTERM stop it with SIGTERM, then SIGKILL after a grace period. A server that exits before it is
ready fails the command with its last log lines. TF Serving does not name itself in responses, so
the engine is printed here (load-test reports say "not self-reported").
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.errors import DeployKitError, ModelNotFound, Unreachable, UsageError
from deploykit.server import model_config
from deploykit.server.model_config import VersionPolicy
from deploykit.server.version_loader import version_dirs
from deploykit.tfserving import deployment
from deploykit.tfserving.commands import (
    CONTAINER_ROOT,
    DEFAULT_IMAGE,
    ServerFlags,
    binary_command,
    docker_command,
    shell_line,
)

ENGINES = ("deploykit", "tfserving", "auto")
BINARY = "tensorflow_model_server"
#: How long the initial load may take (TF Serving loads, and warms up, every model before AVAILABLE).
READY_TIMEOUT = 300.0
#: SIGTERM, then this many seconds, then SIGKILL.
STOP_GRACE = 10.0
#: Log lines kept to explain a server that died.
TAIL_LINES = 30
PREFIX = "deploykit serve:"


class LaunchError(DeployKitError):
    """The launched server failed: exited before it was ready, or a model failed to load (exit 1)."""


def say(message: str) -> None:
    """One status line on stderr (stdout is the launched server's)."""
    print(f"{PREFIX} {message}", file=sys.stderr, flush=True)


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


@dataclass
class ServingTarget:
    """What TF Serving serves: flags for the host and for the container, and what was skipped.

    ``container_flags`` is None when the target cannot run in the container (a model config file
    of the user's: its paths are host paths). ``unservable`` lists versions a user's model config
    file selects that TF Serving cannot load (nothing can be skipped there: the file is served as is).
    """

    models: list[str]
    host_flags: ServerFlags
    container_flags: ServerFlags | None
    mount: Path
    skipped: list[deployment.Skipped] = field(default_factory=list)
    temporary: Path | None = None
    unservable: list[deployment.Skipped] = field(default_factory=list)


def resolve_target(request: LaunchRequest) -> ServingTarget:
    """Flags serving the request: a model config file, a deployment directory, one model directory,
    or a repository.

    One model directory is served with TF Serving's single-model flags when that serves exactly what
    the plan picked (nothing skipped, default version policy, no labels); otherwise it is deployed
    into a temporary directory first, like a repository, so TF Serving sees only the planned versions.
    """
    grpc_port, rest_port = request.grpc_port, request.rest_port
    if request.model_config_file is not None:
        return _config_file_target(request.model_config_file, grpc_port, rest_port)
    path = Path(request.path).resolve()
    if deployment.is_deployment(path):
        return _deployment_target(path, deployment.read_record(path), grpc_port, rest_port)
    single = bool(version_dirs(path))
    if request.model_name and not single:
        raise UsageError(f"--model_name {request.model_name}: {path} is not one model directory VERSION/...")
    name = (request.model_name or path.name) if single else None
    plan = deployment.plan(path, policy=request.version_policy, labels=request.labels, model_name=name)
    if single and not plan.skipped and request.version_policy == VersionPolicy() and not request.labels:
        return ServingTarget(
            [name],
            ServerFlags(grpc_port, rest_port, model_name=name, model_base_path=str(path)),
            ServerFlags(8500, 8501 if rest_port else 0, model_name=name, model_base_path=CONTAINER_ROOT),
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
    flags = ServerFlags(grpc_port, rest_port, model_config_file=str(config_file))
    return ServingTarget([m.name for m in models], flags, None, config_file.parent, unservable=unservable)


def _temporary_target(plan: deployment.Plan, grpc_port: int, rest_port: int) -> ServingTarget:
    """``plan`` deployed into a temporary directory (removed by :func:`launch` when the server stops)."""
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


def check_ports_free(host: str, ports: list[int]) -> None:
    """:class:`UsageError` naming the first of ``ports`` something already listens on at ``host``.

    Readiness asks whatever answers on the gRPC port: a server already there (say a forgotten
    ``deploykit serve``, which uses SO_REUSEPORT like every gRPC server) would be taken for the one
    just launched. The probe binds without SO_REUSEPORT, so any listener makes it fail; SO_REUSEADDR
    lets it ignore connections in TIME_WAIT, which do not stop a server from binding.
    """
    for port in ports:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise UsageError(
                    f"port {port} on {host} is in use ({exc.strerror}); another server listens there, and "
                    "readiness would ask it instead of TF Serving: stop it or choose other --port/--rest_api_port"
                ) from None


def fallback_path(path: Path | None) -> Path | None:
    """What deploykit's own server serves in place of ``path``: a deployment's ``models/`` directory."""
    if path is None:
        return None
    return Path(path) / deployment.MODELS_DIR if deployment.is_deployment(path) else Path(path)


class ServerProcess:
    """A launched server: its output forwarded line by line (prefixed), its last lines kept."""

    def __init__(self, argv: list[str], label: str, cleanup: list[str] | None = None) -> None:
        self.argv, self.label, self.cleanup = argv, label, cleanup
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._lock = threading.Lock()
        self._pumps: list[threading.Thread] = []
        self.process: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        try:
            # Own session: a terminal's Ctrl-C reaches only us, and we stop the server in order.
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                bufsize=1,
                start_new_session=True,
            )
        except OSError as exc:
            raise LaunchError(f"cannot start {self.argv[0]}: {exc}") from exc
        for stream, sink in ((self.process.stdout, sys.stdout), (self.process.stderr, sys.stderr)):
            pump = threading.Thread(target=self._pump, args=(stream, sink), daemon=True)
            pump.start()
            self._pumps.append(pump)
        return self

    def _pump(self, stream, sink) -> None:
        for line in stream:
            line = line.rstrip("\n")
            with self._lock:
                self.tail.append(line)
                print(f"[{self.label}] {line}", file=sink, flush=True)

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def last_lines(self) -> str:
        for pump in self._pumps:  # the process is gone: let the pumps drain its last output
            pump.join(5)
        with self._lock:
            return "\n".join(f"  {line}" for line in self.tail) or "  (no output)"

    def stop(self, grace: float = STOP_GRACE) -> int:
        """SIGTERM, SIGKILL after ``grace`` seconds; returns the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                say(f"{self.label} still running {grace:g} s after SIGTERM: SIGKILL")
                self.process.kill()
                self.process.wait()
        if self.cleanup:  # e.g. remove a container the killed `docker run` client left behind
            subprocess.run(self.cleanup, capture_output=True, timeout=60, check=False)
        for pump in self._pumps:
            pump.join(5)
        return self.process.returncode


def wait_ready(
    server: ServerProcess, address: str, models: list[str], stopping: threading.Event, timeout: float = READY_TIMEOUT
) -> bool:
    """Wait until every model is AVAILABLE, no version still loading (GetModelStatus over gRPC).

    Returns False when ``stopping`` was set first. Raises :class:`LaunchError` when the server exits
    or a version ends in error, :class:`Unreachable` after ``timeout``.
    """
    from deploykit.client import Client

    deadline = time.monotonic() + timeout
    pending, last = list(models), "no answer yet"
    with Client(f"grpc://{address}", timeout=2.0) as client:
        while pending:
            if stopping.is_set():
                return False
            if server.returncode is not None:
                raise LaunchError(
                    f"{server.label} exited with code {server.returncode} before it was ready; "
                    f"its last lines:\n{server.last_lines()}"
                )
            if time.monotonic() > deadline:
                raise Unreachable(f"{server.label} at {address} not ready after {timeout:g} s ({last})")
            try:
                found = client.status(pending[0], timeout=1.0)
            except (Unreachable, ModelNotFound) as exc:
                last = str(exc)
            else:
                failed = [s for s in found if s.state == "END" and s.error_code != "OK"]
                if failed:
                    raise LaunchError(
                        f"{pending[0]} failed to load in {server.label}: "
                        + "; ".join(f"version {s.version}: {s.error_code} {s.error_message}" for s in failed)
                    )
                loading = [s for s in found if s.state in ("START", "LOADING")]
                if not loading and any(s.state == "AVAILABLE" for s in found):
                    pending.pop(0)
                    continue
                last = f"{pending[0]}: " + ", ".join(f"v{s.version} {s.state}" for s in found)
            stopping.wait(0.2)
    return True


@dataclass(frozen=True)
class LaunchRequest:
    """``deploykit serve`` options that matter to the launcher.

    TF Serving flags of ``serve`` are passed on under their names; the others are refused with
    :class:`UsageError` when TF Serving runs (see :func:`check_request` and :func:`check_for_tf_serving`).
    """

    engine: str
    path: Path | None
    model_name: str | None = None
    host: str = "127.0.0.1"
    grpc_port: int = 8500
    rest_port: int = 8501
    binary: str | None = None
    docker: bool = False
    image: str = DEFAULT_IMAGE
    model_config_file: Path | None = None
    model_config_file_poll_wait_seconds: float = 0
    file_system_poll_wait_seconds: float = 1
    version_policy: VersionPolicy = VersionPolicy()
    #: ``(model or None, label, version)`` from :func:`deploykit.server.model_config.parse_label`.
    labels: tuple[tuple[str | None, str, int], ...] = ()
    allow_version_labels_for_unavailable_models: bool = False
    enable_batching: bool = False
    batching_parameters_file: Path | None = None
    monitoring_config_file: Path | None = None
    #: Any of the ``--ssl_*`` flags was given.
    tls: bool = False
    workers: int = 1
    grpc_socket_path: Path | None = None
    grpc_channel_arguments: str = ""
    enable_serialization_as_tensor_content: bool = False
    rest_api_enable_cors_support: bool = False


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


def check_request(request: LaunchRequest) -> None:
    """Refuse flag combinations no engine can honour (before an engine is chosen)."""
    if (request.path is None) == (request.model_config_file is None):
        raise UsageError(
            "give one of a model repository (PATH or --model_base_path) or --model_config_file"
            if request.path is None
            else "give either PATH/--model_base_path or --model_config_file, not both"
        )
    if request.path is not None and deployment.is_deployment(request.path):
        given = [
            flag
            for flag, value in (
                ("--version-policy", request.version_policy != VersionPolicy()),
                ("--label", bool(request.labels)),
                ("--enable_batching", request.enable_batching),
                ("--batching_parameters_file", request.batching_parameters_file is not None),
                ("--monitoring_config_file", request.monitoring_config_file is not None),
            )
            if value
        ]
        if given:
            raise UsageError(
                f"{', '.join(given)}: deployment {request.path} fixes version policies and labels (models.config), "
                "batching and monitoring; write a new one with deploykit tfserving-deploy "
                "--version-policy/--label/--batching"
            )


def check_for_tf_serving(request: LaunchRequest) -> None:
    """Refuse the ``serve`` flags TF Serving has no equivalent for (when TF Serving is to run)."""
    if request.workers != 1:
        raise UsageError(
            f"--workers {request.workers}: TensorFlow Serving is one process with its own thread pools "
            "(it has no such flag); drop --workers, or use --engine deploykit"
        )
    if request.tls:
        raise UsageError(
            "the --ssl_* flags with --engine tfserving: the launcher checks readiness over plaintext gRPC; run "
            "tensorflow_model_server --ssl_config_file=FILE yourself (see deploykit tfserving-deploy), "
            "or use --engine deploykit"
        )
    if request.model_config_file is not None and (request.labels or request.version_policy != VersionPolicy()):
        raise UsageError(
            f"--version-policy/--label with --model_config_file: TF Serving reads them from the file "
            f"(model_version_policy, version_labels per model); edit {request.model_config_file}"
        )
    for flag, value in (
        ("--model_config_file_poll_wait_seconds", request.model_config_file_poll_wait_seconds),
        ("--file_system_poll_wait_seconds", request.file_system_poll_wait_seconds),
    ):
        if value != int(value):
            raise UsageError(f"{flag} {value:g}: TensorFlow Serving takes whole seconds")
    files = [
        flag
        for flag, value in (
            ("--model_config_file", request.model_config_file),
            ("--batching_parameters_file", request.batching_parameters_file),
            ("--monitoring_config_file", request.monitoring_config_file),
            ("--grpc_socket_path", request.grpc_socket_path),
        )
        if value is not None
    ]
    if request.docker and files:
        raise UsageError(
            f"{', '.join(files)} with --docker: the container sees only the served directory, not host files; "
            "write a deployment with deploykit tfserving-deploy (it holds models.docker.config, batching and "
            "monitoring files) and serve that"
        )


def _pass_through(request: LaunchRequest, flags: ServerFlags) -> ServerFlags:
    """``flags`` plus the TF Serving flags ``serve`` was given under the same names."""
    changes = {
        "enable_batching": request.enable_batching,
        "model_config_file_poll_wait_seconds": int(request.model_config_file_poll_wait_seconds),
        "file_system_poll_wait_seconds": int(request.file_system_poll_wait_seconds),
        "allow_version_labels_for_unavailable_models": request.allow_version_labels_for_unavailable_models,
        "grpc_channel_arguments": request.grpc_channel_arguments,
        "enable_serialization_as_tensor_content": request.enable_serialization_as_tensor_content,
        "rest_api_enable_cors_support": request.rest_api_enable_cors_support,
    }
    if request.batching_parameters_file is not None:
        changes["batching_parameters_file"] = str(Path(request.batching_parameters_file).resolve())
    if request.monitoring_config_file is not None:
        changes["monitoring_config_file"] = str(Path(request.monitoring_config_file).resolve())
    if request.grpc_socket_path is not None:
        changes["grpc_socket_path"] = str(Path(request.grpc_socket_path).resolve())
    return dataclasses.replace(flags, **changes)


def launch(request: LaunchRequest) -> Fallback | None:
    """Serve with TF Serving until SIGINT/SIGTERM (returns None), or return a :class:`Fallback`."""
    check_request(request)
    choice = choose_engine(request.engine, binary=request.binary, docker=request.docker)
    if choice.kind == "deploykit":
        return _fallback(request, choice.reason)
    if not request.grpc_port:
        raise UsageError("TF Serving needs its gRPC port (--port, not 0): readiness is checked over gRPC")
    check_for_tf_serving(request)
    check_ports_free(_local(request.host), [p for p in (request.grpc_port, request.rest_port) if p])
    target = resolve_target(request)
    try:
        not_served = target.unservable or (target.skipped if request.engine == "auto" else [])
        if request.engine == "auto" and not_served:
            return _fallback(request, f"TF Serving cannot serve everything in {_source(request)} ({_list(not_served)})")
        if target.unservable:
            raise UsageError(
                f"{request.model_config_file} selects versions TF Serving cannot load ({_list(target.unservable)}); "
                "change their version policies, or use --engine auto or deploykit"
            )
        for skipped in target.skipped:
            say(f"skipped {skipped}")
        target.host_flags = _pass_through(request, target.host_flags)
        if target.container_flags is not None:
            target.container_flags = _pass_through(request, target.container_flags)
        return _run(request, choice, target)
    finally:
        if target.temporary is not None:
            shutil.rmtree(target.temporary, ignore_errors=True)


def _source(request: LaunchRequest) -> Path:
    return request.path if request.model_config_file is None else request.model_config_file


def _list(skipped: list[deployment.Skipped]) -> str:
    return "; ".join(map(str, skipped[:3])) + ("; ..." if len(skipped) > 3 else "")


def _local(host: str) -> str:
    """The address to reach a server bound to ``host`` from this machine."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _fallback(request: LaunchRequest, reason: str) -> Fallback:
    line = f"{PREFIX} engine deploykit (deploykit's own TF-Serving-compatible server), not TensorFlow Serving: {reason}"
    path = request.path
    if path is None or not deployment.is_deployment(path):
        return Fallback(fallback_path(path), line)
    batching = Path(path) / deployment.BATCHING_FILE
    return Fallback(
        fallback_path(path),
        line,
        Path(path) / deployment.HOST_CONFIG,
        batching if batching.is_file() else None,
        Path(path) / deployment.MONITORING_FILE,
    )


def _run(request: LaunchRequest, choice: EngineChoice, target: ServingTarget) -> None:
    if choice.kind == "docker":
        name = f"deploykit-tfserving-{os.getpid()}"
        argv = docker_command(
            str(target.mount),
            target.container_flags,
            image=request.image,
            grpc_port=request.grpc_port,
            rest_port=request.rest_port,
            publish_host=request.host,
            name=name,
        )
        server = ServerProcess(argv, f"docker {request.image}", cleanup=["docker", "rm", "-f", name])
        engine = f"TensorFlow Serving in Docker ({request.image})"
    else:
        argv = binary_command(choice.binary, target.host_flags)
        server = ServerProcess(argv, BINARY)
        engine = f"TensorFlow Serving ({choice.binary}; listens on all interfaces, --host does not apply)"
    say(f"engine {engine}; it does not name itself in responses (load-test reports: not self-reported)")
    say(f"running: {shell_line(argv)}")

    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        local = _local(request.host)
        if wait_ready(server, f"{local}:{request.grpc_port}", target.models, stopping):
            rest = f"REST {local}:{request.rest_port}" if request.rest_port else "REST off"
            models = ", ".join(target.models)
            say(f"TensorFlow Serving ready on gRPC {local}:{request.grpc_port}, {rest}; models: {models}")
            while not stopping.is_set() and server.returncode is None:
                stopping.wait(0.2)
            if not stopping.is_set():
                raise LaunchError(
                    f"{server.label} exited unexpectedly with code {server.returncode}; "
                    f"its last lines:\n{server.last_lines()}"
                )
        say(f"stopping {server.label} (SIGTERM; SIGKILL after {STOP_GRACE:g} s)")
    finally:
        if server.process is not None:  # also when failing: never leave the server running
            say(f"{server.label} stopped (exit status {server.stop()})")
        for sig, handler in previous.items():
            signal.signal(sig, handler)
