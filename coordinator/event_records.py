"""Adapter messages turned into store records, so the hub and the store never share protobuf.

Names follow the store's vocabulary: severities and states are the lower-case enum names without
their prefix ("info", "succeeded"), which is what `OperationFilter`/`EventFilter` compare against.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import MessageToDict

from coordinator.store.records import EventFilter, EventRecord, severity_rank
from meshplane.adapter.v1 import adapter_pb2 as pb

__all__ = [
    "TERMINAL_STATES",
    "event_record",
    "event_source",
    "matches",
    "severity_name",
]

_SEVERITY_PREFIX = "EVENT_SEVERITY_"

TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "interrupted"})
"""States after which an operation changes only when it is started again (a new attempt)."""


def event_source(mesh: str, event_stream_id: str) -> str:
    """The store's identity of one adapter event stream: sequences are unique within it."""
    return f"{mesh}/{event_stream_id}"


def severity_name(severity: int) -> str:
    """``EVENT_SEVERITY_WARNING`` → ``warning``; an unset severity counts as ``info``."""
    if severity == pb.EVENT_SEVERITY_UNSPECIFIED:
        return "info"
    return (
        str(pb.EventSeverity.Name(pb.EventSeverity.ValueType(severity)))
        .removeprefix(_SEVERITY_PREFIX)
        .lower()
    )


def _time(value: Any) -> datetime | None:
    """A protobuf Timestamp as an aware UTC datetime, or None when unset."""
    if value.seconds == 0 and value.nanos == 0:
        return None
    converted: datetime = value.ToDatetime(tzinfo=UTC)
    return converted


def event_record(event: pb.Event, *, source: str, mesh: str) -> EventRecord:
    """The stored form of one adapter event; the payload round-trips to the message."""
    return EventRecord(
        source=source,
        sequence=event.sequence,
        mesh=event.mesh or mesh,
        operation_id=event.operation_id,
        severity=severity_name(event.severity),
        timestamp=_time(event.timestamp) or datetime.now(UTC),
        payload=MessageToDict(event, preserving_proto_field_name=True),
    )


def matches(record: EventRecord, filter: EventFilter) -> bool:
    """The store's event filter, evaluated in memory for events fanned out live."""
    if filter.mesh is not None and record.mesh != filter.mesh:
        return False
    if filter.operation_id is not None and record.operation_id != filter.operation_id:
        return False
    if filter.severity_at_least is not None:
        return severity_rank(record.severity) >= severity_rank(filter.severity_at_least)
    return True
