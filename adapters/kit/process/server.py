"""Assembling one adapter process: journal, event log, runner, servicer, gRPC and metrics.

Every resource is entered once on one `contextlib.AsyncExitStack`, in the order that makes its
reverse the stop order, so a start-up that fails half way and a stop (SIGTERM) close the same
things the same way. Stop order: the service goes NOT_SERVING so the coordinator stops routing
here; background work ends; the runner stops accepting and interrupts running operations, which
are recorded INTERRUPTED with an event (a restarted adapter resumes them when the same
operation_id is re-sent); the event log is flushed and closed, ending live streams with a resume
sequence; then gRPC stops, the metrics listener closes, the executor's connections close and the
state directory's lock is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
from adapters.kit.run.runner import OperationRunner
from adapters.kit.run.runner_settings import DEFAULT_CLUSTER, RunnerSettings
from adapters.kit.run.seam import ClusterExecutor, VersionCatalog
from adapters.kit.run.state_files import StateDirInUse, StateDirLock
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
    """A started adapter; `stop` closes its resources in reverse order of start."""

    declaration: MeshDeclaration
    settings: AdapterSettings
    server: GrpcServer
    runner: OperationRunner
    events: EventLog
    journal: OperationJournal
    metrics: AdapterMetrics
    metrics_server: MetricsServer | None
    resources: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    """What `stop` closes: every resource the start-up entered."""
    _stop_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)
    _stopped: bool = field(default=False, init=False, repr=False)

    @property
    def address(self) -> str:
        """``host:port`` of the gRPC service."""
        return self.server.address

    @property
    def metrics_url(self) -> str | None:
        """Scrape URL, or None when metrics are off."""
        return None if self.metrics_server is None else self.metrics_server.url

    async def stop(self) -> None:
        """Ordered shutdown (see the module docstring); safe to call twice, or concurrently."""
        async with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
            await self.resources.aclose()
            _log.info("adapter.stopped", mesh=self.declaration.mesh)


@dataclass(frozen=True, kw_only=True)
class _StartUp:
    """The steps of one start-up, over what they share: each step enters what it opens on
    ``stack``, so the stack closes everything opened so far whenever a later step fails."""

    declaration: MeshDeclaration
    settings: AdapterSettings
    metrics: AdapterMetrics
    info: AdapterInfo
    stack: contextlib.AsyncExitStack

    def lock_state_dir(self) -> None:
        """Claim the state directory (released last)."""
        if self.settings.state_dir is not None:
            with self._state_dir_use("lock"):
                lock = StateDirLock(self.settings.state_dir)
            self.stack.callback(lock.release)

    def open_journal(self) -> OperationJournal:
        """Operation records, read back from the state directory (nothing to close)."""
        with self._state_dir_use("operation journal"):
            return OperationJournal(
                state_dir=self.settings.state_dir,
                max_records=self.settings.journal_size,
                max_bytes=self.settings.journal_bytes,
            )

    def build_executor(
        self, executor_factory: ExecutorFactory
    ) -> tuple[ClusterExecutor, VersionCatalog]:
        """The executor and version catalogue; each is closed (once) after gRPC stops."""
        executor, versions = executor_factory(self.declaration, self.settings, self.metrics)
        for closable in {id(part): part for part in (executor, versions)}.values():
            aclose = getattr(closable, "aclose", None)
            if aclose is not None:
                self.stack.push_async_callback(_close_logged, type(closable).__name__, aclose)
        return executor, versions

    async def start_metrics(self) -> MetricsServer | None:
        """``/metrics`` when a port is configured (closed after gRPC stops)."""
        if self.settings.metrics_port is None:
            return None
        server = MetricsServer(
            self.metrics.render, host=self.settings.host, port=self.settings.metrics_port
        )
        await server.start()
        self.stack.push_async_callback(server.stop)
        return server

    def create_grpc_server(self) -> GrpcServer:
        """The gRPC server, not yet listening; it stops after the event log closes, so live
        event streams have ended by then."""
        token = self.settings.coordinator_token
        server = GrpcServer(
            ServerConfig(
                host=self.settings.host,
                port=self.settings.port,
                grace_seconds=self.settings.shutdown_grace_seconds,
                tls=self.settings.tls,
                health_port=self.settings.health_port,
            ),
            interceptors=() if token is None else (CoordinatorGuard(token),),
        )
        self.stack.push_async_callback(server.stop, self.settings.shutdown_grace_seconds)
        return server

    def open_event_log(self) -> EventLog:
        """The event log, read back from the state directory; closed before gRPC stops."""
        state_dir = self.settings.state_dir
        with self._state_dir_use("event log"):
            events = EventLog(
                mesh=self.declaration.mesh,
                retention=self.settings.event_retention,
                retention_bytes=self.settings.event_retention_bytes,
                queue_size=self.settings.event_queue_size,
                state_dir=None if state_dir is None else state_dir / "events",
                on_append=self.metrics.event_appended,
            )
        self.stack.callback(events.close)
        return events

    def create_runner(
        self,
        executor: ClusterExecutor,
        versions: VersionCatalog,
        journal: OperationJournal,
        events: EventLog,
    ) -> OperationRunner:
        """The runner; shut down (running operations interrupted) before the event log closes."""
        runner = OperationRunner(
            self.declaration,
            executor,
            versions,
            journal,
            events,
            settings=RunnerSettings(
                default_cluster=ClusterTarget(name=DEFAULT_CLUSTER),
                default_timeout=self.settings.operation_timeout_seconds,
                max_concurrent=self.settings.max_concurrent_operations,
                kubeconfig_policy=self.settings.kubeconfig_policy,
                object_policy=self.settings.object_policy,
            ),
            metrics=self.metrics,
        )
        self.stack.push_async_callback(runner.shutdown, self.settings.shutdown_grace_seconds)
        return runner

    def add_services(
        self,
        server: GrpcServer,
        *,
        runner: OperationRunner,
        events: EventLog,
        executor: ClusterExecutor,
        versions: VersionCatalog,
    ) -> None:
        """The native service and the Meshery one (a door onto the native) on ``server``."""
        servicer = MeshAdapterServicer(
            declaration=self.declaration,
            runner=runner,
            events=events,
            versions=versions,
            executor=executor,
            info=self.info,
            default_cluster=ClusterTarget(name=DEFAULT_CLUSTER),
            trust_forwarded_identity=self.settings.trusts_forwarded_identity,
        )
        serve_on(server, servicer)
        serve_meshery_on(server, MesheryServicer(native=servicer, runner=runner, events=events))

    async def start_serving(self, server: GrpcServer) -> None:
        """Listen (a port already taken is an OSError that says so)."""
        try:
            await server.start()
        except RuntimeError as exc:  # grpc reports a failed bind as RuntimeError
            raise OSError(f"gRPC: {exc} (is the port already in use?)") from exc

    def start_background(self, executor: ClusterExecutor) -> None:
        """Connect to the adapter's own cluster while nothing is asked yet (cancelled first)."""
        background = BackgroundTasks(owner="adapter")
        self.stack.push_async_callback(
            background.stop, grace_seconds=self.settings.shutdown_grace_seconds
        )
        background.start(
            "prepare-default-cluster", executor.prepare(ClusterTarget(name=DEFAULT_CLUSTER))
        )

    @contextlib.contextmanager
    def _state_dir_use(self, part: str) -> Iterator[None]:
        """Name the directory and the part when the state directory cannot be used."""
        try:
            yield
        except StateDirInUse:
            raise
        except OSError as exc:
            raise OSError(
                f"--state-dir {self.settings.state_dir}: cannot open the {part}: {exc} "
                "(give the adapter a directory of its own that it can write)"
            ) from exc

    def withdraw_first(self, server: GrpcServer) -> None:
        """On stop, the services go NOT_SERVING before anything else closes, so the
        coordinator stops routing here."""
        self.stack.push_async_callback(_stop_serving, server)


async def _stop_serving(server: GrpcServer) -> None:
    with contextlib.suppress(Exception):
        for name in (SERVICE_NAME, MESHERY_SERVICE_NAME, ""):
            await server.set_serving(name, False)


async def _close_logged(component: str, aclose: Callable[[], Awaitable[object]]) -> None:
    try:
        await aclose()
    except Exception:
        _log.exception("adapter.close_failed", component=component)


async def _assemble(steps: _StartUp, executor_factory: ExecutorFactory) -> RunningAdapter:
    """The steps in the order whose reverse is the stop order."""
    steps.lock_state_dir()
    journal = steps.open_journal()
    executor, versions = steps.build_executor(executor_factory)
    metrics_server = await steps.start_metrics()
    server = steps.create_grpc_server()
    events = steps.open_event_log()
    runner = steps.create_runner(executor, versions, journal, events)
    steps.add_services(server, runner=runner, events=events, executor=executor, versions=versions)
    await steps.start_serving(server)
    steps.start_background(executor)
    steps.withdraw_first(server)
    return RunningAdapter(
        declaration=steps.declaration,
        settings=steps.settings,
        server=server,
        runner=runner,
        events=events,
        journal=journal,
        metrics=steps.metrics,
        metrics_server=metrics_server,
    )


async def start_adapter(
    declaration: MeshDeclaration,
    settings: AdapterSettings,
    executor_factory: ExecutorFactory,
) -> RunningAdapter:
    """Build every part, start gRPC (and metrics when configured) and return the handle.

    A failure (or cancellation) at any step closes what the earlier steps opened, in reverse
    order, before the error propagates: no lock held, no port bound, no task left.
    """
    info = AdapterInfo(
        adapter_version=adapter_version(),
        git_sha=await git_sha(),
        chart_repository_url=settings.chart_repo or declaration.chart_repository,
        capabilities=kit_capabilities(declaration),
    )
    async with contextlib.AsyncExitStack() as stack:
        steps = _StartUp(
            declaration=declaration,
            settings=settings,
            metrics=AdapterMetrics(mesh=declaration.mesh),
            info=info,
            stack=stack,
        )
        adapter = await _assemble(steps, executor_factory)
        adapter.resources = stack.pop_all()
    _log.info(
        "adapter.started",
        mesh=declaration.mesh,
        address=adapter.address,
        metrics=adapter.metrics_url,
        event_stream_id=adapter.events.stream_id,
        state_dir=None if settings.state_dir is None else str(settings.state_dir),
        coordinator_link="token" if settings.coordinator_token is not None else None,
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
    """Start the adapter, serve until a stop signal, shut down in order; return the signal.

    The signals are handled from before the start-up: one received while starting stops the
    adapter as soon as it has started.
    """
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if not received.done():
            received.set_result(sig)

    for sig in stop_signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        adapter = await start_adapter(declaration, settings, executor_factory)
        try:
            if on_started is not None:
                on_started(adapter)
            got = await received
            _log.info("adapter.signal_received", signal=got.name)
            return got
        finally:
            await adapter.stop()
    finally:
        for sig in stop_signals:
            loop.remove_signal_handler(sig)
