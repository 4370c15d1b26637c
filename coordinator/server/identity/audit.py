"""The audit trail: every mutating call and every refusal, in the store and in the log.

Records are written as the call ends (allowed calls with their final status; refusals at once),
logged as ``audit`` events at INFO (refusals at WARNING), and pruned by age and count by a
named background task.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from coordinator.store.audit_trail import AuditRecord
from coordinator.store.base import Store
from serving.background_tasks import BackgroundTasks

__all__ = ["AuditLog", "AuditRetention"]

_log = structlog.get_logger("meshplane.audit")


@dataclass(frozen=True, kw_only=True)
class AuditRetention:
    """How long records are kept and how many at most; None keeps them regardless."""

    max_age_seconds: float | None = 30 * 24 * 3600.0
    max_records: int | None = 100_000
    prune_interval_seconds: float = 300.0


class AuditLog:
    """Writes audit records and prunes old ones."""

    def __init__(self, store: Store, retention: AuditRetention | None = None) -> None:
        self._store = store
        self._retention = retention or AuditRetention()
        self._tasks = BackgroundTasks(owner="audit")

    async def record(self, record: AuditRecord) -> None:
        """Log the record and store it (a store failure is logged, never the caller's)."""
        log = _log.warning if record.decision != "allow" else _log.info
        log(
            "audit",
            subject=record.subject,
            groups=list(record.groups),
            source=record.source,
            method=record.method,
            mesh=record.mesh or None,
            operation_id=record.operation_id or None,
            namespace=record.namespace or None,
            decision=record.decision,
            outcome=record.outcome,
            reason=record.reason or None,
        )
        try:
            await self._store.append_audit_record(record)
        except Exception:
            _log.exception("audit.store_failed", method=record.method, subject=record.subject)

    async def prune(self) -> int:
        """Apply the retention once; returns how many records went."""
        retention = self._retention
        older_than = (
            None
            if retention.max_age_seconds is None
            else datetime.now(UTC) - timedelta(seconds=retention.max_age_seconds)
        )
        if older_than is None and retention.max_records is None:
            return 0
        return await self._store.prune_audit_records(
            older_than=older_than, keep_newest=retention.max_records
        )

    async def _prune_forever(self) -> None:
        while True:
            try:
                await self.prune()
            except Exception:
                _log.exception("audit.prune_failed")
            await asyncio.sleep(self._retention.prune_interval_seconds)

    def start(self) -> None:
        """Start pruning in the background."""
        self._tasks.start("prune", self._prune_forever())

    async def stop(self) -> None:
        """Stop pruning."""
        await self._tasks.stop(grace_seconds=2.0)
