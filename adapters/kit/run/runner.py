"""The operation runner: the entry point the servicer uses to accept, run, stop and preview
operations.

Mesh folders only declare operations; dispatch, idempotency, per-cluster parallelism,
cancellation, timeouts, bounded concurrency and turning outcomes into events and journal records
live here, once, each step in its own module following the data flow: a request is admitted
(`request_admission`), its operation_id claimed (`operation_ids`) and recorded, then run in the
background (`operation_runs`, one `cluster_runs` per target) with its progress reported
(`operation_progress`) until it ends (`operation_outcomes`); `dry_runs` and `operation_renders`
preview a request without recording it. The cluster work itself is behind the
`ClusterExecutor` seam.
"""

from __future__ import annotations

import asyncio

import structlog

from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.model.object_changes import DryRun
from adapters.kit.model.records import (
    TERMINAL_STATES,
    ClusterTarget,
    OperationRecord,
    OperationRequest,
    OperationState,
    RequestedCluster,
    Severity,
)
from adapters.kit.model.renderings import Rendering
from adapters.kit.run import dry_runs, operation_renders
from adapters.kit.run.event_log import EventLog
from adapters.kit.run.journal import OperationJournal, RecordTooLarge
from adapters.kit.run.metrics import AdapterMetrics
from adapters.kit.run.operation_ids import check_same_request, operation_id_of
from adapters.kit.run.operation_progress import OperationProgress
from adapters.kit.run.operation_runs import run_operation
from adapters.kit.run.operation_tasks import OperationTasks
from adapters.kit.run.request_admission import AdmittedRequest, RequestAdmission
from adapters.kit.run.request_errors import InvalidArgument, NotFound, Unavailable
from adapters.kit.run.runner_context import RENDERING_SLOTS, RunnerContext
from adapters.kit.run.runner_settings import RunnerSettings
from adapters.kit.run.seam import ClusterExecutor, VersionCatalog
from serving.input_quoting import quoted

__all__ = ["OperationRunner"]

_log = structlog.get_logger(__name__)


class OperationRunner:
    """Runs catalogue operations for one mesh; one named background task per operation."""

    def __init__(
        self,
        declaration: MeshDeclaration,
        executor: ClusterExecutor,
        versions: VersionCatalog,
        journal: OperationJournal,
        events: EventLog,
        *,
        settings: RunnerSettings | None = None,
        metrics: AdapterMetrics | None = None,
    ) -> None:
        settings = settings or RunnerSettings()
        self.declaration = declaration
        self._journal = journal
        self._default_cluster = settings.default_cluster
        self._admission = RequestAdmission(declaration, versions, settings)
        self._context = RunnerContext(
            mesh=declaration.mesh,
            executor=executor,
            progress=OperationProgress(journal, events, metrics),
            tasks=OperationTasks(
                owner=f"{declaration.mesh}-operations",
                cancel_wait_seconds=settings.cancel_wait_seconds,
            ),
            slots=asyncio.Semaphore(settings.max_concurrent),
            rendering=asyncio.Semaphore(RENDERING_SLOTS),
        )
        self._accepting = True
        for record in journal.interrupted_on_open:
            self._context.progress.announce(
                record, Severity.WARNING, f"{record.operation} interrupted"
            )

    @property
    def running(self) -> frozenset[str]:
        """Ids of operations with background work in progress (pending or running)."""
        return self._context.tasks.running

    def get(self, operation_id: str) -> OperationRecord | None:
        """The current record of an operation, or None."""
        return self._journal.get(operation_id)

    # accepting work

    async def submit(self, request: OperationRequest) -> tuple[OperationRecord, bool]:
        """Validate, record and start an operation; returns (record, created) without waiting.

        created is False when the operation_id already named this request and no new run was
        started. Raises `RequestError` subclasses for requests that cannot be accepted.
        """
        self._check_accepting()
        operation_id = operation_id_of(request)
        while True:
            existing = self._journal.get(operation_id)
            if existing is not None:
                check_same_request(
                    self.declaration,
                    existing,
                    request,
                    default_cluster=self._default_cluster.name,
                )
                if existing.state is not OperationState.INTERRUPTED or (
                    operation_id in self._context.tasks
                ):
                    return existing, False
            admitted = await self._admission.admit(request, existing)
            if self._journal.get(operation_id) is not existing:
                continue  # another request for this id was recorded meanwhile: decide again
            self._check_accepting()
            return self._start(admitted, operation_id, existing), True

    def _start(
        self, admitted: AdmittedRequest, operation_id: str, previous: OperationRecord | None
    ) -> OperationRecord:
        """Record the admitted request's next attempt PENDING and start its task."""
        record = admitted.pending_record(
            mesh=self.declaration.mesh, operation_id=operation_id, previous=previous
        )
        try:
            self._journal.check_size(record)
        except RecordTooLarge as exc:
            raise InvalidArgument("request", str(exc)) from exc
        self._journal.put(record)
        verb = "resumed" if previous is not None else "accepted"
        self._context.progress.announce(
            record,
            Severity.INFO,
            f"{record.operation}{' (delete)' if record.delete else ''} {verb}, "
            f"attempt {record.attempt}",
            details=f"requested by {record.username}" if record.username else "",
        )
        self._context.tasks.start(
            operation_id, record.attempt, run_operation(self._context, admitted, operation_id)
        )
        _log.info(
            "operation.accepted",
            mesh=self.declaration.mesh,
            operation_id=operation_id,
            operation=record.operation,
            attempt=record.attempt,
            clusters=list(record.clusters),
        )
        return record

    async def dry_run(self, request: OperationRequest) -> DryRun:
        """Validate ``request`` as `submit` does, then find what it would change on each target
        cluster with server-side dry runs, before returning. Nothing is recorded: no journal
        entry, no events, no operation_id (the request's is ignored).

        Raises `RequestError` subclasses for requests `submit` would refuse; a cluster's dry run
        that fails (a refused write, the deadline) is that cluster's error, and FAILED.
        """
        self._check_accepting()
        return await dry_runs.dry_run(self._context, await self._admission.admit(request, None))

    async def render(self, request: OperationRequest) -> Rendering:
        """The manifests ``request`` would apply (validated as `submit` validates it; its first
        cluster, else the adapter's, is the one rendered for). Nothing is recorded.

        Raises `RequestError` subclasses: those `submit` raises, FAILED_PRECONDITION when the
        charts cannot be rendered, UNAVAILABLE when the cluster cannot be read.
        """
        self._check_accepting()
        admitted = await self._admission.admit(request, None)
        return await operation_renders.render(self._context, admitted)

    async def cluster_target(self, cluster: RequestedCluster, *, field: str) -> ClusterTarget:
        """The target a request's cluster names (see `ClusterTargets.target`)."""
        return await self._admission.clusters.target(cluster, field=field)

    def _check_accepting(self) -> None:
        if not self._accepting:
            raise Unavailable(
                "the adapter is shutting down; send the request again (same operation_id) once "
                "it is back"
            )

    # stopping

    async def cancel(self, operation_id: str) -> OperationRecord:
        """Stop a pending or running operation and return its record (CANCELLED once stopped)."""
        record = self._journal.get(operation_id)
        if record is None:
            raise NotFound(f"operation_id: no operation {quoted(operation_id)} is recorded")
        if operation_id not in self._context.tasks or record.state in TERMINAL_STATES:
            return record
        if await self._context.tasks.cancel(operation_id):
            self._settle(operation_id, OperationState.CANCELLED)
        current = self._journal.get(operation_id)
        assert current is not None
        return current

    def _settle(self, operation_id: str, state: OperationState) -> None:
        """Record a final state for work whose task ended without doing so itself.

        A task cancelled before it first ran never enters `run_operation`, so nothing else
        would.
        """
        record = self._journal.get(operation_id)
        if record is not None and self.declaration.operation(record.operation) is not None:
            self._context.progress.finish(operation_id, state, None)
        self._context.tasks.done(operation_id)
        self._context.progress.forget(operation_id)

    async def shutdown(self, grace_seconds: float = 10.0) -> None:
        """Stop accepting, interrupt running work (recorded INTERRUPTED), flush the event log."""
        self._accepting = False
        left = await self._context.tasks.interrupt_all(grace_seconds=grace_seconds)
        for operation_id in left:
            # Never started, or ignored cancellation within the grace period: record it anyway.
            self._settle(operation_id, OperationState.INTERRUPTED)
        self._context.progress.events.flush()
        _log.info("runner.stopped", mesh=self.declaration.mesh)
