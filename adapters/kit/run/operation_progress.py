"""Reporting an operation's progress: each change of its record goes to the journal, the
metrics and the event log together, so the three never disagree."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import structlog

from adapters.kit.model.records import (
    TERMINAL_STATES,
    ClusterResult,
    ClusterTarget,
    ErrorDetail,
    OperationRecord,
    OperationState,
    Severity,
)
from adapters.kit.run.event_log import EventLog
from adapters.kit.run.events import NewEvent
from adapters.kit.run.journal import OperationJournal
from adapters.kit.run.metrics import AdapterMetrics
from adapters.kit.run.operation_outcomes import final_record
from adapters.kit.run.seam import OperationEmitter

__all__ = ["OperationProgress"]

_log = structlog.get_logger(__name__)

_FINAL_SEVERITY = {OperationState.SUCCEEDED: Severity.INFO, OperationState.FAILED: Severity.ERROR}
"""An operation's last event is a WARNING unless it succeeded or failed."""


class OperationProgress:
    """Records what happens to operations in ``journal``, ``metrics`` and ``events``."""

    def __init__(
        self, journal: OperationJournal, events: EventLog, metrics: AdapterMetrics | None
    ) -> None:
        self.journal = journal
        self.events = events
        self._metrics = metrics
        self._started_at: dict[str, float] = {}

    def current(self, operation_id: str) -> OperationRecord:
        """The record of an operation this runner is working on."""
        record = self.journal.get(operation_id)
        assert record is not None
        return record

    def announce(
        self, record: OperationRecord, severity: Severity, summary: str, *, details: str = ""
    ) -> None:
        """An event for ``record``'s state as recorded (accepted, resumed, interrupted)."""
        if self._metrics is not None and record.state in (
            OperationState.PENDING,
            OperationState.INTERRUPTED,
        ):
            self._metrics.operation_state(record.operation, record.state)
        self.events.append(
            NewEvent(
                severity=severity,
                summary=summary,
                operation_id=record.operation_id,
                operation=record.operation,
                details=details or ("" if record.error is None else record.error.message),
                error=record.error,
                operation_state=record.state,
            )
        )

    def start(self, operation_id: str, targets: tuple[ClusterTarget, ...]) -> OperationRecord:
        """Record the operation RUNNING on each of ``targets`` from now."""
        record = dataclasses.replace(
            self.current(operation_id),
            state=OperationState.RUNNING,
            start_time=datetime.now(UTC),
            cluster_results=tuple(
                ClusterResult(cluster=t.name, state=OperationState.RUNNING) for t in targets
            ),
        )
        self.journal.put(record)
        if self._metrics is not None:
            self._metrics.operation_state(record.operation, record.state)
        self._started_at[operation_id] = asyncio.get_running_loop().time()
        self.announce(
            record, Severity.INFO, f"{record.operation} started on {', '.join(record.clusters)}"
        )
        return record

    def emitter(self, record: OperationRecord, cluster: str) -> OperationEmitter:
        """What the executor reports the running operation's events on ``cluster`` with."""

        def emit(
            severity: Severity,
            summary: str,
            *,
            component: str = "",
            details: str = "",
            error: ErrorDetail | None = None,
        ) -> None:
            self.events.append(
                NewEvent(
                    severity=severity,
                    summary=summary,
                    operation_id=record.operation_id,
                    operation=record.operation,
                    details=details,
                    error=error,
                    component=component,
                    cluster=cluster,
                    operation_state=OperationState.RUNNING,
                )
            )

        return emit

    def cluster_finished(self, operation_id: str, result: ClusterResult) -> None:
        """Record one cluster's final result, and say so."""
        current = self.current(operation_id)
        current = dataclasses.replace(
            current,
            cluster_results=tuple(
                result if r.cluster == result.cluster else r for r in current.cluster_results
            ),
        )
        self.journal.put(current)
        failed = result.state is OperationState.FAILED
        self.events.append(
            NewEvent(
                severity=Severity.ERROR if failed else Severity.INFO,
                summary=f"{current.operation} {'failed' if failed else 'succeeded'} on "
                f"{result.cluster}" + (f": {result.summary}" if result.summary else ""),
                operation_id=operation_id,
                operation=current.operation,
                cluster=result.cluster,
                error=result.error,
                operation_state=current.state,
            )
        )

    def finish(self, operation_id: str, state: OperationState, error: ErrorDetail | None) -> None:
        """Record the operation ended in ``state`` (nothing when it already ended)."""
        record = self.journal.get(operation_id)
        if record is None or record.state in TERMINAL_STATES:
            return
        record = final_record(record, state, error)
        self.journal.put(record)
        self._measure(operation_id, record)
        self.events.append(
            NewEvent(
                severity=_FINAL_SEVERITY.get(record.state, Severity.WARNING),
                summary=f"{record.operation} {record.state.value.lower()}",
                operation_id=operation_id,
                operation=record.operation,
                error=record.error,
                operation_state=record.state,
                details="" if record.error is None else record.error.message,
            )
        )
        _log.info(
            "operation.finished",
            operation_id=operation_id,
            operation=record.operation,
            state=record.state.value,
            code=record.error.code if record.error else "",
        )

    def forget(self, operation_id: str) -> None:
        """The operation's work is over: drop what timed it."""
        self._started_at.pop(operation_id, None)

    def _measure(self, operation_id: str, record: OperationRecord) -> None:
        if self._metrics is None:
            return
        self._metrics.operation_state(record.operation, record.state)
        started = self._started_at.get(operation_id)
        if started is not None:
            self._metrics.operation_duration(
                record.operation, asyncio.get_running_loop().time() - started
            )
