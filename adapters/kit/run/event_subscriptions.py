"""The event log's readers: each `Subscription` replays a backlog, then follows live events
from its own bounded queue; `Subscribers` hands each appended event to all of them.

Offering never awaits: a subscriber that falls behind is ended with `SubscriberOverflow`
(naming where to resume) instead of slowing the operation or the other subscribers.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType

import structlog

from adapters.kit.run.events import Event, EventLogClosed, SubscriberOverflow

__all__ = ["Subscribers", "Subscription"]

_log = structlog.get_logger(__name__)


class Subscription:
    """Replays retained events after a sequence, then follows live ones.

    Created registered (the replay snapshot and registration happen in one step, so nothing falls
    between them); use it as a context manager so it is removed from the log however it ends.
    """

    def __init__(
        self,
        subscribers: Subscribers,
        *,
        after_sequence: int,
        operation_id: str,
        backlog: list[Event],
    ) -> None:
        self._subscribers = subscribers
        self.operation_id = operation_id
        self._backlog = deque(backlog)
        self._queue: deque[Event] = deque()
        self._queue_size = subscribers.queue_size
        self._wakeup = asyncio.Event()
        self._overflowed = False
        self._log_closed = False
        self._closed = False
        self.last_sequence = after_sequence
        """Sequence of the last event handed to the subscriber (its resume point)."""

    def wants(self, event: Event) -> bool:
        """Whether the event passes this subscriber's operation filter."""
        return not self.operation_id or event.operation_id == self.operation_id

    def offer(self, event: Event) -> None:
        """Queue a live event without waiting; a full queue marks the subscriber overflowed."""
        if self._overflowed or self._closed:
            return
        if len(self._queue) >= self._queue_size:
            self._overflowed = True
            self._queue.clear()
            _log.warning(
                "events.subscriber_overflow",
                last_sequence=self.last_sequence,
                queue_size=self._queue_size,
            )
        else:
            self._queue.append(event)
        self._wakeup.set()

    def end(self) -> None:
        """Called when the log closes: the subscriber ends after what it already has."""
        self._log_closed = True
        self._wakeup.set()

    def close(self) -> None:
        """Unregister from the log (idempotent)."""
        if not self._closed:
            self._closed = True
            self._subscribers.remove(self)
            self._wakeup.set()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._overflowed:
                raise SubscriberOverflow(self.last_sequence)
            source = self._backlog or self._queue
            if source:
                event = source.popleft()
                self.last_sequence = event.sequence
                return event
            if self._log_closed:
                raise EventLogClosed(self.last_sequence)
            self._wakeup.clear()
            await self._wakeup.wait()


class Subscribers:
    """The registered subscriptions of one log, each with a queue of ``queue_size`` events."""

    def __init__(self, *, queue_size: int) -> None:
        if queue_size < 1:
            raise ValueError("subscriber queue size must be at least 1")
        self.queue_size = queue_size
        self._subscriptions: set[Subscription] = set()

    def __len__(self) -> int:
        return len(self._subscriptions)

    def add(self, *, after_sequence: int, operation_id: str, backlog: list[Event]) -> Subscription:
        """A registered subscription that first replays ``backlog``."""
        subscription = Subscription(
            self, after_sequence=after_sequence, operation_id=operation_id, backlog=backlog
        )
        self._subscriptions.add(subscription)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        """Forget a subscriber (called by `Subscription.close`)."""
        self._subscriptions.discard(subscription)

    def offer(self, event: Event) -> None:
        """Hand ``event`` to every subscriber that wants it, without waiting."""
        for subscription in list(self._subscriptions):
            if subscription.wants(event):
                subscription.offer(event)

    def end_all(self) -> None:
        """End every subscription (each raises `EventLogClosed` after what it has)."""
        for subscription in list(self._subscriptions):
            subscription.end()
