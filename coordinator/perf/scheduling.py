"""Which request to send next, and when: shared by every connection of a run."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(kw_only=True)
class Schedule:
    """Hands out request indices in order; None once the run should send no more.

    With `interval` > 0 (constant rate) request i is due at `start + i * interval` and nothing is
    due at or after `deadline`; with `interval` 0 (max-throughput) indices are handed out until
    the clock passes `deadline`. `limit` > 0 caps the number of requests in both modes.
    """

    start: float
    interval: float
    deadline: float
    limit: int
    issued: int = 0

    def next_index(self) -> int | None:
        """Claim the next request index, or None when the run is over."""
        index = self.issued
        if self.limit and index >= self.limit:
            return None
        if self.interval:
            if self.start + index * self.interval >= self.deadline:
                return None
        elif time.monotonic() >= self.deadline:
            return None
        self.issued = index + 1
        return index

    def intended_time(self, index: int) -> float:
        """Monotonic time request `index` is due (constant-rate mode)."""
        return self.start + index * self.interval
