"""Audit records at the door: ListAuditRecords requests to filters, records to messages."""

from __future__ import annotations

from datetime import UTC, datetime

from coordinator.store.audit_trail import AuditFilter, AuditRecord
from meshplane.coordinator.v1 import coordinator_pb2 as pb

__all__ = ["DECISIONS", "audit_filter", "audit_record_to_pb"]

DECISIONS = {
    "allow": pb.AUDIT_DECISION_ALLOWED,
    "deny": pb.AUDIT_DECISION_DENIED,
    "unauthenticated": pb.AUDIT_DECISION_UNAUTHENTICATED,
}
_DECISION_NAMES = {value: name for name, value in DECISIONS.items()}


def _time(request: pb.ListAuditRecordsRequest, field: str) -> datetime | None:
    if not request.HasField(field):  # type: ignore[arg-type]
        return None
    value: datetime = getattr(request, field).ToDatetime(tzinfo=UTC)
    return value


def audit_filter(request: pb.ListAuditRecordsRequest) -> AuditFilter:
    """The request's filters; ValueError (INVALID_ARGUMENT) for an end before the start."""
    since = _time(request, "start_time")
    until = _time(request, "end_time")
    if since is not None and until is not None and until < since:
        raise ValueError(
            f"end_time {until.isoformat()} is before start_time {since.isoformat()}; "
            "swap them or widen the range"
        )
    if request.decision and request.decision not in _DECISION_NAMES:
        raise ValueError(f"decision {request.decision} is not an AuditDecision value")
    return AuditFilter(
        subject=request.subject or None,
        decision=_DECISION_NAMES.get(request.decision),
        since=since,
        until=until,
    )


def audit_record_to_pb(record: AuditRecord) -> pb.AuditRecord:
    """One stored record as ListAuditRecords returns it."""
    message = pb.AuditRecord(
        record_id=record.record_id,
        subject=record.subject,
        groups=list(record.groups),
        uid=record.uid,
        authenticated_by=record.authenticated_by,
        source_address=record.source,
        method=record.method,
        mesh=record.mesh,
        operation_id=record.operation_id,
        namespace=record.namespace,
        decision=DECISIONS.get(record.decision, pb.AUDIT_DECISION_UNSPECIFIED),
        outcome=record.outcome,
        reason=record.reason,
    )
    message.time.FromDatetime(record.recorded_at)
    return message
