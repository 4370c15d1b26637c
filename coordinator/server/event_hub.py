"""The event hub: follows every adapter replica's event stream into the store, and fans out.

One named follower task per replica (see `adapter_follower`): it resumes from the store's
position and appends events in small batches; the store skips (source, sequence) pairs it
already has, so several coordinators sharing one PostgreSQL may follow the same adapter. An
event a follower cannot read, and events the adapter no longer retains, become a gap event
(see `event_gaps`), counted and shown in ListAdapters and the metrics.

Fan-out: after each append the hub publishes newly stored events, in cursor order, to the
watchers (see `event_publisher` and `event_watch`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any, Protocol

import structlog

from coordinator.server.adapter_follower import AdapterFollower, FollowerContext
from coordinator.server.event_gaps import FeedGaps
from coordinator.server.event_publisher import EventPublisher
from coordinator.server.event_records import severity_name
from coordinator.server.event_watch import Fanout, watch_store
from coordinator.server.follower_state import FollowerState, FollowerStatus
from coordinator.server.hub_settings import HubSettings
from coordinator.server.operation_refresh import OperationRefresher
from coordinator.store.base import Store
from coordinator.store.postgres import PostgresStore
from coordinator.store.records import EventFilter, StoredEvent, severity_rank
from meshplane.adapter.v1 import adapter_pb2 as pb
from serving.background_tasks import BackgroundTasks

__all__ = ["EventHub"]

_log = structlog.get_logger(__name__)


class ReplicaView(Protocol):
    """What the hub reads of a registry replica."""

    @property
    def address(self) -> str: ...

    @property
    def mesh(self) -> str: ...


class ChangeView(Protocol):
    """What the hub reads of a registry change notification."""

    @property
    def kind(self) -> str: ...

    @property
    def replica(self) -> ReplicaView: ...


class RegistryView(Protocol):
    """The registry surface the hub needs: the replicas, a channel to each, change callbacks."""

    def replicas(self, mesh: str | None = None) -> Iterable[ReplicaView]: ...

    def channel(self, address: str) -> Any: ...

    def add_listener(self, callback: Callable[[Any], Any]) -> Any: ...


class EventHub:
    """Follows adapter event streams into the store and feeds live watchers."""

    def __init__(
        self,
        store: Store,
        registry: RegistryView,
        *,
        settings: HubSettings | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._settings = settings = settings or HubSettings()
        shared = settings.shared_store
        self._fanout = Fanout()
        self._publisher = EventPublisher(
            store,
            self._fanout,
            shared=isinstance(store, PostgresStore) if shared is None else shared,
        )
        self._context = FollowerContext(
            channel=registry.channel,
            store=store,
            publisher=self._publisher,
            gaps=FeedGaps(self._publisher, skip_after_failures=settings.skip_after_failures),
            operations=OperationRefresher(
                store, call_timeout_seconds=settings.call_timeout_seconds
            ),
            settings=settings,
            rng=rng or random.Random(),
        )
        self._tasks = BackgroundTasks(owner="event-hub")
        self._followers: dict[str, FollowerState] = {}
        self._follower_tasks: dict[str, asyncio.Task[None]] = {}
        self._generation = 0
        self._started = False
        self._stopping = False

    # lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Follow every known replica and every replica the registry adds later."""
        if self._started:
            raise RuntimeError("event hub already started")
        self._started = True
        await self._publisher.start()
        self._registry.add_listener(self._on_change)
        for replica in self._registry.replicas():
            self._follow(replica)
        if self._publisher.shared:
            self._tasks.start(
                "shared-store-tail", self._publisher.poll(self._settings.shared_poll_seconds)
            )

    def end_watches(self) -> None:
        """End every watch now (they resume elsewhere by cursor); call before draining gRPC so
        long-lived WatchEvents streams do not hold the shutdown for its whole grace period."""
        self._fanout.close()

    async def stop(self) -> None:
        """End every watch and stop the followers (each finishes its current append)."""
        self._stopping = True
        self._fanout.close()
        await self._tasks.stop(grace_seconds=self._settings.stop_grace_seconds)

    def _on_change(self, change: ChangeView) -> None:
        """Registry listener: start, stop or nudge a follower."""
        if self._stopping:
            return
        address = change.replica.address
        if change.kind == "removed":
            self._followers.pop(address, None)
            task = self._follower_tasks.pop(address, None)
            if task is not None:
                task.cancel()
            return
        follower = self._followers.get(address)
        if follower is None:
            self._follow(change.replica)
        elif change.kind == "state":
            follower.wakeup.set()

    # public views ---------------------------------------------------------------------------

    @property
    def watcher_count(self) -> int:
        """Watchers currently attached."""
        return self._fanout.watcher_count

    def follower_status(self, address: str) -> FollowerStatus | None:
        """The follower of ``address`` (None when the hub does not follow it)."""
        follower = self._followers.get(address)
        return None if follower is None else follower.status()

    def follower_statuses(self) -> list[FollowerStatus]:
        """Every follower, by address."""
        return [self._followers[address].status() for address in sorted(self._followers)]

    def address_of(self, source: str) -> str:
        """Address of the replica whose stream is ``source`` ("" when none is followed)."""
        for follower in self._followers.values():
            if follower.source == source:
                return follower.address
        return ""

    def watch(
        self,
        *,
        mesh: str | None = None,
        operation_id: str | None = None,
        min_severity: str | int | None = None,
        after_cursor: int = 0,
    ) -> AsyncGenerator[StoredEvent, None]:
        """Stored events after ``after_cursor`` matching the filter, then live ones, in order.

        ``min_severity`` is a store severity name ("warning") or an `EventSeverity` number
        (0/UNSPECIFIED and None mean every event). Empty strings mean "any".
        """
        severity: str | None = None
        if isinstance(min_severity, int):
            if min_severity != pb.EVENT_SEVERITY_UNSPECIFIED:
                severity = severity_name(min_severity)
        elif min_severity:
            severity = min_severity.lower()
            severity_rank(severity)
        if after_cursor < 0:
            raise ValueError(f"after_cursor must not be negative, got {after_cursor}")
        filter = EventFilter(
            mesh=mesh or None, operation_id=operation_id or None, severity_at_least=severity
        )
        return watch_store(
            self._store,
            self._fanout,
            filter,
            after_cursor=after_cursor,
            buffer_limit=self._settings.watcher_buffer,
        )

    # following ------------------------------------------------------------------------------

    def _follow(self, replica: ReplicaView) -> None:
        follower = FollowerState(replica.address, replica.mesh)
        self._followers[replica.address] = follower
        # A generation in the name: a replica removed and added again gets a new task at once,
        # while the cancelled one may still be unwinding under the old name.
        self._generation += 1
        name = f"follow:{replica.address}#{self._generation}"
        task = self._tasks.start(name, AdapterFollower(follower, self._context).run())
        self._follower_tasks[replica.address] = task
        task.add_done_callback(lambda done: self._forget_task(replica.address, done))

    def _forget_task(self, address: str, task: asyncio.Task[Any]) -> None:
        if self._follower_tasks.get(address) is task:
            del self._follower_tasks[address]
