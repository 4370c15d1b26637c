"""Assembling one coordinator process: store, registry, discovery, event hub, servicer, gRPC.

Start order: store (migrated), registry with the static adapters, event hub, Kubernetes
discovery, retention, gRPC, then ``/metrics`` (when configured). Stop order is the reverse,
driven by ``GrpcServer.stop``: health goes NOT_SERVING and in-flight calls drain, then
``/metrics`` closes, discovery stops, retention stops, the event hub stops, the registry closes
every channel and health stream, and the store closes last.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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
from coordinator.server.identity.assembly import Identity, build_identity
from coordinator.server.kube_discovery import KubeDiscovery
from coordinator.server.metrics import CoordinatorMetrics
from coordinator.server.operation_admission import OperationAdmission
from coordinator.server.passthrough import SERVICE_NAME as PASSTHROUGH_SERVICE
from coordinator.server.passthrough import Passthrough, add_passthrough_to_server
from coordinator.server.registry import Registry
from coordinator.server.replicas import Replica, Source
from coordinator.server.retention import Pruner
from coordinator.server.routing import RouteError, Router
from coordinator.server.rpc_group import EventSource
from coordinator.server.servicer import SERVICE_NAME, CoordinatorServicer
from coordinator.server.settings import CoordinatorSettings
from coordinator.store import Store, open_store
from meshplane.coordinator.v1 import coordinator_pb2_grpc as pb_grpc
from serving.grpc_server import GrpcServer, ServerConfig
from serving.message_limits import adapter_channel_options
from serving.metrics_server import MetricsServer
from serving.tls import InsecureTransportError, dial, is_loopback

__all__ = ["Coordinator", "build_coordinator", "run_coordinator"]

_log = structlog.get_logger(__name__)


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

    @property
    def metrics_url(self) -> str | None:
        """Scrape URL (after :meth:`start`), or None when metrics are off."""
        return None if self.metrics_server is None else self.metrics_server.url

    @property
    def address(self) -> str:
        """``host:port`` clients dial (after :meth:`start`)."""
        return self.server.address

    async def start(self) -> str:
        """Migrate the store, add static adapters, start the hub, discovery and gRPC."""
        location = self.settings.store_location
        if "://" not in location:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            await self.store.migrate()
            await self.identity.start()
            for adapter in self.settings.adapters:
                self.registry.add(adapter.address, mesh=adapter.mesh, source=Source.STATIC)
            await self.hub.start()
            if self.discovery is not None:
                await self.discovery.start()
            self.pruner.start()
            await self.server.start()
            if self.metrics_server is not None:
                await self.metrics_server.start()
                host = self.settings.metrics_host
                if not is_loopback(f"[{host}]:0" if ":" in host else f"{host}:0"):
                    _log.warning(
                        "coordinator.metrics_not_loopback",
                        url=self.metrics_url,
                        hint="/metrics has no authentication; restrict who can reach it",
                    )
        except BaseException:
            await self._close_parts()
            raise
        _log.info(
            "coordinator.started",
            address=self.address,
            adapters=[f"{a.mesh}={a.address}" for a in self.settings.adapters],
            discovery=self.settings.discover_namespace or None,
            metrics=self.metrics_url,
        )
        return self.address

    async def stop(self, grace_seconds: float | None = None) -> None:
        """End live watches, drain gRPC, then stop discovery, the hub, the registry, the store.

        Watches end first: clients resume by cursor elsewhere, and an open WatchEvents stream
        would otherwise hold the drain for its whole grace period.
        """
        self.hub.end_watches()
        await self.server.stop(grace_seconds)

    async def _close_parts(self) -> None:
        """The shutdown callbacks' work, for a start that failed half-way."""
        with contextlib.suppress(Exception):
            if self.metrics_server is not None:
                await self.metrics_server.stop()
        with contextlib.suppress(Exception):
            if self.discovery is not None:
                await self.discovery.stop()
        with contextlib.suppress(Exception):
            await self.pruner.stop()
        with contextlib.suppress(Exception):
            await self.hub.stop()
        with contextlib.suppress(Exception):
            await self.registry.close()
        with contextlib.suppress(Exception):
            await self.identity.stop()
        with contextlib.suppress(Exception):
            await self.store.close()


def build_coordinator(settings: CoordinatorSettings) -> Coordinator:
    """Create every part (nothing is opened or started until :meth:`Coordinator.start`).

    Raises SettingsError when no authentication is configured and anonymous calls are not
    allowed, or the token file cannot be used.
    """
    store = open_store(settings.store_location)
    link = None if settings.adapter_token is None else AdapterLink(settings.adapter_token)

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

    registry = Registry(
        dial_adapter,
        call_timeout=settings.call_timeout_seconds,
        health_backoff_initial=settings.health_backoff_initial_seconds,
        health_backoff_max=settings.health_backoff_max_seconds,
        link=link,
    )
    router = Router(
        registry, call_timeout=settings.call_timeout_seconds, attempts=settings.retry_attempts
    )
    hub = EventHub(store, registry)
    events: EventSource = hub
    discovery = (
        KubeDiscovery(
            registry, namespace=settings.discover_namespace, kubeconfig=settings.kubeconfig
        )
        if settings.discover_namespace
        else None
    )

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

    perf = PerformanceRpcs(
        store,
        mesh_info_provider=adapter_mesh_info(call_adapter),
        environment_provider=kubeconfig_environment(settings.kubeconfig),
        limits=settings.perf,
    )
    admission = OperationAdmission(store, registry)
    identity = build_identity(settings, store=store, registry=registry)
    servicer = CoordinatorServicer(
        admission=admission,
        registry=registry,
        router=router,
        store=store,
        events=events,
        perf=perf,
        feed_status=hub.follower_status,
    )

    async def locate(operation_id: str) -> str | None:
        record = await store.get_operation(operation_id)
        return None if record is None else record.adapter

    passthrough = Passthrough(registry, router, admission=admission, locate=locate)
    metrics = CoordinatorMetrics(
        store=store,
        followers=hub.follower_statuses,
        running_perf_tests=lambda: perf.running_tests,
    )
    pruner = Pruner(store, settings.retention, on_pruned=metrics.pruned)
    server = GrpcServer(
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
    metrics_server = (
        None
        if settings.metrics_port is None
        else MetricsServer(metrics.render, host=settings.metrics_host, port=settings.metrics_port)
    )
    server.add_service(pb_grpc.add_CoordinatorServiceServicer_to_server, servicer, SERVICE_NAME)
    server.add_service(add_passthrough_to_server, passthrough, PASSTHROUGH_SERVICE)
    coordinator = Coordinator(
        settings=settings,
        store=store,
        registry=registry,
        router=router,
        hub=hub,
        discovery=discovery,
        identity=identity,
        servicer=servicer,
        server=server,
        pruner=pruner,
        metrics=metrics,
        metrics_server=metrics_server,
    )
    # GrpcServer runs these after serving stops, last registered first.
    server.on_stopping("perf-tests", perf.stop_all)
    server.on_shutdown("store", store.close)
    server.on_shutdown("identity", identity.stop)
    server.on_shutdown("registry", registry.close)
    server.on_shutdown("event-hub", hub.stop)
    server.on_shutdown("retention", pruner.stop)
    if discovery is not None:
        server.on_shutdown("discovery", discovery.stop)
    if metrics_server is not None:
        server.on_shutdown("metrics", metrics_server.stop)
    return coordinator


async def run_coordinator(
    settings: CoordinatorSettings,
    *,
    on_started: Callable[[Coordinator], None] | None = None,
    stop_signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
) -> signal.Signals:
    """Start, serve until a stop signal, stop in order; return the signal."""
    coordinator = build_coordinator(settings)
    await coordinator.start()
    if on_started is not None:
        on_started(coordinator)
    return await coordinator.server.serve_until_signalled(signals=stop_signals)
