"""The audit trail's rows: who called what, what was decided, and how it ended.

One table (``audit_records``, migration 4) written and read through the two fetch primitives
both SQL backends share, so the statements, the paging and the pruning are spelled once.
Records are listed newest first by their id (ids grow in insertion order); a page token is the
last id a page returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coordinator.store.json_values import dump_json
from coordinator.store.records import _require_aware
from coordinator.store.rows import RowCodec
from coordinator.store.statements import Dialect, Query

__all__ = ["AuditFilter", "AuditRecord"]

AUDIT_COLUMNS = (
    "record_id",
    "recorded_at",
    "subject",
    "uid",
    "groups",
    "authenticated_by",
    "source",
    "method",
    "mesh",
    "operation_id",
    "namespace",
    "decision",
    "outcome",
    "reason",
)
_MAX_REASON = 1000


@dataclass(frozen=True, kw_only=True)
class AuditRecord:
    """One audited call. ``record_id`` is 0 until the store assigns it."""

    recorded_at: datetime
    subject: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    authenticated_by: str = ""
    source: str = ""
    method: str
    mesh: str = ""
    operation_id: str = ""
    namespace: str = ""
    decision: str
    """"allow", "deny" (PERMISSION_DENIED) or "unauthenticated"."""
    outcome: str
    """The call's status code name: "OK", "PERMISSION_DENIED", "NOT_FOUND", ..."""
    reason: str = ""
    record_id: int = 0

    def __post_init__(self) -> None:
        _require_aware("recorded_at", self.recorded_at)
        if len(self.reason) > _MAX_REASON:
            object.__setattr__(self, "reason", self.reason[: _MAX_REASON - 3] + "...")


@dataclass(frozen=True, kw_only=True)
class AuditFilter:
    """Which records to list; unset fields match everything, times are [since, until)."""

    subject: str | None = None
    decision: str | None = None
    method: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        _require_aware("since", self.since)
        _require_aware("until", self.until)


def insert_sql(dialect: Dialect) -> str:
    """Insert one record, returning its id."""
    columns = AUDIT_COLUMNS[1:]
    values = ", ".join(
        dialect.json_placeholder if column == "groups" else dialect.placeholder
        for column in columns
    )
    return f"INSERT INTO audit_records ({', '.join(columns)}) VALUES ({values}) RETURNING record_id"


def insert_params(record: AuditRecord, codec: RowCodec) -> tuple[object, ...]:
    """Parameters for :func:`insert_sql`."""
    return (
        codec.encode_time(record.recorded_at),
        record.subject,
        record.uid,
        dump_json(list(record.groups)),
        record.authenticated_by,
        record.source,
        record.method,
        record.mesh,
        record.operation_id,
        record.namespace,
        record.decision,
        record.outcome,
        record.reason,
    )


def list_query(dialect: Dialect, filter: AuditFilter, before_id: int | None, limit: int) -> Query:
    """Newest first, strictly before ``before_id`` when paging."""
    p = dialect.placeholder
    conditions: list[str] = []
    params: list[object] = []
    for column in ("subject", "decision", "method"):
        value = getattr(filter, column)
        if value is not None:
            conditions.append(f"{column} = {p}")
            params.append(value)
    if filter.since is not None:
        conditions.append(f"recorded_at >= {p}")
        params.append(dialect.encode_time(filter.since))
    if filter.until is not None:
        conditions.append(f"recorded_at < {p}")
        params.append(dialect.encode_time(filter.until))
    if before_id is not None:
        conditions.append(f"record_id < {p}")
        params.append(before_id)
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    sql = (
        f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit_records {where}"
        f"ORDER BY record_id DESC LIMIT {p}"
    )
    return Query(sql=sql, params=(*params, limit))


def prune_by_age_sql(dialect: Dialect) -> str:
    """Delete records older than a time, returning one row per deleted record."""
    return f"DELETE FROM audit_records WHERE recorded_at < {dialect.placeholder} RETURNING 1"


def prune_by_count_sql(dialect: Dialect) -> str:
    """Delete all but the newest N records (N bound as the offset), one row per deletion."""
    return (
        "DELETE FROM audit_records WHERE record_id <= (SELECT record_id FROM audit_records "
        f"ORDER BY record_id DESC LIMIT 1 OFFSET {dialect.placeholder}) RETURNING 1"
    )


def record_from_row(row: Sequence[Any], codec: RowCodec) -> AuditRecord:
    """A record from a row in AUDIT_COLUMNS order."""
    (
        record_id,
        recorded_at,
        subject,
        uid,
        groups,
        authenticated_by,
        source,
        method,
        mesh,
        operation_id,
        namespace,
        decision,
        outcome,
        reason,
    ) = row
    return AuditRecord(
        record_id=int(record_id),
        recorded_at=codec.decode_time(recorded_at),
        subject=subject,
        uid=uid,
        groups=tuple(codec.decode_json(groups)),
        authenticated_by=authenticated_by,
        source=source,
        method=method,
        mesh=mesh,
        operation_id=operation_id,
        namespace=namespace,
        decision=decision,
        outcome=outcome,
        reason=reason,
    )


def decode_page_token(token: str) -> int | None:
    """An audit page token (the last id returned); ValueError when malformed."""
    if not token:
        return None
    if not token.isdigit() or len(token) > 20:
        raise ValueError(f"invalid audit page token {token[:40]!r}")
    return int(token)
