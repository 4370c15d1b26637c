"""One event as one line of JSON in the event file, and back.

Reading caps every text field again: a file written by an older adapter may hold longer text.
"""

from __future__ import annotations

import json
from typing import Any

from adapters.kit.model.records import OperationState, Severity
from adapters.kit.run.events import Event, capped_error
from adapters.kit.run.state_files import (
    error_from_json,
    error_to_json,
    time_from_json,
    time_to_json,
)
from serving.event_text import cap_event_field

__all__ = ["event_from_json", "event_line"]


def event_line(event: Event) -> str:
    """The event's line in the file (without the newline); mesh and stream are the file's."""
    return json.dumps(
        {
            "sequence": event.sequence,
            "operation_id": event.operation_id,
            "operation": event.operation,
            "severity": event.severity.value,
            "summary": event.summary,
            "details": event.details,
            "error": error_to_json(event.error),
            "component": event.component,
            "cluster": event.cluster,
            "timestamp": time_to_json(event.timestamp),
            "operation_state": (
                None if event.operation_state is None else event.operation_state.value
            ),
        },
        separators=(",", ":"),
    )


def event_from_json(data: dict[str, Any], *, mesh: str, stream_id: str) -> Event:
    """The event a decoded line holds; raises ValueError, KeyError or TypeError when it is
    not one."""
    timestamp = time_from_json(data["timestamp"])
    if timestamp is None:
        raise ValueError("event without timestamp")
    state = data.get("operation_state")
    return Event(
        sequence=int(data["sequence"]),
        operation_id=cap_event_field("operation_id", str(data.get("operation_id", ""))),
        operation=cap_event_field("operation", str(data.get("operation", ""))),
        severity=Severity(data["severity"]),
        summary=cap_event_field("summary", str(data.get("summary", ""))),
        details=cap_event_field("details", str(data.get("details", ""))),
        error=capped_error(error_from_json(data.get("error"))),
        component=cap_event_field("component", str(data.get("component", ""))),
        cluster=cap_event_field("cluster", str(data.get("cluster", ""))),
        timestamp=timestamp,
        operation_state=None if state is None else OperationState(state),
        mesh=mesh,
        stream_id=stream_id,
    )
