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
from serving.event_text import EVENT_FIELD_BYTES, cap_event_field
from serving.message_limits import MAX_EVENT_BYTES

__all__ = [
    "TERMINAL_STATES",
    "bounded_event",
    "event_record",
    "event_source",
    "gap_record",
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


_NUL = "\x00"
_REPLACEMENT = "\ufffd"
_TEXT_FIELDS = tuple(name for name in EVENT_FIELD_BYTES if not name.startswith("error."))
_ERROR_FIELDS = tuple(
    name.removeprefix("error.") for name in EVENT_FIELD_BYTES if name.startswith("error.")
)


def _bounded(message: Any, fields: tuple[str, ...], prefix: str) -> None:
    for name in fields:
        text = getattr(message, name)
        if _NUL in text:
            text = text.replace(_NUL, _REPLACEMENT)
        setattr(message, name, cap_event_field(prefix + name, text))


def _has_nul(event: pb.Event) -> bool:
    return any(_NUL in getattr(event, name) for name in _TEXT_FIELDS) or any(
        _NUL in getattr(event.error, name) for name in _ERROR_FIELDS
    )


def bounded_event(event: pb.Event) -> pb.Event:
    """The event as the coordinator stores it: text within the kit's budgets and without NUL.

    Adapters built on the kit already keep to the budgets; this holds whatever sent the event
    (the store's JSON cannot hold NUL, and one oversized event would be re-sent to every
    watcher). Returns the same message when nothing needs changing.
    """
    if event.ByteSize() <= MAX_EVENT_BYTES and not _has_nul(event):
        return event
    bounded = pb.Event()
    bounded.CopyFrom(event)
    _bounded(bounded, _TEXT_FIELDS, "")
    if bounded.HasField("error"):
        _bounded(bounded.error, _ERROR_FIELDS, "error.")
    return bounded


def gap_record(
    *,
    source: str,
    mesh: str,
    stream_id: str,
    address: str,
    first: int,
    last: int,
    reason: str,
) -> EventRecord:
    """A WARNING the coordinator stores in place of events it could not read.

    It takes the first skipped sequence of the stream, so the stream's position moves past the
    gap (a restarted coordinator resumes after it) and coordinators sharing a store record one
    gap once.
    """
    skipped = f"event {first}" if first == last else f"events {first}..{last}"
    event = pb.Event(
        sequence=first,
        severity=pb.EVENT_SEVERITY_WARNING,
        summary=cap_event_field(
            "summary",
            f"coordinator skipped {skipped} of the {mesh} adapter at {address}: could not read",
        ),
        details=cap_event_field(
            "details",
            f"{reason}. The coordinator went on with the next event; the adapter still has the "
            f"event (StreamEvents after_sequence={first - 1} on {address}) while it retains it.",
        ),
        component="coordinator/event-hub",
        mesh=mesh,
        event_stream_id=stream_id,
    )
    now = datetime.now(UTC)
    event.timestamp.FromDatetime(now)
    return EventRecord(
        source=source,
        sequence=first,
        mesh=mesh,
        operation_id="",
        severity="warning",
        timestamp=now,
        payload=MessageToDict(event, preserving_proto_field_name=True),
    )


def event_record(event: pb.Event, *, source: str, mesh: str) -> EventRecord:
    """The stored form of one adapter event; the payload round-trips to the message."""
    event = bounded_event(event)
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
