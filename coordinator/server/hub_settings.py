"""Tuning of the event hub: its followers' batches, buffers and backoff, and its fan-out."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.server.event_watch import DEFAULT_WATCHER_BUFFER

__all__ = ["HubSettings"]


@dataclass(frozen=True, kw_only=True)
class HubSettings:
    """Tuning of the followers and the fan-out."""

    batch_size: int = 200
    """Events appended in one store transaction at most."""
    stream_buffer: int = 2000
    """Events read from a stream ahead of the store; when full, reading pauses."""
    backoff_initial_seconds: float = 0.1
    backoff_max_seconds: float = 5.0
    call_timeout_seconds: float = 10.0
    error_clear_seconds: float = 10.0
    """A reconnected stream keeps showing its last error until it stores an event or stays
    connected this long, so a stream that connects and at once fails again never reads as
    healthy."""
    watcher_buffer: int = DEFAULT_WATCHER_BUFFER
    stop_grace_seconds: float = 5.0
    shared_store: bool | None = None
    """True: other coordinators may write the store (publish from a store read). None: True for
    PostgreSQL, False otherwise."""
    shared_poll_seconds: float = 1.0
    """Shared store: how often to publish events stored by other coordinators on their own."""
    skip_after_failures: int = 3
    """A stream failing this many times in a row at one position with an error that is not a
    transient one (UNKNOWN, INTERNAL, DATA_LOSS...) skips the event there."""
