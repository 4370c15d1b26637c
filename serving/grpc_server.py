"""The ``grpc.aio`` bootstrap every meshplane server uses: one place for limits, health,
reflection, keepalive, TLS and an orderly shutdown. Every handler registered through it sits
behind `serving.guarded_handlers.RequestGuard` (request bounds, capped status details, no
UNKNOWN), the server's outermost interceptor.

Shutdown order (tested): health goes NOT_SERVING first so load balancers and the coordinator
stop routing here (health Watch streams receive it and end), then the server stops with a grace
period (in-flight calls finish, new ones are refused), then shutdown callbacks run (e.g. the
adapter records running operations as interrupted), then the plaintext health port closes (when
configured; it reports NOT_SERVING until then), and finally owned background tasks are
cancelled.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import structlog
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from serving import audit_log
from serving.background_tasks import BackgroundTasks
from serving.guarded_handlers import RequestGuard
from serving.health import HealthService
from serving.health_listener import HealthListener
from serving.message_limits import MAX_MESSAGE_BYTES
from serving.request_bounds import RequestBounds, request_bounds
from serving.tls import TlsConfig, is_loopback, server_credentials

_log = structlog.get_logger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = MAX_MESSAGE_BYTES
HEALTH_SERVICE_NAME = "grpc.health.v1.Health"
OVERALL_HEALTH = ""  # the health entry for the server as a whole

ShutdownCallback = Callable[[], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class KeepaliveConfig:
    """HTTP/2 keepalive: notice dead peers (pods gone without FIN) and tolerate client pings."""

    time_seconds: float = 30.0
    timeout_seconds: float = 10.0
    permit_without_calls: bool = True
    # Shortest interval between client pings we accept; shorter gets GOAWAY(too_many_pings).
    min_client_ping_interval_seconds: float = 10.0
    # Pings we may send with no data in between (0 = unlimited), so idle streams stay checked.
    max_pings_without_data: int = 0


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Where and how a server listens. ``port=0`` lets the kernel pick (tests, sidecars)."""

    host: str = "127.0.0.1"
    port: int = 0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    keepalive: KeepaliveConfig = field(default_factory=KeepaliveConfig)
    grace_seconds: float = 10.0
    tls: TlsConfig | None = None
    health_port: int | None = None
    """A second, plaintext port serving only ``grpc.health.v1.Health`` (kubelet probes of a TLS
    server); None is off, 0 lets the kernel pick. Binds ``host`` like the main port."""

    def channel_options(self) -> list[tuple[str, int]]:
        """The ``grpc.aio.server`` options these settings translate to."""
        ka = self.keepalive
        return [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.keepalive_time_ms", int(ka.time_seconds * 1000)),
            ("grpc.keepalive_timeout_ms", int(ka.timeout_seconds * 1000)),
            ("grpc.keepalive_permit_without_calls", int(ka.permit_without_calls)),
            ("grpc.http2.max_pings_without_data", ka.max_pings_without_data),
            (
                "grpc.http2.min_ping_interval_without_data_ms",
                int(ka.min_client_ping_interval_seconds * 1000),
            ),
            ("grpc.so_reuseport", 0),
        ]


@dataclass(frozen=True)
class _MethodQuery:
    """A ``grpc.HandlerCallDetails`` for asking a generic handler whether it serves a method."""

    method: str
    invocation_metadata: tuple[tuple[str, str], ...] = ()


class _GenericHandlersOnly:
    """What servicer adders see instead of the ``grpc.aio`` server: every handler is generic.

    The generated ``add_*_to_server`` functions register each method twice, as a generic handler
    and as a pre-registered method. The ``grpc.aio`` server keeps one pending request per
    pre-registered method (plus one for all generic ones) and waits on all of them
    (``asyncio.wait``) around every incoming call, so each registered method adds to the cost of
    every call (the coordinator has nearly twenty). Served generically only, one request is
    pending whatever the number of methods.
    """

    def __init__(self, server: Any) -> None:
        self._server = server
        self._generic: list[Any] = []

    def add_generic_rpc_handlers(self, handlers: Sequence[Any]) -> None:
        """Passed through to the server."""
        self._generic.extend(handlers)
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        """Added as a generic handler, leaving out methods a generic handler already serves."""
        missing = {
            name: handler
            for name, handler in handlers.items()
            if not any(
                generic.service(_MethodQuery(f"/{service}/{name}")) is not None
                for generic in self._generic
            )
        }
        if missing:
            self.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, missing),))


class GrpcServer:
    """A ``grpc.aio`` server with health, reflection and ordered shutdown.

    Register services with :meth:`add_service` before :meth:`start`; each is reported SERVING by
    the health service under its full name and listed by reflection. ``interceptors`` run
    inside the request guard (`serving.guarded_handlers.RequestGuard`), which applies ``bounds``
    (meshplane's table unless a test double stands in for an adapter with other limits);
    ``observers`` (call metrics) run outside it and see every call, refused ones included.
    Observers must not read requests: they get them undecoded.
    """

    def __init__(
        self,
        config: ServerConfig,
        *,
        interceptors: Sequence[Any] = (),
        observers: Sequence[Any] = (),
        bounds: RequestBounds = request_bounds,
    ) -> None:
        self.config = config
        self.tasks = BackgroundTasks(owner="grpc-server")
        self._server: Any = grpc.aio.server(
            options=config.channel_options(),
            interceptors=[*observers, RequestGuard(bounds), *interceptors],
        )
        self._handlers = _GenericHandlersOnly(self._server)
        self._health = HealthService()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._handlers)
        self._health_listener = (
            None
            if config.health_port is None
            else HealthListener(
                self._health,
                host=self._bind_host(),
                port=config.health_port,
                options=config.channel_options(),
            )
        )
        self._services: list[str] = []
        self._shutdown_callbacks: list[tuple[str, ShutdownCallback]] = []
        self._stopping_callbacks: list[tuple[str, Callable[[], None]]] = []
        self._port: int | None = None
        self._stop_lock = asyncio.Lock()
        self._stopped = False

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` a client on this host can dial."""
        host = self.config.host
        if host in ("0.0.0.0", "", "::", "[::]"):
            host = "127.0.0.1"
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self.port}"

    @property
    def health_port(self) -> int | None:
        """The bound plaintext health port (after :meth:`start`); None when not configured."""
        return None if self._health_listener is None else self._health_listener.port

    @property
    def service_names(self) -> tuple[str, ...]:
        """Full names of the application services added so far."""
        return tuple(self._services)

    def add_service(
        self, servicer_adder: Callable[[Any, Any], None], servicer: Any, service_full_name: str
    ) -> None:
        """Register a servicer via its generated ``add_*_to_server`` and track its health name.

        The name must be a service the protobuf pool knows, so reflection never advertises a
        service that clients cannot resolve.
        """
        if self._port is not None:
            raise RuntimeError("add services before start()")
        try:
            descriptor_pool.Default().FindServiceByName(service_full_name)
        except KeyError as exc:
            raise ValueError(f"unknown gRPC service {service_full_name!r}") from exc
        if service_full_name in self._services:
            raise ValueError(f"service {service_full_name!r} already added")
        servicer_adder(servicer, self._handlers)
        self._services.append(service_full_name)

    def on_stopping(self, name: str, callback: Callable[[], None]) -> None:
        """Run ``callback`` as soon as stopping begins, before in-flight calls drain: for work
        that must end at once rather than hold the grace period (a running load test)."""
        self._stopping_callbacks.append((name, callback))

    def on_shutdown(self, name: str, callback: ShutdownCallback) -> None:
        """Run ``callback`` after the server has stopped serving (reverse registration order)."""
        self._shutdown_callbacks.append((name, callback))

    async def set_serving(self, service_full_name: str, serving: bool) -> None:
        """Change one service's health (e.g. NOT_SERVING while its Kubernetes API is down)."""
        await self._health.set(service_full_name, serving)

    async def start(self) -> int:
        """Enable reflection, mark every service SERVING, bind and start; return the port."""
        if self._port is not None:
            raise RuntimeError("server already started")
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            reflection.aio.ReflectionServicer(
                (*self._services, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME)
            ),
            self._handlers,
        )
        if self._health_listener is not None:
            self._health_listener.bind()
        try:
            self._port = self._bind_main_port()
        except BaseException:
            if self._health_listener is not None:
                await self._health_listener.stop(0)
            raise
        for name in (OVERALL_HEALTH, *self._services):
            await self.set_serving(name, True)
        await self._server.start()
        if self._health_listener is not None:
            await self._health_listener.start()
        audit_log.mark_serving()
        _log.info(
            "grpc.server_started",
            address=self.address,
            health_port=self.health_port,
            services=list(self._services),
            tls="mtls" if self.config.tls and self.config.tls.mutual else bool(self.config.tls),
        )
        return self._port

    def _bind_main_port(self) -> int:
        bind = f"{self._bind_host()}:{self.config.port}"
        if self.config.tls is not None:
            port = self._server.add_secure_port(bind, server_credentials(self.config.tls))
        else:
            if not is_loopback(bind):
                _log.warning("grpc.server_plaintext", bind=bind, hint="set --tls-cert/--tls-key")
            port = self._server.add_insecure_port(bind)
        if not port:
            raise OSError(f"could not bind gRPC server to {bind}")
        return int(port)

    def _bind_host(self) -> str:
        host = self.config.host
        if ":" in host and not host.startswith("["):
            return f"[{host}]"
        return host

    async def stop(self, grace_seconds: float | None = None) -> None:
        """Drain and stop: NOT_SERVING, ``server.stop(grace)``, callbacks, health port, tasks.

        Safe to call more than once; later calls return once the first has finished.
        """
        grace = self.config.grace_seconds if grace_seconds is None else grace_seconds
        async with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
            _log.info("grpc.server_stopping", grace_seconds=grace)
            for name, stopping in self._stopping_callbacks:
                try:
                    stopping()
                except Exception:
                    _log.exception("grpc.stopping_callback_failed", callback=name)
            await self._health.drain()
            await self._server.stop(grace)
            for name, callback in reversed(self._shutdown_callbacks):
                try:
                    await callback()
                except Exception:
                    _log.exception("grpc.shutdown_callback_failed", callback=name)
            if self._health_listener is not None:
                await self._health_listener.stop(grace)
            await self.tasks.stop(grace_seconds=grace)
            _log.info("grpc.server_stopped")

    async def serve_until_signalled(
        self, *, signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT)
    ) -> signal.Signals:
        """Start if needed, wait for SIGTERM/SIGINT, then :meth:`stop`; return the signal."""
        if self._port is None:
            await self.start()
        loop = asyncio.get_running_loop()
        received: asyncio.Future[signal.Signals] = loop.create_future()

        def _on_signal(sig: signal.Signals) -> None:
            if not received.done():
                received.set_result(sig)

        for sig in signals:
            loop.add_signal_handler(sig, _on_signal, sig)
        try:
            sig = await received
            _log.info("grpc.signal_received", signal=sig.name)
            await self.stop()
        finally:
            for sig_ in signals:
                loop.remove_signal_handler(sig_)
        return sig
