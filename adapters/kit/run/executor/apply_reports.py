"""What applying reports: each step of progress as one event about its component, and the
outcome as the cluster's result."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from adapters.kit.model.plans import ApplyOutcome, Progress, ProgressKind
from adapters.kit.model.records import ClusterResult, ClusterTarget, OperationState, Severity
from adapters.kit.run.seam import OperationEmitter

__all__ = ["applied_result", "progress_events"]

_log = structlog.get_logger(__name__)

_SEVERITY: dict[ProgressKind, Severity] = {kind: Severity.INFO for kind in ProgressKind}
_SEVERITY[ProgressKind.FAILED] = Severity.ERROR

_DETAILED = frozenset({ProgressKind.FAILED, ProgressKind.KEPT})
"""Steps whose message is worth an event's details: why it failed, why it stays."""
_VERB: dict[ProgressKind, str] = {
    ProgressKind.APPLIED: "applied",
    ProgressKind.UNCHANGED: "unchanged",
    ProgressKind.DELETED: "deleted",
    ProgressKind.PRUNED: "pruned",
    ProgressKind.KEPT: "kept",
    ProgressKind.WAITING: "waiting",
    ProgressKind.READY: "ready",
    ProgressKind.FAILED: "failed",
    ProgressKind.HOOK_COMPLETED: "hook completed",
}


def progress_events(emit: OperationEmitter) -> Callable[[Progress], None]:
    """The progress sink emitting each step of applying as one event about its component."""

    def sink(progress: Progress) -> None:
        details = progress.message
        if progress.reason:
            details = f"{progress.reason}: {details}" if details else progress.reason
        emit(
            _SEVERITY[progress.kind],
            f"{progress.ref} {_VERB[progress.kind]}",
            component=str(progress.ref),
            details=details if progress.kind in _DETAILED else "",
        )

    return sink


def applied_result(
    target: ClusterTarget, outcome: ApplyOutcome, verb: str, total: int
) -> ClusterResult:
    """The SUCCEEDED result of applying (or deleting) ``total`` objects with ``outcome``."""
    if outcome.noop:
        summary = f"no changes: {outcome.unchanged} objects already as planned"
    else:
        summary = (
            f"{outcome.applied} applied, {outcome.unchanged} unchanged, {outcome.deleted} "
            f"deleted, {outcome.ready} ready"
        )
    _log.debug("cluster result", cluster=target.name, verb=verb, total=total, summary=summary)
    return ClusterResult(
        cluster=target.name,
        state=OperationState.SUCCEEDED,
        objects_applied=outcome.applied,
        objects_deleted=outcome.deleted,
        objects_unchanged=outcome.unchanged,
        summary=summary,
    )
