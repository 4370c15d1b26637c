"""How an adapter's event stream failed: away for now, or stuck on an event no retry can read."""

from __future__ import annotations

import grpc

__all__ = [
    "TRANSIENT_CODES",
    "ReadFailed",
    "StreamEnded",
    "describe_failure",
    "unreadable",
]

_REASON_CHARS = 300

TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
"""Stream endings that say nothing about the next event (the adapter is away, we fell behind)."""


class StreamEnded(Exception):
    """The adapter ended the stream without an error status; reconnect."""


class ReadFailed(Exception):
    """Reading the event stream failed (as opposed to GetInfo or the store)."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def describe_failure(error: Exception) -> str:
    """The error as the follower reports it (status and details), at most 300 characters."""
    if isinstance(error, grpc.RpcError):
        text = f"{error.code().name}: {error.details()}"
    else:
        text = repr(error)
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS] + "…"


def unreadable(error: Exception) -> bool:
    """The stream failed on one event that no retry can read (too large, undecodable)."""
    if not isinstance(error, grpc.RpcError):
        return False
    code, details = error.code(), (error.details() or "").lower()
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return "larger than max" in details
    return code == grpc.StatusCode.INTERNAL and "serializ" in details
