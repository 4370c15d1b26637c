"""The replay window of the event log: the newest events, bounded by count and encoded size."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from adapters.kit.run.events import Event

__all__ = ["DEFAULT_RETENTION_BYTES", "RetainedEvents"]

DEFAULT_RETENTION_BYTES = 64 * 1024 * 1024
"""Retained events' encoded size at most, by default (the oldest go first)."""


class RetainedEvents:
    """Events kept for replay, oldest first; the oldest go once either bound is passed (the
    newest event always stays, however large)."""

    def __init__(self, *, count: int, size_bytes: int) -> None:
        if count < 1:
            raise ValueError("event retention must be at least 1")
        if size_bytes < 1:
            raise ValueError("event retention bytes must be at least 1")
        self.count = count
        self.size_bytes = size_bytes
        self._events: deque[Event] = deque()
        self._sizes: deque[int] = deque()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self._events)

    @property
    def bytes(self) -> int:
        """Encoded size of the retained events."""
        return self._bytes

    @property
    def oldest_sequence(self) -> int:
        """Sequence of the oldest retained event (0 when none is retained)."""
        return self._events[0].sequence if self._events else 0

    def keep(self, event: Event, size: int) -> None:
        """Keep ``event`` (``size`` bytes encoded); drop the oldest beyond the bounds."""
        self._events.append(event)
        self._sizes.append(size)
        self._bytes += size
        while len(self._events) > 1 and (
            len(self._events) > self.count or self._bytes > self.size_bytes
        ):
            self._events.popleft()
            self._bytes -= self._sizes.popleft()

    def after(self, sequence: int, operation_id: str) -> list[Event]:
        """The retained events after ``sequence``, of ``operation_id`` when it is not empty."""
        return [
            event
            for event in self._events
            if event.sequence > sequence
            and (not operation_id or event.operation_id == operation_id)
        ]
