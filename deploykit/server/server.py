"""The server process: load models, then open gRPC and REST on one asyncio event loop.

:class:`Server` has an explicit ``start()``/``stop()`` so tests and embedding applications drive it;
:class:`ServerThread` runs one in a background thread for synchronous callers. Ports open only
after the initial models have loaded (a model that failed to load is reported in status and the
logs while the others serve).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from deploykit.errors import FailedPrecondition, UsageError
from deploykit.protocol import grpc_paths, v2_paths
from deploykit.server import model_config, native_dataplane
from deploykit.server.admin import AdminPolicy
from deploykit.server.admission import Admission
from deploykit.server.closing import close_rest_listeners, stop_grpc
from deploykit.server.config import ServerConfig
from deploykit.server.core import InferenceService
from deploykit.server.grpc_frontend import GrpcFrontend
from deploykit.server.manager import ModelManager
from deploykit.server.rest_frontend import RUNNER_OPTIONS, RestFrontend
from deploykit.server.v2_grpc import V2Grpc
from deploykit.server.v2_model import V2Service
from deploykit.server.v2_rest import V2Rest

log = logging.getLogger(__name__)

T = TypeVar("T")


class Server:
    """One serving process: an :class:`InferenceService` behind gRPC and REST front ends, its
    models kept up to date by a :class:`ModelManager`."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.service: InferenceService | None = None
        self.manager: ModelManager | None = None
        self.grpc_port: int | None = None
        self.rest_port: int | None = None
        self._grpc: grpc.aio.Server | native_dataplane.NativeGrpcServer | None = None
        self._rest: web.AppRunner | None = None
        self._health = health.aio.HealthServicer()
        self._pollers: list[asyncio.Task] = []
        self.admission = Admission()
        self.v2: V2Service | None = None  # the Open Inference Protocol side, on the same ports
        self.admin = AdminPolicy()

    async def start(self) -> None:
        """Load the initial models, then open the ports. Returns when the server accepts requests."""
        config = self.config
        models, config_text = config.initial_models()  # a bad config fails here, before anything loads
        self.admin = config.admin_policy(models)
        self.service = InferenceService(config.preloaded, threads=config.inference_threads, batching=config.batching)
        self.manager = ModelManager(
            self.service,
            {
                "providers": config.providers,
                "intra_op_threads": config.intra_op_threads,
                "inter_op_threads": config.inter_op_threads,
            },
            warmup_requests=config.warmup_requests,
            allow_labels_for_unavailable=config.allow_labels_for_unavailable,
        )
        self.v2 = V2Service(self.service, self.manager, admin=self.admin)
        try:
            if models:
                await self.manager.apply(models)
            if config.grpc_port is not None or config.grpc_socket_path is not None:
                await self._start_grpc()
            if config.rest_port is not None:
                await self._start_rest()
        except BaseException as exc:
            await self.stop(grace=0)  # ports, threads and models must not outlive a failed start
            if isinstance(exc, FailedPrecondition):  # a label on a version that did not load
                raise UsageError(str(exc)) from None
            raise
        serving = health_pb2.HealthCheckResponse.SERVING
        for name in ("", grpc_paths.PREDICTION_SERVICE, grpc_paths.MODEL_SERVICE, v2_paths.SERVICE):
            await self._health.set(name, serving)
        if config.file_system_poll_seconds > 0:  # also with no models yet: a reload may add some
            self._pollers.append(asyncio.create_task(self._poll_repository(config.file_system_poll_seconds)))
        if config.model_config_file is not None and config.model_config_poll_seconds > 0:
            poller = self._poll_config_file(config.model_config_poll_seconds, config_text)
            self._pollers.append(asyncio.create_task(poller))
        log.info(
            "serving %s on gRPC %s:%s, REST %s:%s",
            ", ".join(self.service.registry.model_names()),
            config.host,
            self.grpc_port,
            config.host,
            self.rest_port,
        )

    async def _poll_repository(self, period: float) -> None:
        assert self.manager is not None  # started: pollers run after start()
        while True:
            await asyncio.sleep(period)
            try:
                await self.manager.poll()
            except FailedPrecondition as exc:
                log.error("%s", exc)
            except Exception:  # polling must survive anything a file system can do
                log.exception("polling the model base paths failed")

    async def _poll_config_file(self, period: float, last: str | None) -> None:
        """Re-read the config file; apply it when its text differs from ``last``, the text applied
        (TF Serving replaces the whole model set)."""
        path = self.config.model_config_file
        assert path is not None and self.manager is not None  # polled only with a config file, after start()
        while True:
            await asyncio.sleep(period)
            try:
                text = path.read_text()
            except OSError as exc:
                log.error("cannot read --model_config_file %s: %s; keeping the current models", path, exc.strerror)
                continue
            if text == last:
                continue
            last = text
            try:
                models = model_config.parse(text, str(path))
            except UsageError as exc:  # the message starts with TF Serving's "Error parsing text-format ..."
                log.error("%s; keeping the current models", exc)
                continue
            log.info("--model_config_file %s changed: applying %d models", path, len(models))
            try:
                await self.manager.apply(models)
            except FailedPrecondition as exc:
                log.error("%s", exc)
            except Exception:  # polling must survive anything a file system can do
                log.exception("applying --model_config_file %s failed", path)

    async def _start_grpc(self) -> None:
        config = self.config
        # called by start(), after it created the service, the manager and the v2 side
        assert self.service is not None and self.manager is not None and self.v2 is not None
        options: dict[str, int | str] = {
            "grpc.max_receive_message_length": config.max_message_bytes,
            "grpc.max_send_message_length": config.max_message_bytes,
            # gRPC turns SO_REUSEPORT on by default on Linux, which would let a second server
            # silently share a port that is in use; only workers of one server share on purpose.
            "grpc.so_reuseport": int(config.reuse_port),
            **config.grpc_connection_options(),
        }
        options.update(config.grpc_channel_arguments)
        frontend = GrpcFrontend(
            self.service,
            self.manager,
            self.admission,
            tensor_content=config.tensor_content_outputs,
            max_tensor_bytes=config.max_tensor_bytes,
            admin=self.admin,
        )
        v2 = V2Grpc(self.v2, self.admission)  # the Open Inference Protocol, same port
        if native_dataplane.resolve(config.dataplane) == "native":
            self._grpc, self.grpc_port = await native_dataplane.start_for(config, frontend, self._health, options, v2)
            return
        self._grpc = server = grpc.aio.server(options=list(options.items()))  # stop() closes it on a failure
        server.add_generic_rpc_handlers(frontend.handlers())
        server.add_generic_rpc_handlers(v2.handlers())
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        if config.grpc_port is not None:
            address = f"{config.host}:{config.grpc_port}"
            try:
                if config.tls is None:
                    self.grpc_port = server.add_insecure_port(address)
                else:
                    self.grpc_port = server.add_secure_port(address, config.tls.grpc_credentials())
            except RuntimeError as exc:
                raise UsageError(f"cannot listen for gRPC on {address}: {exc}") from exc
        if config.grpc_socket_path is not None:
            try:
                server.add_insecure_port(f"unix:{config.grpc_socket_path}")
            except RuntimeError as exc:
                raise UsageError(f"cannot listen for gRPC on unix socket {config.grpc_socket_path}: {exc}") from exc
        await server.start()

    async def _start_rest(self) -> None:
        config = self.config
        assert self.service is not None and self.v2 is not None  # called by start(), after it created both
        frontend = RestFrontend(
            self.service,
            config.max_message_bytes,
            self.admission,
            config.rest_timeout_s,
            config.metrics_path,
            cors=config.rest_cors,
            v2=V2Rest(self.v2, self.admission, config.rest_timeout_s),
            max_tensor_bytes=config.max_tensor_bytes,
            max_inflated_bytes=config.max_inflated_body_bytes,
            body_timeout_s=config.rest_body_timeout_s,
        )
        self._rest = web.AppRunner(
            frontend.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1.0,
            keepalive_timeout=config.rest_idle_timeout_s,
            **RUNNER_OPTIONS,
        )
        await self._rest.setup()
        ssl_context = config.tls.ssl_context() if config.tls else None
        sites: list[web.BaseSite] = [
            web.SockSite(self._rest, sock, ssl_context=ssl_context) for sock in config.rest_sockets
        ] or [
            web.TCPSite(
                self._rest, config.host, config.rest_port, ssl_context=ssl_context, reuse_port=config.reuse_port or None
            )
        ]
        try:
            for site in sites:
                await site.start()
        except OSError as exc:
            raise UsageError(f"cannot listen for REST on {self.config.host}:{self.config.rest_port}: {exc}") from exc
        self.rest_port = self._rest.addresses[0][1]  # the real port when 0 was asked (the runner's only site)

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, refuse new requests (UNAVAILABLE / 503), let the ones in flight finish
        for up to ``grace`` seconds (default: the config's grace period), then close."""
        grace = self.config.grace_period_s if grace is None else grace
        deadline = time.monotonic() + grace
        for task in self._pollers:  # no model changes while shutting down
            task.cancel()
        await asyncio.gather(*self._pollers, return_exceptions=True)
        await self._health.enter_graceful_shutdown()
        if not await self.admission.drain(grace):
            left = self.admission.in_flight
            log.warning("%d requests still in flight after the %g s grace period: cancelled", left, grace)
        # Then the ports close (deploykit.server.closing says how and why).
        if self._rest is not None:
            await close_rest_listeners(self._rest, deadline, shared=bool(self.config.rest_sockets))
        if self._grpc is not None:
            await stop_grpc(self._grpc, self.admission, deadline)
        if self._rest is not None:
            await self._rest.cleanup()
        if self.manager is not None:
            self.manager.close()
        if self.service is not None:
            self.service.close()


class ServerThread:
    """Run a :class:`Server` on its own event loop in a daemon thread (for synchronous callers)."""

    def __init__(self, config: ServerConfig) -> None:
        self.server = Server(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="deploykit-server", daemon=True)

    def start(self, timeout: float = 120.0) -> ServerThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout)
        return self

    def stop(self, grace: float | None = None) -> None:
        grace = self.server.config.grace_period_s if grace is None else grace
        asyncio.run_coroutine_threadsafe(self.server.stop(grace), self._loop).result(grace + 30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the server's event loop (where its schedulers and versions live) from
        another thread; ``.result(timeout)`` waits for it, ``asyncio.wrap_future`` awaits it."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    @property
    def grpc_target(self) -> str:
        scheme = "grpcs" if self.server.config.tls else "grpc"
        return f"{scheme}://{self.server.config.host}:{self.server.grpc_port}"

    @property
    def rest_target(self) -> str:
        scheme = "https" if self.server.config.tls else "http"
        return f"{scheme}://{self.server.config.host}:{self.server.rest_port}"
