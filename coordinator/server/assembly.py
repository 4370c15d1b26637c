"""Assembling one coordinator process: store, registry, discovery, event hub, servicer, gRPC.

`Coordinator.start` enters the parts in order through one ``contextlib.AsyncExitStack``: the
store (migrated), identity, the registry with the static adapters, the event hub, Kubernetes
discovery, retention, ``/metrics`` (when configured), then gRPC. Each part's stop is registered
before it starts, so a start that fails half-way closes what it opened, in reverse, and raises
(`StartupError` names a store that cannot be opened or a port that cannot be bound).
`Coordinator.stop` closes the same stack: live watches end, gRPC drains (health NOT_SERVING,
running load tests stopped), then ``/metrics``, retention, discovery, the event hub, the
registry (every channel and health stream), identity, and the store last.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import structlog

from coordinator.perf.service import (
    ChannelCall,
    MeshLookupError,
    PerformanceRpcs,
    adapter_mesh_info,
    kubeconfig_environment,
)
from coordinator.server.adapter_link import AdapterLink
from coordinator.server.event_hub import EventHub
from coordinator.server.identity_assembly import Identity, build_identity
from coordinator.server.kube_discovery import KubeDiscovery
from coordinator.server.metrics import CoordinatorMetrics
from coordinator.server.operation_admission import OperationAdmission
from coordinator.server.passthrough import SERVICE_NAME as PASSTHROUGH_SERVICE
from coordinator.server.passthrough import Passthrough, add_passthrough_to_server
from coordinator.server.registry import Registry
from coordinator.server.replicas import Dialer, Replica, Source
from coordinator.server.retention import Pruner
from coordinator.server.routing import RouteError, Router
from coordinator.server.servicer import SERVICE_NAME, CoordinatorServicer
from coordinator.server.settings import CoordinatorSettings
from coordinator.store import Store, open_store
from meshplane.coordinator.v1 import coordinator_pb2_grpc as pb_grpc
from serving.grpc_server import GrpcServer, ServerConfig
from serving.message_limits import adapter_channel_options
from serving.metrics_server import MetricsServer
from serving.tls import InsecureTransportError, dial, is_loopback

__all__ = ["Coordinator", "StartupError", "build_coordinator", "run_coordinator"]

_log = structlog.get_logger(__name__)


class StartupError(Exception):
    """A part of the coordinator could not be opened; the message says which and why."""


@dataclass(kw_only=True)
class Coordinator:
    """A built coordinator; :meth:`start` brings it up, :meth:`stop` takes it down in order."""

    settings: CoordinatorSettings
    store: Store
    registry: Registry
    router: Router
    hub: EventHub
    discovery: KubeDiscovery | None
    identity: Identity
    servicer: CoordinatorServicer
    server: GrpcServer
    pruner: Pruner
    metrics: CoordinatorMetrics
    metrics_server: MetricsServer | None = None
    _parts: contextlib.AsyncExitStack | None = field(default=None, init=False, repr=False)
    _grace_seconds: float | None = field(default=None, init=False, repr=False)

    @property
    def metrics_url(self) -> str | None:
        """Scrape URL (after :meth:`start`), or None when metrics are off."""
        return None if self.metrics_server is None else self.metrics_server.url

    @property
    def address(self) -> str:
        """``host:port`` clients dial (after :meth:`start`)."""
        return self.server.address

    async def start(self) -> str:
        """Open every part in order; on failure close what was opened, in reverse, and raise."""
        if self._parts is not None:
            raise RuntimeError("coordinator already started")
        async with contextlib.AsyncExitStack() as parts:
            await self._open_store(parts)
            await _enter(parts, "identity", self.identity.start, self.identity.stop)
            await _enter(parts, "registry", self._add_static_adapters, self.registry.close)
            await _enter(parts, "event-hub", self.hub.start, self.hub.stop)
            if self.discovery is not None:
                await _enter(parts, "discovery", self.discovery.start, self.discovery.stop)
            await _enter(parts, "retention", self.pruner.start, self.pruner.stop)
            if self.metrics_server is not None:
                await self._serve_metrics(parts, self.metrics_server)
            await self._serve_grpc()
            parts.push_async_callback(self._stop_grpc)
            self._parts = parts.pop_all()
        _log.info(
            "coordinator.started",
            address=self.address,
            adapters=[f"{a.mesh}={a.address}" for a in self.settings.adapters],
            discovery=self.settings.discover_namespace or None,
            metrics=self.metrics_url,
        )
        return self.address

    async def stop(self, grace_seconds: float | None = None) -> None:
        """End live watches, drain gRPC, then close the other parts in reverse start order.

        Watches end first: clients resume by cursor elsewhere, and an open WatchEvents stream
        would otherwise hold the drain for its whole grace period. Calling it again does nothing.
        """
        self.hub.end_watches()
        parts, self._parts = self._parts, None
        if parts is not None:
            self._grace_seconds = grace_seconds
            await parts.aclose()

    async def _open_store(self, parts: contextlib.AsyncExitStack) -> None:
        parts.push_async_callback(_stopping, "store", self.store.close)
        location = self.settings.store_location
        try:
            if "://" not in location:
                self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            await self.store.migrate()
        except Exception as exc:
            raise StartupError(f"cannot open the store {_store_name(location)}: {exc}") from exc

    def _add_static_adapters(self) -> None:
        for adapter in self.settings.adapters:
            self.registry.add(adapter.address, mesh=adapter.mesh, source=Source.STATIC)

    async def _serve_metrics(
        self, parts: contextlib.AsyncExitStack, metrics_server: MetricsServer
    ) -> None:
        parts.push_async_callback(_stopping, "metrics", metrics_server.stop)
        host, port = self.settings.metrics_host, self.settings.metrics_port
        try:
            await metrics_server.start()
        except OSError as exc:
            raise StartupError(
                f"cannot serve /metrics on {host}:{port}: {exc.strerror or exc}; choose another "
                "--metrics-port"
            ) from exc
        if not is_loopback(f"[{host}]:0" if ":" in host else f"{host}:0"):
            _log.warning(
                "coordinator.metrics_not_loopback",
                url=self.metrics_url,
                hint="/metrics has no authentication; restrict who can reach it",
            )

    async def _serve_grpc(self) -> None:
        """Bind and serve; a port that cannot be bound (grpc says RuntimeError) is named."""
        settings = self.settings
        try:
            await self.server.start()
        except (OSError, RuntimeError) as exc:
            health = "" if settings.health_port is None else f" (health {settings.health_port})"
            raise StartupError(
                f"cannot serve gRPC on {settings.host}:{settings.port}{health}: {exc}; is another "
                "process using the port? choose another --port"
            ) from exc

    async def _stop_grpc(self) -> None:
        """Drain (running load tests stop as draining begins), with `stop`'s grace."""
        await self.server.stop(self._grace_seconds)


async def _enter(
    parts: contextlib.AsyncExitStack,
    name: str,
    start: Callable[[], Awaitable[None] | None],
    stop: Callable[[], Awaitable[None]],
) -> None:
    """Register ``stop`` (safe on a part that started half-way), then start the part."""
    parts.push_async_callback(_stopping, name, stop)
    started = start()
    if started is not None:
        await started


async def _stopping(name: str, stop: Callable[[], Awaitable[None]]) -> None:
    """One part's stop; a failure is logged and the next part still closes."""
    try:
        await stop()
    except Exception:
        _log.exception("grpc.shutdown_callback_failed", callback=name)


def _store_name(location: str) -> str:
    """The store as a message may show it: a path, or a database host (never a password)."""
    if "://" not in location:
        return location
    split = urlsplit(location)
    if split.scheme == "sqlite":
        return split.path
    return f"({split.scheme} on {split.hostname or 'localhost'})"


def build_coordinator(settings: CoordinatorSettings) -> Coordinator:
    """Create every part (nothing is opened or started until :meth:`Coordinator.start`).

    Raises SettingsError when no authentication is configured and anonymous calls are not
    allowed, or the token file cannot be used.
    """
    store = open_store(settings.store_location)
    link = None if settings.adapter_token is None else AdapterLink(settings.adapter_token)
    registry = Registry(
        _adapter_dialer(settings, link),
        call_timeout=settings.call_timeout_seconds,
        health_backoff_initial=settings.health_backoff_initial_seconds,
        health_backoff_max=settings.health_backoff_max_seconds,
        link=link,
    )
    router = Router(
        registry, call_timeout=settings.call_timeout_seconds, attempts=settings.retry_attempts
    )
    hub = EventHub(store, registry)
    perf = _performance_tests(settings, store, router)
    admission = OperationAdmission(store, registry)
    identity = build_identity(settings, store=store, registry=registry)
    servicer = CoordinatorServicer(
        admission=admission,
        registry=registry,
        router=router,
        store=store,
        events=hub,
        perf=perf,
        feed_status=hub.follower_status,
    )
    metrics = CoordinatorMetrics(
        store=store,
        followers=hub.follower_statuses,
        running_perf_tests=lambda: perf.running_tests,
    )
    server = _grpc_server(settings, metrics, identity)
    server.add_service(pb_grpc.add_CoordinatorServiceServicer_to_server, servicer, SERVICE_NAME)
    server.add_service(
        add_passthrough_to_server,
        _passthrough(store, registry, router, admission),
        PASSTHROUGH_SERVICE,
    )
    server.on_stopping("perf-tests", perf.stop_all)
    return Coordinator(
        settings=settings,
        store=store,
        registry=registry,
        router=router,
        hub=hub,
        discovery=_discovery(settings, registry),
        identity=identity,
        servicer=servicer,
        server=server,
        pruner=Pruner(store, settings.retention, on_pruned=metrics.pruned),
        metrics=metrics,
        metrics_server=None
        if settings.metrics_port is None
        else MetricsServer(metrics.render, host=settings.metrics_host, port=settings.metrics_port),
    )


def _adapter_dialer(settings: CoordinatorSettings, link: AdapterLink | None) -> Dialer:
    """Channels to adapters with the coordinator's TLS, message limits and link token."""

    def dial_adapter(address: str) -> Any:
        try:
            return dial(
                address,
                tls=settings.adapter_tls,
                allow_insecure=settings.allow_insecure_adapters,
                options=adapter_channel_options(),
                interceptors=None if link is None else link.interceptors(address),
            )
        except InsecureTransportError as exc:
            raise InsecureTransportError(
                f"refusing plaintext gRPC to the adapter at {address} (not loopback): set "
                "--adapter-tls-ca (and --adapter-tls-cert/--adapter-tls-key for mTLS), or "
                "--allow-insecure-adapters to accept an unencrypted connection"
            ) from exc

    return dial_adapter


def _discovery(settings: CoordinatorSettings, registry: Registry) -> KubeDiscovery | None:
    if not settings.discover_namespace:
        return None
    return KubeDiscovery(
        registry, namespace=settings.discover_namespace, kubeconfig=settings.kubeconfig
    )


def _performance_tests(
    settings: CoordinatorSettings, store: Store, router: Router
) -> PerformanceRpcs:
    """The perf service, asking a mesh's adapter (through routing) about the mesh under test."""

    async def call_adapter(mesh: str, call: ChannelCall) -> tuple[Any, str]:
        async def invoke(replica: Replica, channel: Any, seconds: float) -> Any:
            return await call(channel, seconds)

        try:
            answer, replica = await router.call(
                mesh, invoke, caller_remaining=None, retry=True, method="perf mesh info"
            )
        except RouteError as exc:
            raise MeshLookupError(exc.code, exc.message) from exc
        return answer, replica.address

    return PerformanceRpcs(
        store,
        mesh_info_provider=adapter_mesh_info(call_adapter),
        environment_provider=kubeconfig_environment(settings.kubeconfig),
        limits=settings.perf,
    )


def _passthrough(
    store: Store, registry: Registry, router: Router, admission: OperationAdmission
) -> Passthrough:
    """The adapter service passed through to replicas, finding operations by the store."""

    async def locate(operation_id: str) -> str | None:
        record = await store.get_operation(operation_id)
        return None if record is None else record.adapter

    return Passthrough(registry, router, admission=admission, locate=locate)


def _grpc_server(
    settings: CoordinatorSettings, metrics: CoordinatorMetrics, identity: Identity
) -> GrpcServer:
    return GrpcServer(
        ServerConfig(
            host=settings.host,
            port=settings.port,
            grace_seconds=settings.shutdown_grace_seconds,
            tls=settings.tls,
            health_port=settings.health_port,
        ),
        # Requests are counted with the status the gate or the servicer ended them with.
        observers=(metrics.requests,),
        interceptors=(identity.gate,),
    )


async def run_coordinator(
    settings: CoordinatorSettings,
    *,
    on_started: Callable[[Coordinator], None] | None = None,
    stop_signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
) -> signal.Signals:
    """Start, serve until a stop signal, stop in order; return the signal."""
    coordinator = build_coordinator(settings)
    await coordinator.start()
    try:
        if on_started is not None:
            on_started(coordinator)
        return await _signalled(stop_signals)
    finally:
        await coordinator.stop()


async def _signalled(signals: Sequence[signal.Signals]) -> signal.Signals:
    """The first of ``signals`` received (their handlers are removed again)."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if not received.done():
            received.set_result(sig)

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        got = await received
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    _log.info("grpc.signal_received", signal=got.name)
    return got
