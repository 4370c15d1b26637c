"""What the adapter's event log holds and how its readers are told to resume: `Event`, the
`NewEvent` a producer appends, and the exceptions that end a subscription.

Free text is capped field by field (`serving.event_text`) whatever produced it, so one event
always fits what the coordinator reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from adapters.kit.model.records import ErrorDetail, OperationState, Severity
from serving.event_text import cap_event_field

__all__ = [
    "Event",
    "EventLogClosed",
    "NewEvent",
    "SequenceOutOfRange",
    "SubscriberOverflow",
    "capped_error",
]


@dataclass(frozen=True, kw_only=True)
class NewEvent:
    """What a producer says about an event; the log adds its sequence, time, mesh and stream.

    `operation_state` is the operation's state after this event.
    """

    severity: Severity
    summary: str
    operation_id: str = ""
    operation: str = ""
    details: str = ""
    error: ErrorDetail | None = None
    component: str = ""
    cluster: str = ""
    operation_state: OperationState | None = None


@dataclass(frozen=True, kw_only=True)
class Event:
    """One entry of the log; `operation_state` is the operation's state after this event."""

    sequence: int
    operation_id: str = ""
    operation: str = ""
    severity: Severity
    summary: str
    details: str = ""
    error: ErrorDetail | None = None
    component: str = ""
    cluster: str = ""
    timestamp: datetime
    operation_state: OperationState | None = None
    mesh: str
    stream_id: str


def capped_error(error: ErrorDetail | None) -> ErrorDetail | None:
    """``error`` with each text field cut to its event budget."""
    if error is None:
        return None
    return ErrorDetail(
        code=cap_event_field("error.code", error.code),
        message=cap_event_field("error.message", error.message),
        probable_cause=cap_event_field("error.probable_cause", error.probable_cause),
        suggested_remediation=cap_event_field(
            "error.suggested_remediation", error.suggested_remediation
        ),
    )


class SubscriberOverflow(Exception):
    """The subscriber fell too far behind; resume with after_sequence=`last_sequence`."""

    def __init__(self, last_sequence: int) -> None:
        super().__init__(f"subscriber fell behind; resume with after_sequence={last_sequence}")
        self.last_sequence = last_sequence


class EventLogClosed(Exception):
    """The log was closed (adapter shutting down); resume with after_sequence=`last_sequence`."""

    def __init__(self, last_sequence: int) -> None:
        super().__init__(f"event log closed; resume with after_sequence={last_sequence}")
        self.last_sequence = last_sequence


class SequenceOutOfRange(Exception):
    """after_sequence cannot be honoured without a gap (dropped by retention, or a reset log)."""
