"""The hub's persistence: append events to the store, then publish them to the watchers.

Appends and publishing are serialised, so cursor order is publish order. When the store is
shared with other coordinators (PostgreSQL), events they stored can have cursors between ours,
so what is published is what the store holds after the last published cursor (one read per
append, not one per watcher) instead of only what this coordinator stored itself.
"""

from __future__ import annotations

import asyncio

from coordinator.server.event_watch import Fanout
from coordinator.store.base import Store
from coordinator.store.records import EventRecord, StoredEvent

__all__ = ["EventPublisher"]

_TAIL_PAGE = 1000


class EventPublisher:
    """Stores events and hands them, in cursor order, to the fan-out."""

    def __init__(self, store: Store, fanout: Fanout, *, shared: bool) -> None:
        self._store = store
        self._fanout = fanout
        self.shared = shared
        """Other coordinators may write the store too."""
        self._lock = asyncio.Lock()
        self._published_cursor = 0

    async def start(self) -> None:
        """Publish from the store's newest event on (watchers replay what came before)."""
        self._published_cursor = await self._store.latest_cursor()

    async def append(self, records: list[EventRecord]) -> None:
        """Store, then publish in cursor order (serialised so publish order is cursor order)."""
        async with self._lock:
            stored = await self._store.append_events(records)
            if self.shared:
                stored = await self._read_tail()
            if stored:
                self._published_cursor = max(self._published_cursor, stored[-1].cursor)
                self._fanout.publish(stored)

    async def publish_tail(self) -> None:
        """Publish whatever the store holds past the last published cursor (shared stores)."""
        async with self._lock:
            stored = await self._read_tail()
            if stored:
                self._published_cursor = stored[-1].cursor
                self._fanout.publish(stored)

    async def poll(self, interval_seconds: float) -> None:
        """Shared store: also publish, now and then, events other coordinators stored from
        adapters this one does not follow (one read per interval for the hub, not per watcher)."""
        while True:
            await asyncio.sleep(interval_seconds)
            if self._fanout.watcher_count:
                await self.publish_tail()

    async def _read_tail(self) -> list[StoredEvent]:
        """Everything the store holds after the last published cursor, whoever stored it."""
        tail: list[StoredEvent] = []
        cursor = self._published_cursor
        while True:
            page = await self._store.events_after(cursor, None, _TAIL_PAGE)
            tail.extend(page)
            if len(page) < _TAIL_PAGE:
                return tail
            cursor = page[-1].cursor
