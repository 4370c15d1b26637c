"""Where one adapter replica's event follower stands: kept by the follower, shown by the hub."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

__all__ = ["FollowerState", "FollowerStatus"]


@dataclass(frozen=True, kw_only=True)
class FollowerStatus:
    """How far the hub got with one replica's event stream."""

    address: str
    mesh: str
    source: str
    last_sequence: int
    connected: bool
    last_error: str
    last_gap: str
    """The most recent gap: which events were skipped and why ("" when none since start)."""
    skipped_events: int
    errors: int
    buffered_events: int
    """Read from the stream, not stored yet."""
    delay_seconds: float
    """How old the newest stored event was when it was stored (the adapter's clock)."""

    @property
    def feed_error(self) -> str:
        """What ListAdapters shows: the current stream error, else the last gap."""
        return self.last_error or self.last_gap


class FollowerState:
    """The live, mutable state of one replica's follower; `status` is its snapshot."""

    def __init__(self, address: str, mesh: str) -> None:
        self.address = address
        self.mesh = mesh
        self.source = ""
        self.last_sequence = 0
        self.connected = False
        self.last_error = ""
        self.last_gap = ""
        self.skipped_events = 0
        self.errors = 0
        self.buffered = 0
        self.delay_seconds = 0.0
        self.stream_id = ""
        self.failures_here = 0
        """Consecutive non-transient stream failures at ``last_sequence``."""
        self.gap_after: int | None = None
        """Set when resuming from 0 after OUT_OF_RANGE: the position the gap starts after."""
        self.wakeup = asyncio.Event()
        self.operation_states: dict[str, str] = {}

    def status(self) -> FollowerStatus:
        """A snapshot for ListAdapters and the metrics."""
        return FollowerStatus(
            address=self.address,
            mesh=self.mesh,
            source=self.source,
            last_sequence=self.last_sequence,
            connected=self.connected,
            last_error=self.last_error,
            last_gap=self.last_gap,
            skipped_events=self.skipped_events,
            errors=self.errors,
            buffered_events=self.buffered,
            delay_seconds=self.delay_seconds,
        )
