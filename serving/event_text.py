"""How much free text one event may carry, and how longer text is cut (with a visible marker).

Every text field of an event has a byte budget; together they stay well below
`serving.message_limits.MAX_EVENT_BYTES` whatever produced the text (a request field, a
Kubernetes error, a chart), so one event can always be stored, streamed and read. The adapter
applies this when it appends an event; the coordinator applies it again to what it receives, so
an adapter built without the kit cannot make its stored events larger either.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from serving.message_limits import MAX_EVENT_BYTES

__all__ = ["EVENT_FIELD_BYTES", "TRUNCATION_MARKER", "cap_event_field", "truncate_text"]

TRUNCATION_MARKER = "… [truncated {dropped} bytes]"
"""Appended to cut text; ``dropped`` is how many UTF-8 bytes were left out."""

EVENT_FIELD_BYTES: Mapping[str, int] = MappingProxyType(
    {
        "operation_id": 1024,
        "operation": 1024,
        "summary": 2 * 1024,
        "details": 64 * 1024,
        "component": 1024,
        "cluster": 1024,
        "mesh": 256,
        "event_stream_id": 256,
        "error.code": 256,
        "error.message": 32 * 1024,
        "error.probable_cause": 8 * 1024,
        "error.suggested_remediation": 8 * 1024,
    }
)
"""UTF-8 bytes each text field of an event keeps at most (``error.*``: its error detail)."""

_FIXED_FIELDS_ALLOWANCE = 1024
"""Numbers, timestamps, enum values and protobuf tags/lengths of one event, generously."""

if sum(EVENT_FIELD_BYTES.values()) + _FIXED_FIELDS_ALLOWANCE > MAX_EVENT_BYTES // 2:
    raise AssertionError("event field budgets must stay well below MAX_EVENT_BYTES")


def truncate_text(text: str, max_bytes: int) -> str:
    """``text`` when its UTF-8 form fits in ``max_bytes``; else a prefix ending in the marker.

    The result never exceeds ``max_bytes`` and never splits a character.
    """
    encoded = text.encode("utf-8", errors="replace")
    if len(encoded) <= max_bytes:
        return text
    marker = TRUNCATION_MARKER.format(dropped=len(encoded))
    keep = max(0, max_bytes - len(marker.encode("utf-8")))
    # Dropping the bytes of a split character keeps the prefix valid UTF-8.
    prefix = encoded[:keep].decode("utf-8", errors="ignore")
    dropped = len(encoded) - len(prefix.encode("utf-8"))
    cut = prefix + TRUNCATION_MARKER.format(dropped=dropped)
    while len(cut.encode("utf-8")) > max_bytes and prefix:
        prefix = prefix[:-1]
        dropped = len(encoded) - len(prefix.encode("utf-8"))
        cut = prefix + TRUNCATION_MARKER.format(dropped=dropped)
    return cut


def cap_event_field(field: str, text: str) -> str:
    """``text`` cut to the budget of event field ``field`` (a key of `EVENT_FIELD_BYTES`)."""
    return truncate_text(text, EVENT_FIELD_BYTES[field])
