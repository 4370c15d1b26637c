"""Records to bound parameters and result rows back to records, once for both backends.

The column order is the one ``statements`` spells; what differs per backend is only how a time
and a JSON value are held (text on SQLite, native types on PostgreSQL), which a ``RowCodec``
names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coordinator.store.json_values import dump_json
from coordinator.store.paging import PageKey, encode_page_token
from coordinator.store.records import (
    EventRecord,
    OperationRecord,
    PerfResultRecord,
    StoredEvent,
    severity_rank,
)


@dataclass(frozen=True, kw_only=True)
class RowCodec:
    """How one backend binds a time and reads back a time and a JSON column."""

    encode_time: Callable[[datetime], object]
    decode_time: Callable[[Any], datetime]
    decode_json: Callable[[Any], Any]

    def encode_optional_time(self, value: datetime | None) -> object:
        """A nullable time column's parameter."""
        return None if value is None else self.encode_time(value)

    def decode_optional_time(self, value: Any) -> datetime | None:
        """A nullable time column's value."""
        return None if value is None else self.decode_time(value)


def operation_params(record: OperationRecord, codec: RowCodec) -> tuple[object, ...]:
    """Parameters for ``statements.upsert_operation_sql``, in OPERATION_COLUMNS order."""
    return (
        record.operation_id,
        record.mesh,
        record.operation,
        record.state,
        record.username,
        record.adapter,
        dump_json(record.request),
        dump_json(record.cluster_results),
        None if record.error is None else dump_json(record.error),
        codec.encode_time(record.created_at),
        codec.encode_time(record.updated_at),
        codec.encode_optional_time(record.started_at),
        codec.encode_optional_time(record.finished_at),
    )


def operation_from_row(row: Sequence[Any], codec: RowCodec) -> OperationRecord:
    """An operation from a row in OPERATION_COLUMNS order."""
    (
        operation_id,
        mesh,
        operation,
        state,
        username,
        adapter,
        request,
        cluster_results,
        error,
        created_at,
        updated_at,
        started_at,
        finished_at,
    ) = row
    return OperationRecord(
        operation_id=operation_id,
        mesh=mesh,
        operation=operation,
        state=state,
        username=username,
        adapter=adapter,
        request=codec.decode_json(request),
        cluster_results=codec.decode_json(cluster_results),
        error=None if error is None else codec.decode_json(error),
        created_at=codec.decode_time(created_at),
        updated_at=codec.decode_time(updated_at),
        started_at=codec.decode_optional_time(started_at),
        finished_at=codec.decode_optional_time(finished_at),
    )


def operations_page(
    rows: Sequence[Sequence[Any]], page_size: int, codec: RowCodec
) -> tuple[list[OperationRecord], str]:
    """A page from up to ``page_size + 1`` rows: the extra row only says another page exists."""
    records = [operation_from_row(row, codec) for row in rows[:page_size]]
    if len(rows) <= page_size:
        return records, ""
    last = records[-1]
    return records, encode_page_token(PageKey(created_at=last.created_at, row_id=last.operation_id))


def event_params(event: EventRecord, codec: RowCodec) -> tuple[object, ...]:
    """Parameters for ``statements.insert_event_sql`` (source and sequence twice: the guard)."""
    return (
        event.source,
        event.sequence,
        event.mesh,
        event.operation_id,
        event.severity,
        severity_rank(event.severity),
        codec.encode_time(event.timestamp),
        dump_json(event.payload),
        event.source,
        event.sequence,
    )


def event_from_row(row: Sequence[Any], codec: RowCodec) -> StoredEvent:
    """A stored event from a row in EVENT_COLUMNS order."""
    cursor, source, sequence, mesh, operation_id, severity, occurred_at, payload = row
    return StoredEvent(
        cursor=int(cursor),
        event=EventRecord(
            source=source,
            sequence=int(sequence),
            mesh=mesh,
            operation_id=operation_id,
            severity=severity,
            timestamp=codec.decode_time(occurred_at),
            payload=codec.decode_json(payload),
        ),
    )


def perf_params(record: PerfResultRecord, codec: RowCodec) -> tuple[object, ...]:
    """Parameters for ``statements.upsert_perf_result_sql``, in PERF_COLUMNS order."""
    return (
        record.result_id,
        record.test_id,
        record.name,
        record.mesh,
        codec.encode_time(record.created_at),
        dump_json(record.labels),
        dump_json(record.document),
    )


def perf_from_row(row: Sequence[Any], codec: RowCodec) -> PerfResultRecord:
    """A perf result from a row in PERF_COLUMNS order."""
    result_id, test_id, name, mesh, created_at, labels, document = row
    return PerfResultRecord(
        result_id=result_id,
        test_id=test_id,
        name=name,
        mesh=mesh,
        created_at=codec.decode_time(created_at),
        labels=codec.decode_json(labels),
        document=codec.decode_json(document),
    )
