"""What a dry run reports: per cluster, each object an operation would create, change or delete.

`previewing` fills these in from the API server's dry-run answers; the runner gathers one
`ClusterDryRun` per target cluster into a `DryRun`; `messages` turns them into protobuf.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, replace

from adapters.kit.model.objects import ObjectRef
from adapters.kit.model.records import ClusterResult, ErrorDetail, OperationRecord, OperationState
from serving.message_limits import ADAPTER_RESPONSE_BYTES

__all__ = [
    "DRY_RUN_ANSWER_BYTES",
    "MAX_CHANGED_FIELDS",
    "ChangeAction",
    "ClusterDryRun",
    "DryRun",
    "ObjectChange",
    "bounded_changes",
    "dry_run_result",
]

DRY_RUN_ANSWER_BYTES = ADAPTER_RESPONSE_BYTES // 2
"""What a dry run's listed changes may take in its answer, all clusters together; changes
beyond it are counted in `ClusterDryRun.omitted`, not listed."""
MAX_CHANGED_FIELDS = 20
"""Field paths listed per changed object."""


class ChangeAction(enum.Enum):
    """What an operation would do to one object (names mirror ``ObjectChangeAction``)."""

    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    PRUNE = "PRUNE"


@dataclass(frozen=True, kw_only=True)
class ObjectChange:
    """One object that would change."""

    action: ChangeAction
    ref: ObjectRef
    changed_fields: tuple[str, ...] = ()
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class ClusterDryRun:
    """A dry run's outcome on one cluster."""

    cluster: str
    changes: tuple[ObjectChange, ...] = ()
    unchanged: int = 0
    omitted: int = 0
    error: ErrorDetail | None = None


@dataclass(frozen=True, kw_only=True)
class DryRun:
    """A whole dry run: the resolved request (never journaled) and one outcome per cluster."""

    record: OperationRecord
    clusters: tuple[ClusterDryRun, ...]


def _size(change: ObjectChange) -> int:
    """About what ``change`` takes in the answer (field overhead included)."""
    ref = change.ref
    texts = (ref.api_version, ref.kind, ref.namespace or "", ref.name, change.message)
    return 16 + sum(len(t) + 2 for t in texts) + sum(len(f) + 2 for f in change.changed_fields)


def bounded_changes(outcome: ClusterDryRun, budget: int) -> ClusterDryRun:
    """``outcome`` with the changes that fit in ``budget`` bytes; the rest counted as omitted."""
    used = 0
    for index, change in enumerate(outcome.changes):
        used += _size(change)
        if used > budget:
            left = len(outcome.changes) - index
            return replace(outcome, changes=outcome.changes[:index], omitted=outcome.omitted + left)
    return outcome


def dry_run_result(outcome: ClusterDryRun) -> ClusterResult:
    """The per-cluster result of a dry run: counts of what would be written, and a summary."""
    counts = Counter(change.action for change in outcome.changes)
    created, updated = counts[ChangeAction.CREATE], counts[ChangeAction.UPDATE]
    deleted = counts[ChangeAction.DELETE] + counts[ChangeAction.PRUNE]
    summary = (
        f"dry run: {created} to create, {updated} to change, {deleted} to delete, "
        f"{outcome.unchanged} unchanged"
    )
    if outcome.error is not None:
        summary = f"dry run failed: {outcome.error.message}"
    return ClusterResult(
        cluster=outcome.cluster,
        state=OperationState.FAILED if outcome.error else OperationState.SUCCEEDED,
        error=outcome.error,
        objects_applied=created + updated,
        objects_deleted=deleted,
        objects_unchanged=outcome.unchanged,
        summary=summary,
    )
