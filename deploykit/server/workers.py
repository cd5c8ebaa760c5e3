"""Running the server as a process: one, or ``--workers N`` sharing the ports under a supervisor.

:func:`serve_until_signal` runs one :class:`~deploykit.server.server.Server` until SIGTERM/SIGINT,
then drains it (health NOT_SERVING, new requests refused, in-flight ones finished within the grace
period). :class:`Supervisor` starts N such processes sharing the ports: gRPC with ``SO_REUSEPORT``
(gRPC binds its own port: each worker has its own accept queue, the kernel spreads connections over
them), REST on listening sockets the supervisor opens and hands to every worker (one accept queue,
so connections waiting in it outlive a worker that is killed: another worker accepts them). Workers
are *spawned* (fresh interpreters): no gRPC object, thread or lock of the supervisor is inherited.
The supervisor restarts a worker that dies, forwards SIGTERM/SIGINT to all workers so they drain,
and points prometheus-client's multiprocess mode at a fresh directory so a scrape answered by any
worker counts every worker's requests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from pathlib import Path

from deploykit.errors import UsageError
from deploykit.ports import free_port
from deploykit.runtimes.threads import WORKERS_ENV
from deploykit.server import metrics
from deploykit.server.closing import refuse_new_connections
from deploykit.server.server import Server, ServerConfig

log = logging.getLogger(__name__)

#: Time a process gets beyond the grace period to close before it exits regardless.
_EXIT_MARGIN_S = 2.0
#: Time a worker gets beyond the grace period to close before the supervisor kills it (after the
#: worker's own exit margin).
_KILL_MARGIN_S = 5.0
#: How often the supervisor looks at its workers when nothing happens.
_POLL_S = 0.5


def describe_models(server: Server) -> str:
    """``name vN (format)`` for every version, ``FAILED`` for those that did not load."""
    return ", ".join(
        f"{v.name} v{v.version} ({v.format})" if v.available else f"{v.name} v{v.version} FAILED"
        for v in (server.service.registry if server.service is not None else ())
    )


def serve_until_signal(config: ServerConfig, on_ready: Callable[[Server], None], on_stop: Callable[[], None]) -> None:
    """Start a server, call ``on_ready``, serve until SIGTERM or SIGINT, then stop it gracefully."""

    async def run() -> None:
        server = Server(config)
        await server.start()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        on_ready(server)
        await stopping.wait()
        on_stop()
        # A computation that outlives the grace period cannot be interrupted (framework calls run
        # in threads): the process then exits anyway, with code 1, shortly after the grace period.
        watchdog = threading.Timer(config.grace_period_s + _EXIT_MARGIN_S, _overran, (config.grace_period_s,))
        watchdog.daemon = True
        watchdog.start()
        await server.stop(config.grace_period_s)
        watchdog.cancel()

    asyncio.run(run())


def _overran(grace: float) -> None:
    log.error("requests still running %g s after the %g s grace period: exiting without them", _EXIT_MARGIN_S, grace)
    logging.shutdown()
    os._exit(1)


def _worker_main(config: ServerConfig, index: int, log_level: str, ready: multiprocessing.SimpleQueue) -> None:
    """A worker process: serve until told to stop; report readiness (or the start failure) first."""
    logging.basicConfig(
        level=log_level.upper(),
        format=f"%(asctime)s %(levelname)s worker {index} pid %(process)d %(name)s: %(message)s",
    )
    try:
        serve_until_signal(
            config,
            on_ready=lambda server: ready.put((index, os.getpid(), describe_models(server), None)),
            on_stop=lambda: log.info("draining"),
        )
    except UsageError as exc:
        ready.put((index, os.getpid(), "", str(exc)))
        raise SystemExit(exc.exit_code) from None


def _listen(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for ``host``:``port`` on each address it resolves to (as asyncio binds a
    server); port 0 picks one free port for all of them."""
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        ):
            if sockets and port == 0:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(socket.SOMAXCONN)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Supervisor:
    """N worker processes serving ``config`` on shared ports; see the module docstring."""

    def __init__(self, config: ServerConfig, workers: int, log_level: str = "info") -> None:
        if workers < 1:
            raise UsageError(f"--workers must be at least 1, got {workers}")
        if config.preloaded:
            raise UsageError("preloaded model versions cannot be shared with worker processes")
        self.workers = workers
        self.log_level = log_level
        # Several workers cannot each bind port 0 and share the result: one is picked here. Another
        # process could take it before the workers bind; they then fail to start and the supervisor says so.
        self.config = dataclasses.replace(
            config,
            reuse_port=True,
            grpc_port=free_port(config.host) if config.grpc_port == 0 else config.grpc_port,
        )
        self._context = multiprocessing.get_context("spawn")
        self._ready = self._context.SimpleQueue()
        self._processes: list[multiprocessing.process.BaseProcess] = []
        self._stopping = False
        #: PIDs of workers that reported serving: a worker that dies before that is not restarted
        #: (a start failure such as a vanished port or model repeats on every restart).
        self._serving: set[int] = set()
        self._metrics_dir: Path | None = None
        self._own_metrics_dir = False

    # -- start
    def _prepare_metrics_dir(self) -> None:
        given = os.environ.get(metrics.MULTIPROC_ENV)
        self._own_metrics_dir = not given
        self._metrics_dir = Path(given) if given else Path(tempfile.mkdtemp(prefix="deploykit-metrics-"))
        metrics.prepare_multiprocess_dir(self._metrics_dir)
        # Set before the first worker starts: spawned workers inherit it and prometheus-client
        # reads it when they first import it.
        os.environ[metrics.MULTIPROC_ENV] = str(self._metrics_dir)
        # Runtimes size their thread pools as cores // workers (deploykit.runtimes.threads).
        os.environ[WORKERS_ENV] = str(self.workers)

    def _open_rest_port(self) -> None:
        """Listen on the REST port here, for every worker (see the module docstring)."""
        config = self.config
        if config.rest_port is None:
            return
        try:
            sockets = _listen(config.host, config.rest_port)
        except OSError as exc:
            raise UsageError(f"cannot listen for REST on {config.host}:{config.rest_port}: {exc}") from exc
        self.config = dataclasses.replace(config, rest_sockets=sockets, rest_port=sockets[0].getsockname()[1])

    def _spawn(self, index: int) -> multiprocessing.process.BaseProcess:
        process = self._context.Process(
            target=_worker_main,
            args=(self.config, index, self.log_level, self._ready),
            name=f"deploykit-worker-{index}",
        )
        process.start()
        return process

    def start(self, timeout: float = 600.0) -> list[tuple[int, str]]:
        """Start every worker; return (pid, models) per worker once all are serving.

        A worker that fails to start stops the others and raises its error.
        """
        self._prepare_metrics_dir()
        self._open_rest_port()
        self._processes = [self._spawn(i) for i in range(self.workers)]
        started: dict[int, tuple[int, str]] = {}
        deadline = time.monotonic() + timeout
        while len(started) < self.workers:
            if time.monotonic() > deadline:
                self._abort()
                raise UsageError(f"workers not ready after {timeout:g} s")
            while not self._ready.empty():
                index, pid, models, error = self._ready.get()
                if error is not None:
                    self._abort()
                    raise UsageError(f"worker {index} could not start: {error}")
                started[index] = (pid, models)
                self._serving.add(pid)
            for index, process in enumerate(self._processes):
                if index not in started and not process.is_alive() and self._ready.empty():
                    self._abort()
                    raise UsageError(f"worker {index} exited with code {process.exitcode} while starting")
            wait([p.sentinel for p in self._processes], timeout=0.1)
        return [started[i] for i in range(self.workers)]

    # -- run
    def _forward(self, signum: int, _frame=None) -> None:
        """SIGTERM/SIGINT to the supervisor: every worker drains; none is restarted any more."""
        if not self._stopping:
            log.info("supervisor: %s, draining %d workers", signal.Signals(signum).name, self.workers)
            for sock in self.config.rest_sockets:  # every worker stops: no new connection joins the queue
                refuse_new_connections(sock)
        self._stopping = True
        for process in self._processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    def run(self) -> int:
        """Supervise until a signal; restart crashed workers. Exit code: 0 when every worker drained cleanly."""
        previous = {sig: signal.signal(sig, self._forward) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            return self._supervise()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._cleanup()

    def _supervise(self) -> int:
        kill_at: float | None = None
        failed = False
        reaped: set[int] = set()
        while True:
            self._ready_messages()
            for index, process in enumerate(self._processes):
                if process.exitcode is None or process.pid is None or process.pid in reaped:  # running, or handled
                    continue
                reaped.add(process.pid)
                metrics.worker_exited(process.pid)
                if self._stopping:
                    # A replacement still starting when the stop came ends by the SIGTERM: nothing to drain.
                    starting = process.pid not in self._serving and process.exitcode == -signal.SIGTERM
                    failed |= process.exitcode != 0 and not starting
                elif process.pid not in self._serving:
                    log.error(
                        "worker %d (pid %d) died before serving (exit code %s)", index, process.pid, process.exitcode
                    )
                    self._forward(signal.SIGTERM)  # it would fail the same way again: stop everything
                    failed = True
                else:
                    log.warning(
                        "worker %d (pid %d) died (exit code %s); restarting it", index, process.pid, process.exitcode
                    )
                    self._processes[index] = self._spawn(index)
                    process.close()  # the replaced one: release its handles
            alive = [p for p in self._processes if p.is_alive()]
            if self._stopping:
                if not alive:
                    return 1 if failed else 0
                kill_at = kill_at or time.monotonic() + self.config.grace_period_s + _KILL_MARGIN_S
                if time.monotonic() > kill_at:
                    for process in alive:
                        log.error("worker pid %d did not stop within the grace period: killed", process.pid)
                        process.kill()
                    failed = True
            wait([p.sentinel for p in alive], timeout=_POLL_S)

    def _ready_messages(self) -> None:
        while not self._ready.empty():
            index, pid, _, error = self._ready.get()
            if error is None:
                self._serving.add(pid)
                log.info("worker %d (pid %d) serving", index, pid)
            else:
                log.error("worker %d (pid %d) could not start: %s", index, pid, error)

    def _abort(self) -> None:
        self._stopping = True
        for process in self._processes:
            if process.is_alive():
                process.kill()
                process.join()
        self._cleanup()

    def _cleanup(self) -> None:
        for sock in self.config.rest_sockets:
            sock.close()
        if self._own_metrics_dir and self._metrics_dir is not None:
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
            self._metrics_dir = None
