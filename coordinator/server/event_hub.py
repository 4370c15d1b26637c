"""The event hub: follows every adapter replica's event stream into the store, and fans out.

One named follower task per replica: GetInfo names the stream (``source = mesh/stream_id``), the
store says where we stopped (``last_sequence``), and ``StreamEvents(after_sequence=last)`` replays
what we missed, then follows live. Events are appended in small batches; the store skips
(source, sequence) pairs it already has, so several coordinators sharing one PostgreSQL may follow
the same adapter. A dropped stream, a RESOURCE_EXHAUSTED end (we fell behind) or an adapter
restart reconnects with backoff and jitter and re-reads GetInfo: a new stream id is a new source
starting at 0. Nothing is delivered twice, because the resume point always comes from the store.

An event the follower cannot read (larger than the coordinator accepts from an adapter,
undecodable, or a stream that fails at the same position again and again with an error that is
not the adapter being away) is not retried forever: the follower stores a WARNING event in its
place (same stream, same sequence, naming the replica and the skipped range), counts it, shows it
in ListAdapters and the metrics, and resumes after it. Events the adapter no longer retains
(OUT_OF_RANGE on resume) are recorded as a gap the same way.

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

import grpc
import grpc.aio
import structlog

from coordinator.server.event_records import (
    TERMINAL_STATES,
    event_record,
    event_source,
    gap_record,
    severity_name,
)
from coordinator.server.event_watch import DEFAULT_WATCHER_BUFFER, Fanout, watch_store
from coordinator.server.messages import record_from_operation, state_name
from coordinator.store.base import Store
from coordinator.store.postgres import PostgresStore
from coordinator.store.records import EventFilter, EventRecord, StoredEvent, severity_rank
from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.adapter.v1 import adapter_pb2_grpc as pb_grpc
from serving.background_tasks import BackgroundTasks

__all__ = ["EventHub", "FollowerStatus", "HubSettings"]

_log = structlog.get_logger(__name__)

_TAIL_PAGE = 1000
_REASON_CHARS = 300

_TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
"""Stream endings that say nothing about the next event (the adapter is away, we fell behind)."""


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
    skip_after_failures: int = 3
    """A stream failing this many times in a row at one position with an error that is not a
    transient one (UNKNOWN, INTERNAL, DATA_LOSS...) skips the event there."""


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


class _StreamEnded(Exception):
    """The adapter ended the stream without an error status; reconnect."""


class _ReadFailed(Exception):
    """Reading the event stream failed (as opposed to GetInfo or the store)."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _describe(error: Exception) -> str:
    if isinstance(error, grpc.RpcError):
        text = f"{error.code().name}: {error.details()}"
    else:
        text = repr(error)
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS] + "…"


def _unreadable(error: Exception) -> bool:
    """The stream failed on one event that no retry can read (too large, undecodable)."""
    if not isinstance(error, grpc.RpcError):
        return False
    code, details = error.code(), (error.details() or "").lower()
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return "larger than max" in details
    return code == grpc.StatusCode.INTERNAL and "serializ" in details


class _Follower:
    """State of one replica's follower, read by `EventHub.follower_status`."""

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
        return _status(follower)

    def follower_statuses(self) -> list[FollowerStatus]:
        """Every follower, by address."""
        return [_status(self._followers[address]) for address in sorted(self._followers)]

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
        from the store's position; an event that cannot be read is skipped (a gap event takes
        its place) and the stream resumes at once after it; every other end, or no progress,
        waits with backoff (woken early when the registry reports the replica's health changed).
        """
        attempt = 0
        while True:
            delivered_before = (follower.source, follower.last_sequence)
            exhausted = False
            read_failed = False
            failure: Exception
            try:
                await self._follow_once(follower)
                raise _StreamEnded("the adapter ended the event stream")
            except asyncio.CancelledError:
                raise
            except _ReadFailed as exc:
                failure, read_failed = exc.cause, True
            except Exception as exc:
                failure = exc
            follower.connected = False
            follower.errors += 1
            follower.last_error = _describe(failure)
            if isinstance(failure, grpc.RpcError):
                exhausted = failure.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            progressed = (follower.source, follower.last_sequence) != delivered_before
            try:
                skipped = await self._skip_unreadable(
                    follower, failure, read_failed=read_failed, progressed=progressed
                )
            except Exception as exc:  # the store is away: retry the whole thing later
                follower.last_error = f"recording a gap failed: {_describe(exc)}"
                skipped = False
            if skipped:
                attempt = 0
                continue
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
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the wakeup is set, leaving the follower running after stop()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await follower.wakeup.wait()

    async def _skip_unreadable(
        self, follower: _Follower, failure: Exception, *, read_failed: bool, progressed: bool
    ) -> bool:
        """Record a gap for the event after ``last_sequence`` when it cannot be read.

        Only failures of reading the stream count. Unreadable at once: larger than the
        coordinator accepts, or undecodable. Unreadable after `HubSettings.skip_after_failures`
        failures in a row at one position: any status but the transient ones (the adapter
        away, the follower behind). True when the follower skipped and should resume now.
        """
        if progressed:
            follower.failures_here = 0
        if not read_failed or not follower.source or not isinstance(failure, grpc.RpcError):
            return False
        if not _unreadable(failure):
            if failure.code() in _TRANSIENT_CODES:
                return False
            follower.failures_here += 1
            if follower.failures_here < self._settings.skip_after_failures:
                return False
        follower.failures_here = 0
        sequence = follower.last_sequence + 1
        await self._record_gap(follower, first=sequence, last=sequence, reason=_describe(failure))
        return True

    async def _record_gap(self, follower: _Follower, *, first: int, last: int, reason: str) -> None:
        """Store a gap event in place of ``first``..``last`` and move the follower past it."""
        record = gap_record(
            source=follower.source,
            mesh=follower.mesh,
            stream_id=follower.stream_id,
            address=follower.address,
            first=first,
            last=last,
            reason=reason,
        )
        await self._append_and_publish([record])
        follower.last_sequence = max(follower.last_sequence, first)
        follower.skipped_events += last - first + 1
        follower.last_gap = str(record.payload.get("summary", "")) + f" ({reason})"
        _log.warning(
            "hub.event_gap_recorded",
            address=follower.address,
            source=follower.source,
            first_sequence=first,
            last_sequence=last,
            reason=reason,
        )

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
            follower.stream_id = info.event_stream_id
            follower.failures_here = 0
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
            # Retention dropped events we never stored: take what is left rather than stall
            # forever, recording the gap (before the first event we get) as an event. The
            # store drops anything at or below `after`.
            _log.error(
                "hub.event_gap",
                address=follower.address,
                source=source,
                after_sequence=after,
                details=exc.details(),
            )
            follower.gap_after = after
            call.cancel()
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
                    follower.buffered = buffer.qsize()
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.OUT_OF_RANGE:
                    failure.append(exc)  # _follow_once decides: resume from 0, with a gap
                else:
                    failure.append(_ReadFailed(exc))
            except Exception as exc:
                failure.append(_ReadFailed(exc))
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
                    follower.buffered = buffer.qsize()
                    fresh = [event for event in batch if event.sequence > follower.last_sequence]
                    if fresh and follower.gap_after is not None:
                        await self._record_retention_gap(follower, fresh[0].sequence)
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
        try:
            await self._append_and_publish(records)
        except ValueError:
            # One event the store cannot hold (a value JSON columns refuse) must not stop the
            # feed: store one by one, a gap event in place of each refused one.
            for record in records:
                try:
                    await self._append_and_publish([record])
                except ValueError as exc:
                    await self._record_gap(
                        follower,
                        first=record.sequence,
                        last=record.sequence,
                        reason=f"the store refused it: {_describe(exc)}",
                    )
        follower.last_sequence = batch[-1].sequence
        follower.delay_seconds = max(
            0.0, (datetime.now(UTC) - records[-1].timestamp).total_seconds()
        )

    async def _record_retention_gap(self, follower: _Follower, first_received: int) -> None:
        """After resuming from 0 (OUT_OF_RANGE): the events between our position and the first
        one the adapter still had are recorded as a gap."""
        after = follower.gap_after
        follower.gap_after = None
        if after is None or first_received <= after + 1:
            return
        await self._record_gap(
            follower,
            first=after + 1,
            last=first_received - 1,
            reason="the adapter no longer retained them (OUT_OF_RANGE on resume)",
        )

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
        if previous is not None and previous.mesh != follower.mesh:
            # The id names another mesh's operation here (an adapter reached directly reused
            # it): never let this adapter's record replace that history row.
            _log.warning(
                "hub.operation_id_of_another_mesh",
                address=follower.address,
                operation_id=operation_id,
                mesh=follower.mesh,
                recorded_mesh=previous.mesh,
            )
            return
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


def _status(follower: _Follower) -> FollowerStatus:
    return FollowerStatus(
        address=follower.address,
        mesh=follower.mesh,
        source=follower.source,
        last_sequence=follower.last_sequence,
        connected=follower.connected,
        last_error=follower.last_error,
        last_gap=follower.last_gap,
        skipped_events=follower.skipped_events,
        errors=follower.errors,
        buffered_events=follower.buffered,
        delay_seconds=follower.delay_seconds,
    )
