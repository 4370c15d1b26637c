"""The event hub: follows every adapter replica's event stream into the store, and fans out.

One named follower task per replica: GetInfo names the stream (``source = mesh/stream_id``), the
store says where we stopped (``last_sequence``), and ``StreamEvents(after_sequence=last)`` replays
what we missed, then follows live. Events are appended in small batches; the store skips
(source, sequence) pairs it already has, so several coordinators sharing one PostgreSQL may follow
the same adapter. A dropped stream, a RESOURCE_EXHAUSTED end (we fell behind) or an adapter
restart reconnects with backoff and jitter and re-reads GetInfo: a new stream id is a new source
starting at 0. Nothing is skipped or delivered twice, because the resume point always comes from
the store.

Fan-out: after each append the hub publishes newly stored events, in cursor order, to the
watchers (see `event_watch`). Appends and publishing are serialised, so cursor order is publish
order. When the store is shared with other coordinators (PostgreSQL), events they stored can
have cursors between ours, so the hub publishes what the store holds after its last published
cursor (one read per append, not one per watcher) instead of only what it stored itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import grpc  # type: ignore[import-untyped, unused-ignore]
import grpc.aio  # type: ignore[import-untyped, unused-ignore]
import structlog

from coordinator.event_records import (
    TERMINAL_STATES,
    event_record,
    event_source,
    severity_name,
)
from coordinator.event_watch import DEFAULT_WATCHER_BUFFER, Fanout, watch_store
from coordinator.messages import record_from_operation, state_name
from coordinator.store.base import Store
from coordinator.store.postgres import PostgresStore
from coordinator.store.records import EventFilter, EventRecord, StoredEvent, severity_rank
from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.adapter.v1 import adapter_pb2_grpc as pb_grpc
from serving.background_tasks import BackgroundTasks

__all__ = ["EventHub", "FollowerStatus", "HubSettings"]

_log = structlog.get_logger(__name__)

_TAIL_PAGE = 1000


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
    watcher_buffer: int = DEFAULT_WATCHER_BUFFER
    stop_grace_seconds: float = 5.0
    shared_store: bool | None = None
    """True: other coordinators may write the store (publish from a store read). None: True for
    PostgreSQL, False otherwise."""
    shared_poll_seconds: float = 1.0
    """Shared store: how often to publish events stored by other coordinators on their own."""


@dataclass(frozen=True, kw_only=True)
class FollowerStatus:
    """How far the hub got with one replica's event stream."""

    address: str
    source: str
    last_sequence: int
    connected: bool
    last_error: str


class _StreamEnded(Exception):
    """The adapter ended the stream without an error status; reconnect."""


class _Follower:
    """State of one replica's follower, read by `EventHub.follower_status`."""

    def __init__(self, address: str, mesh: str) -> None:
        self.address = address
        self.mesh = mesh
        self.source = ""
        self.last_sequence = 0
        self.connected = False
        self.last_error = ""
        self.wakeup = asyncio.Event()
        self.operation_states: dict[str, str] = {}


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
        self._settings = settings or HubSettings()
        self._rng = rng or random.Random()
        shared = self._settings.shared_store
        self._shared = isinstance(store, PostgresStore) if shared is None else shared
        self._tasks = BackgroundTasks(owner="event-hub")
        self._followers: dict[str, _Follower] = {}
        self._follower_tasks: dict[str, asyncio.Task[None]] = {}
        self._generation = 0
        self._fanout = Fanout()
        self._publish_lock = asyncio.Lock()
        self._published_cursor = 0
        self._started = False
        self._stopping = False

    # lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Follow every known replica and every replica the registry adds later."""
        if self._started:
            raise RuntimeError("event hub already started")
        self._started = True
        self._published_cursor = await self._store.latest_cursor()
        self._registry.add_listener(self._on_change)
        for replica in self._registry.replicas():
            self._follow(replica)
        if self._shared:
            self._tasks.start("shared-store-tail", self._poll_shared_store())

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
        if follower is None:
            return None
        return FollowerStatus(
            address=follower.address,
            source=follower.source,
            last_sequence=follower.last_sequence,
            connected=follower.connected,
            last_error=follower.last_error,
        )

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
        follower = _Follower(replica.address, replica.mesh)
        self._followers[replica.address] = follower
        # A generation in the name: a replica removed and added again gets a new task at once,
        # while the cancelled one may still be unwinding under the old name.
        self._generation += 1
        name = f"follow:{replica.address}#{self._generation}"
        task = self._tasks.start(name, self._run_follower(follower))
        self._follower_tasks[replica.address] = task
        task.add_done_callback(lambda done: self._forget_task(replica.address, done))

    def _forget_task(self, address: str, task: asyncio.Task[Any]) -> None:
        if self._follower_tasks.get(address) is task:
            del self._follower_tasks[address]

    async def _run_follower(self, follower: _Follower) -> None:
        """Connect, follow, and reconnect with backoff for as long as the replica is registered.

        A stream ended with RESOURCE_EXHAUSTED after progress (we fell behind) resumes at once
        from the store's position; every other end, or no progress, waits with backoff (woken
        early when the registry reports the replica's health changed).
        """
        attempt = 0
        while True:
            delivered_before = (follower.source, follower.last_sequence)
            exhausted = False
            try:
                await self._follow_once(follower)
                raise _StreamEnded("the adapter ended the event stream")
            except asyncio.CancelledError:
                raise
            except grpc.RpcError as exc:
                code = exc.code()
                follower.last_error = f"{code.name}: {exc.details()}"
                exhausted = code == grpc.StatusCode.RESOURCE_EXHAUSTED
            except Exception as exc:
                follower.last_error = repr(exc)
            follower.connected = False
            progressed = (follower.source, follower.last_sequence) != delivered_before
            if exhausted and progressed:
                _log.info(
                    "hub.follower_fell_behind",
                    address=follower.address,
                    source=follower.source,
                    last_sequence=follower.last_sequence,
                )
                attempt = 0
                continue
            attempt = 1 if progressed else attempt + 1
            delay = self._backoff(attempt)
            _log.info(
                "hub.follower_reconnecting",
                address=follower.address,
                source=follower.source,
                last_sequence=follower.last_sequence,
                error=follower.last_error,
                delay_seconds=round(delay, 3),
            )
            follower.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(follower.wakeup.wait(), timeout=delay)

    def _backoff(self, attempt: int) -> float:
        """Equal-jitter exponential backoff: uniform in [step/2, step]."""
        settings = self._settings
        step = min(
            settings.backoff_max_seconds,
            settings.backoff_initial_seconds * 2 ** max(0, attempt - 1),
        )
        return self._rng.uniform(step / 2, step)

    async def _follow_once(self, follower: _Follower) -> None:
        """One connection: GetInfo, resume point, stream until it ends or fails."""
        channel = self._registry.channel(follower.address)
        stub = pb_grpc.MeshAdapterServiceStub(channel)
        timeout = self._settings.call_timeout_seconds
        info = await stub.GetInfo(pb.GetInfoRequest(), timeout=timeout)
        if not info.event_stream_id:
            raise ValueError(f"adapter {follower.address} reports no event_stream_id")
        mesh = info.mesh or follower.mesh
        source = event_source(mesh, info.event_stream_id)
        if source != follower.source:
            if follower.source:
                _log.info(
                    "hub.event_stream_changed",
                    address=follower.address,
                    old_source=follower.source,
                    new_source=source,
                )
            follower.source = source
            follower.mesh = mesh
        after = await self._store.last_sequence(source)
        if self._shared and after > follower.last_sequence:
            # Another coordinator stored what we would have: publish it to our watchers, since
            # those events will not come through our stream (and our appends) any more.
            await self._publish_tail()
        follower.last_sequence = after
        follower.connected = True
        follower.last_error = ""
        call = stub.StreamEvents(pb.StreamEventsRequest(after_sequence=after))
        try:
            await self._pump(follower, stub, call, source, mesh)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.OUT_OF_RANGE or after == 0:
                raise
            # Retention dropped events we never stored: take what is left (a logged gap)
            # rather than stall forever. The store drops anything at or below `after`.
            _log.error(
                "hub.event_gap",
                address=follower.address,
                source=source,
                after_sequence=after,
                details=exc.details(),
            )
            call = stub.StreamEvents(pb.StreamEventsRequest(after_sequence=0))
            await self._pump(follower, stub, call, source, mesh)
        finally:
            call.cancel()

    async def _pump(
        self,
        follower: _Follower,
        stub: Any,
        call: Any,
        source: str,
        mesh: str,
    ) -> None:
        """Read the stream into a bounded buffer while a writer appends it in batches."""
        buffer: asyncio.Queue[pb.Event | None] = asyncio.Queue(self._settings.stream_buffer)
        failure: list[Exception] = []

        async def read() -> None:
            try:
                async for response in call:
                    await buffer.put(response.event)
            except Exception as exc:
                failure.append(exc)
            await buffer.put(None)

        async def write() -> None:
            try:
                ended = False
                while not ended:
                    batch: list[pb.Event] = []
                    item = await buffer.get()
                    while item is not None:
                        batch.append(item)
                        if len(batch) >= self._settings.batch_size or buffer.empty():
                            break
                        item = buffer.get_nowait()
                    ended = item is None
                    fresh = [event for event in batch if event.sequence > follower.last_sequence]
                    if fresh:
                        await self._store_batch(follower, stub, fresh, source, mesh)
            except Exception as exc:
                failure.insert(0, exc)
                reader.cancel()

        async with asyncio.TaskGroup() as group:
            reader = group.create_task(read(), name=f"event-hub:read:{follower.address}")
            group.create_task(write(), name=f"event-hub:write:{follower.address}")
        if failure:
            raise failure[0]

    async def _store_batch(
        self,
        follower: _Follower,
        stub: Any,
        batch: list[pb.Event],
        source: str,
        mesh: str,
    ) -> None:
        """Bring changed operations up to date, then append and publish the batch."""
        latest: dict[str, str] = {}
        for event in batch:
            if event.operation_id and event.operation_state != pb.OPERATION_STATE_UNSPECIFIED:
                latest[event.operation_id] = state_name(event.operation_state)
        # Operations first: a watcher that sees the final event finds the final record too.
        for operation_id, state in latest.items():
            if follower.operation_states.get(operation_id) == state:
                continue
            await self._refresh_operation(follower, stub, operation_id, state)
            follower.operation_states[operation_id] = state
        if len(follower.operation_states) > 10_000:
            follower.operation_states.clear()
        records = [event_record(event, source=source, mesh=mesh) for event in batch]
        await self._append_and_publish(records)
        follower.last_sequence = batch[-1].sequence

    async def _append_and_publish(self, records: list[EventRecord]) -> None:
        """Store, then publish in cursor order (serialised so publish order is cursor order)."""
        async with self._publish_lock:
            stored = await self._store.append_events(records)
            if self._shared:
                stored = await self._read_tail()
            if stored:
                self._published_cursor = max(self._published_cursor, stored[-1].cursor)
                self._fanout.publish(stored)

    async def _publish_tail(self) -> None:
        """Publish whatever the store holds past the last published cursor (shared stores)."""
        async with self._publish_lock:
            stored = await self._read_tail()
            if stored:
                self._published_cursor = stored[-1].cursor
                self._fanout.publish(stored)

    async def _poll_shared_store(self) -> None:
        """Shared store: also publish, now and then, events other coordinators stored from
        adapters this one does not follow (one read per interval for the hub, not per watcher)."""
        while True:
            await asyncio.sleep(self._settings.shared_poll_seconds)
            if self._fanout.watcher_count:
                await self._publish_tail()

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

    async def _refresh_operation(
        self, follower: _Follower, stub: Any, operation_id: str, state: str
    ) -> None:
        """Record the operation's current state from its adapter, so history shows the outcome."""
        previous = await self._store.get_operation(operation_id)
        try:
            response = await stub.GetOperation(
                pb.GetOperationRequest(operation_id=operation_id),
                timeout=self._settings.call_timeout_seconds,
            )
        except grpc.RpcError as exc:
            _log.warning(
                "hub.operation_refresh_failed",
                address=follower.address,
                operation_id=operation_id,
                error=f"{exc.code()}: {exc.details()}",
            )
            if previous is None or previous.state == state:
                return
            if previous.state in TERMINAL_STATES and state not in TERMINAL_STATES:
                return
            await self._store.save_operation(
                replace(previous, state=state, updated_at=datetime.now(UTC))
            )
            return
        record = record_from_operation(
            response.operation, mesh=follower.mesh, adapter_address=follower.address
        )
        if previous is not None:
            # Keep what the client asked through the coordinator; take the outcome from here.
            record = replace(record, request=previous.request or record.request)
        await self._store.save_operation(record)
