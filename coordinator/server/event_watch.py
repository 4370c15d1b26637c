"""Watchers of the coordinator's event history: replay from the store, then follow live.

The hub hands every newly stored event (in cursor order) to `Fanout.publish`, which offers it to
each registered watcher's bounded buffer without waiting: a slow watcher cannot stall the hub or
other watchers. A watcher whose buffer overflows drops the buffer and re-reads the store from the
last cursor it delivered, so it never loses an event; the cursor it tracks makes delivery exactly
once and in order, across reconnects that pass it back as ``after_cursor``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Iterable

import structlog

from coordinator.server.event_records import matches
from coordinator.store.base import Store
from coordinator.store.records import EventFilter, StoredEvent

__all__ = ["DEFAULT_WATCHER_BUFFER", "Fanout", "Watcher", "watch_store"]

_log = structlog.get_logger(__name__)

DEFAULT_WATCHER_BUFFER = 2000
"""Events one watcher may have waiting before it falls back to reading the store."""

REPLAY_PAGE = 500


class Watcher:
    """One client's live buffer: filled by the hub, drained by the client's stream."""

    def __init__(self, filter: EventFilter, *, limit: int) -> None:
        if limit < 1:
            raise ValueError("a watcher buffer holds at least one event")
        self.filter = filter
        self.limit = limit
        self.buffer: deque[StoredEvent] = deque()
        self.overflowed = False
        self.closed = False
        self.overflows = 0
        self._wakeup = asyncio.Event()

    def offer(self, events: Iterable[StoredEvent]) -> None:
        """Buffer the matching events; past the limit, mark the watcher for a store re-read."""
        if self.overflowed or self.closed:
            return
        added = False
        for stored in events:
            if not matches(stored.event, self.filter):
                continue
            if len(self.buffer) >= self.limit:
                self.buffer.clear()
                self.overflowed = True
                self.overflows += 1
                self._wakeup.set()
                return
            self.buffer.append(stored)
            added = True
        if added:
            self._wakeup.set()

    def close(self) -> None:
        """End the watch after what is buffered (the hub is stopping)."""
        self.closed = True
        self._wakeup.set()

    async def wait(self) -> None:
        """Until there is something to deliver, an overflow to recover from, or the end."""
        while not (self.buffer or self.overflowed or self.closed):
            self._wakeup.clear()
            await self._wakeup.wait()


class Fanout:
    """The registered watchers; `publish` never blocks, so the hub's appends never wait on them."""

    def __init__(self) -> None:
        self._watchers: set[Watcher] = set()
        self._closed = False

    @property
    def watcher_count(self) -> int:
        """Watchers currently registered."""
        return len(self._watchers)

    def add(self, watcher: Watcher) -> None:
        """Register before replaying, so no event falls between the replay and the live tail."""
        if self._closed:
            watcher.close()
        self._watchers.add(watcher)

    def discard(self, watcher: Watcher) -> None:
        """Unregister (always, in the watch's ``finally``)."""
        self._watchers.discard(watcher)

    def publish(self, events: list[StoredEvent]) -> None:
        """Offer newly stored events, ascending by cursor, to every watcher."""
        if not events:
            return
        for watcher in self._watchers:
            watcher.offer(events)

    def close(self) -> None:
        """End every watch; later watches end once their replay is done."""
        self._closed = True
        for watcher in self._watchers:
            watcher.close()


async def watch_store(
    store: Store,
    fanout: Fanout,
    filter: EventFilter,
    *,
    after_cursor: int = 0,
    buffer_limit: int = DEFAULT_WATCHER_BUFFER,
    page_size: int = REPLAY_PAGE,
) -> AsyncGenerator[StoredEvent, None]:
    """Matching events with a cursor above ``after_cursor``: stored ones, then live ones."""
    watcher = Watcher(filter, limit=buffer_limit)
    fanout.add(watcher)
    cursor = after_cursor
    try:
        while True:
            watcher.overflowed = False
            while True:
                page = await store.events_after(cursor, filter, page_size)
                for stored in page:
                    yield stored
                    cursor = stored.cursor
                if len(page) < page_size:
                    break
            while True:
                await watcher.wait()
                if watcher.overflowed:
                    _log.info("watch.overflow_reread", after_cursor=cursor)
                    break
                while watcher.buffer:
                    stored = watcher.buffer.popleft()
                    if stored.cursor > cursor:
                        yield stored
                        cursor = stored.cursor
                if watcher.closed and not watcher.overflowed:
                    return
    finally:
        fanout.discard(watcher)
