"""Running and watching a launched server process (the real TF Serving or Triton, or ``run.sh``).

:class:`ServerProcess` starts it in its own session and forwards its output line by line, as
:class:`~deploykit.serving.events.Event` s, keeping the last lines to explain a death.
:func:`wait_ready` asks it over gRPC until every model is AVAILABLE (TF Serving's readiness);
:func:`serve_until_signal` waits for any readiness check, serves until SIGINT/SIGTERM and stops it with
SIGTERM, then SIGKILL after a grace period. Before launching,
:func:`check_ports_free` makes sure nothing else answers where readiness will ask.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable

from deploykit.errors import LaunchError, ModelNotFound, Unreachable, UsageError
from deploykit.serving.events import Event, Listener, log_event

#: How long the initial load may take (TF Serving loads, and warms up, every model before AVAILABLE).
READY_TIMEOUT = 300.0
#: SIGTERM, then this many seconds, then SIGKILL.
STOP_GRACE = 10.0
#: Log lines kept to explain a server that died.
TAIL_LINES = 30


class ServerProcess:
    """A launched server: its output forwarded line by line (prefixed ``[label]``), its last lines kept."""

    def __init__(
        self, argv: list[str], label: str, cleanup: list[str] | None = None, on_event: Listener = log_event
    ) -> None:
        self.argv, self.label, self.cleanup, self.on_event = argv, label, cleanup, on_event
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
        for stream, is_stderr in ((self.process.stdout, False), (self.process.stderr, True)):
            pump = threading.Thread(target=self._pump, args=(stream, is_stderr), daemon=True)
            pump.start()
            self._pumps.append(pump)
        return self

    def _pump(self, stream, is_stderr: bool) -> None:
        for line in stream:
            line = line.rstrip("\n")
            with self._lock:  # one line at a time, in order, and the tail in step with the output
                self.tail.append(line)
                self.on_event(Event("output", f"[{self.label}] {line}", stderr=is_stderr))

    def _started(self) -> subprocess.Popen:
        if self.process is None:
            raise RuntimeError(f"{self.label} was not started")  # a programming error: start() first
        return self.process

    @property
    def returncode(self) -> int | None:
        return self._started().poll()

    def last_lines(self) -> str:
        for pump in self._pumps:  # the process is gone: let the pumps drain its last output
            pump.join(5)
        with self._lock:
            return "\n".join(f"  {line}" for line in self.tail) or "  (no output)"

    def died_before_ready(self) -> LaunchError:
        """The error for a server that exited while its readiness was awaited."""
        return LaunchError(
            f"{self.label} exited with code {self.returncode} before it was ready; its last lines:\n{self.last_lines()}"
        )

    def stop(self, grace: float = STOP_GRACE) -> int:
        """SIGTERM, SIGKILL after ``grace`` seconds; returns the exit status."""
        process = self._started()
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                self.on_event(Event("note", f"{self.label} still running {grace:g} s after SIGTERM: SIGKILL"))
                process.kill()
                process.wait()
        if self.cleanup:  # e.g. remove a container the killed `docker run` client left behind
            subprocess.run(self.cleanup, capture_output=True, timeout=60, check=False)
        for pump in self._pumps:
            pump.join(5)
        return process.returncode


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
                raise server.died_before_ready()
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


#: A readiness check: True once the server is ready, False if ``stopping`` was set first.
ReadyCheck = Callable[[ServerProcess, threading.Event], bool]


def run_until_signal(server: ServerProcess, address: str, models: list[str], ready: str, on_event: Listener) -> None:
    """:func:`serve_until_signal` with TF Serving's readiness: every model AVAILABLE over gRPC at ``address``."""
    serve_until_signal(server, lambda srv, stopping: wait_ready(srv, address, models, stopping), ready, on_event)


def serve_until_signal(server: ServerProcess, is_ready: ReadyCheck, ready: str, on_event: Listener) -> None:
    """Start ``server``, wait until ``is_ready`` (then report ``ready``), serve until SIGINT/SIGTERM,
    stop it. A server that exits on its own fails with :class:`LaunchError`; it never outlives this call."""
    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        if is_ready(server, stopping):
            on_event(Event("ready", ready))
            while not stopping.is_set() and server.returncode is None:
                stopping.wait(0.2)
            if not stopping.is_set():
                raise LaunchError(
                    f"{server.label} exited unexpectedly with code {server.returncode}; "
                    f"its last lines:\n{server.last_lines()}"
                )
        on_event(Event("stopping", f"stopping {server.label} (SIGTERM; SIGKILL after {STOP_GRACE:g} s)"))
    finally:
        if server.process is not None:  # also when failing: never leave the server running
            on_event(Event("stopped", f"{server.label} stopped (exit status {server.stop()})"))
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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


def local_address(host: str) -> str:
    """The address to reach a server bound to ``host`` from this machine."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
