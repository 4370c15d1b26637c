"""What every load transport (HTTP connection, gRPC channel) offers the run loop."""

from __future__ import annotations

from typing import Protocol

from coordinator.perf.recording import Tally
from coordinator.perf.scheduling import Schedule


class TransportError(Exception):
    """A request that got no answer at all; `kind` is "connection refused",
    "connect" (any other failure to connect), "read", "timeout" or "protocol"."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Transport(Protocol):
    """One connection: one request in flight at a time."""

    async def request(self) -> str:
        """Send one request; return its status code as text, or raise TransportError."""
        ...

    async def run_closed_loop(self, schedule: Schedule, tally: Tally) -> None:
        """Send back-to-back until the schedule is exhausted, counting into `tally`."""
        ...

    def failed(self, code: str) -> bool:
        """Whether an answered request with this code counts as an error."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...
