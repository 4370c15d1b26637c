"""Assembling one adapter process: journal, event log, runner, servicer, gRPC and metrics.

Stop order (SIGTERM): the service goes NOT_SERVING so the coordinator stops routing here; the
runner stops accepting and interrupts running operations, which are recorded INTERRUPTED with an
event (a restarted adapter resumes them when the same operation_id is re-sent); the event log is
flushed and closed, ending live streams with a resume sequence; then gRPC stops and the metrics
listener closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.grpc.coordinator_guard import CoordinatorGuard
from adapters.kit.grpc.meshery_servicer import (
    MESHERY_SERVICE_NAME,
    MesheryServicer,
    serve_meshery_on,
)
from adapters.kit.grpc.servicer import (
    SERVICE_NAME,
    AdapterInfo,
    MeshAdapterServicer,
    kit_capabilities,
    serve_on,
)
from adapters.kit.model.records import ClusterTarget
from adapters.kit.process.settings import AdapterSettings
from adapters.kit.run.event_log import EventLog
from adapters.kit.run.journal import OperationJournal
from adapters.kit.run.metrics import AdapterMetrics
from adapters.kit.run.runner import DEFAULT_CLUSTER, OperationRunner
from adapters.kit.run.seam import ClusterExecutor, VersionCatalog
from adapters.kit.run.state_files import StateDirLock
from serving.background_tasks import BackgroundTasks
from serving.build_info import package_version
from serving.grpc_server import GrpcServer, ServerConfig
from serving.metrics_server import MetricsServer

__all__ = ["ExecutorFactory", "RunningAdapter", "git_sha", "run_adapter", "start_adapter"]

_log = structlog.get_logger(__name__)
_SOURCE_DIR = str(Path(__file__).resolve().parent)

ExecutorFactory = Callable[
    [MeshDeclaration, AdapterSettings, AdapterMetrics], tuple[ClusterExecutor, VersionCatalog]
]
"""Builds the cluster executor and version catalogue; `AdapterMetrics.kubernetes_retry` is the
retry hook the apply engine should call."""


adapter_version = package_version
"""The installed meshplane package version."""


async def git_sha() -> str:
    """``MESHPLANE_GIT_SHA``, else ``git rev-parse HEAD`` of the source tree, else "unknown"."""
    from_env = os.environ.get("MESHPLANE_GIT_SHA", "").strip()
    if from_env:
        return from_env
    try:
        process = await asyncio.create_subprocess_exec(
            "git",
            "-C",
            _SOURCE_DIR,
            "rev-parse",
            "HEAD",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await asyncio.wait_for(process.communicate(), timeout=5)
    except (OSError, TimeoutError):
        return "unknown"
    sha = out.decode().strip()
    return sha if process.returncode == 0 and sha else "unknown"


@dataclass(kw_only=True)
class RunningAdapter:
    """A started adapter; `stop` performs the ordered shutdown."""

    declaration: MeshDeclaration
    settings: AdapterSettings
    server: GrpcServer
    runner: OperationRunner
    events: EventLog
    journal: OperationJournal
    metrics: AdapterMetrics
    metrics_server: MetricsServer | None
    closables: tuple[Any, ...] = ()
    state_lock: StateDirLock | None = None
    background: BackgroundTasks | None = None

    @property
    def address(self) -> str:
        """``host:port`` of the gRPC service."""
        return self.server.address

    @property
    def metrics_url(self) -> str | None:
        """Scrape URL, or None when metrics are off."""
        return None if self.metrics_server is None else self.metrics_server.url

    async def stop(self) -> None:
        """Ordered shutdown (see the module docstring); safe to call twice."""
        grace = self.settings.shutdown_grace_seconds
        with contextlib.suppress(Exception):
            await self.server.set_serving(SERVICE_NAME, False)
            await self.server.set_serving(MESHERY_SERVICE_NAME, False)
            await self.server.set_serving("", False)
        if self.background is not None:
            await self.background.stop(grace_seconds=grace)
        await self.runner.shutdown(grace)
        self.events.close()
        await self.server.stop(grace)
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        for closable in self.closables:
            aclose = getattr(closable, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:
                    _log.exception("adapter.close_failed", component=type(closable).__name__)
        if self.state_lock is not None:
            self.state_lock.release()
        _log.info("adapter.stopped", mesh=self.declaration.mesh)


async def start_adapter(
    declaration: MeshDeclaration,
    settings: AdapterSettings,
    executor_factory: ExecutorFactory,
) -> RunningAdapter:
    """Build every part, start gRPC (and metrics when configured) and return the handle."""
    metrics = AdapterMetrics(mesh=declaration.mesh)
    state_dir = settings.state_dir
    state_lock = None if state_dir is None else StateDirLock(state_dir)
    events: EventLog | None = None
    try:
        journal = OperationJournal(
            state_dir=state_dir,
            max_records=settings.journal_size,
            max_bytes=settings.journal_bytes,
        )
        events = EventLog(
            mesh=declaration.mesh,
            retention=settings.event_retention,
            retention_bytes=settings.event_retention_bytes,
            queue_size=settings.event_queue_size,
            state_dir=None if state_dir is None else state_dir / "events",
            on_append=metrics.event_appended,
        )
        executor, versions = executor_factory(declaration, settings, metrics)
        default_cluster = ClusterTarget(name=DEFAULT_CLUSTER)
        runner = OperationRunner(
            declaration,
            executor,
            versions,
            journal,
            events,
            default_cluster=default_cluster,
            default_timeout=settings.operation_timeout_seconds,
            max_concurrent=settings.max_concurrent_operations,
            metrics=metrics,
            kubeconfig_policy=settings.kubeconfig_policy,
            object_policy=settings.object_policy,
        )
        info = AdapterInfo(
            adapter_version=adapter_version(),
            git_sha=await git_sha(),
            chart_repository_url=settings.chart_repo or declaration.chart_repository,
            capabilities=kit_capabilities(declaration),
        )
        servicer = MeshAdapterServicer(
            declaration=declaration,
            runner=runner,
            events=events,
            versions=versions,
            executor=executor,
            info=info,
            default_cluster=default_cluster,
            trust_forwarded_identity=settings.trusts_forwarded_identity,
        )
        token = settings.coordinator_token
        server = GrpcServer(
            ServerConfig(
                host=settings.host,
                port=settings.port,
                grace_seconds=settings.shutdown_grace_seconds,
                tls=settings.tls,
                health_port=settings.health_port,
            ),
            interceptors=() if token is None else (CoordinatorGuard(token),),
        )
        serve_on(server, servicer)
        serve_meshery_on(server, MesheryServicer(native=servicer, runner=runner, events=events))
        metrics_server = None
        if settings.metrics_port is not None:
            metrics_server = MetricsServer(
                metrics.render, host=settings.host, port=settings.metrics_port
            )
        adapter = RunningAdapter(
            declaration=declaration,
            settings=settings,
            server=server,
            runner=runner,
            events=events,
            journal=journal,
            metrics=metrics,
            metrics_server=metrics_server,
            closables=tuple({id(c): c for c in (executor, versions)}.values()),
            state_lock=state_lock,
        )
    except BaseException:
        if events is not None:
            events.close()
        if state_lock is not None:
            state_lock.release()
        raise
    try:
        try:
            await server.start()
        except RuntimeError as exc:  # grpc reports a failed bind as RuntimeError
            raise OSError(f"gRPC: {exc} (is the port already in use?)") from exc
        if metrics_server is not None:
            await metrics_server.start()
    except BaseException:
        await adapter.stop()
        raise
    # Connect to the adapter's own cluster while nothing is asked yet.
    adapter.background = BackgroundTasks(owner="adapter")
    adapter.background.start("prepare-default-cluster", executor.prepare(default_cluster))
    _log.info(
        "adapter.started",
        mesh=declaration.mesh,
        address=adapter.address,
        metrics=adapter.metrics_url,
        event_stream_id=events.stream_id,
        state_dir=None if state_dir is None else str(state_dir),
        coordinator_link="token" if token is not None else None,
        forwarded_identity=settings.trusts_forwarded_identity,
    )
    return adapter


async def run_adapter(
    declaration: MeshDeclaration,
    settings: AdapterSettings,
    executor_factory: ExecutorFactory,
    *,
    on_started: Callable[[RunningAdapter], None] | None = None,
    stop_signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
) -> signal.Signals:
    """Start the adapter, serve until a stop signal, shut down in order; return the signal."""
    adapter = await start_adapter(declaration, settings, executor_factory)
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if not received.done():
            received.set_result(sig)

    for sig in stop_signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        if on_started is not None:
            on_started(adapter)
        got = await received
        _log.info("adapter.signal_received", signal=got.name)
        return got
    finally:
        for sig in stop_signals:
            loop.remove_signal_handler(sig)
        await adapter.stop()
