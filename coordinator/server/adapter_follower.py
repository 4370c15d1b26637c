"""One adapter replica's event follower: connect, resume from the store, follow, reconnect.

GetInfo names the stream (``source = mesh/stream_id``), the store says where we stopped
(``last_sequence``), and ``StreamEvents(after_sequence=last)`` replays what we missed, then
follows live. A dropped stream, a RESOURCE_EXHAUSTED end (we fell behind) or an adapter restart
reconnects with backoff and jitter and re-reads GetInfo: a new stream id is a new source
starting at 0. Nothing is delivered twice, because the resume point always comes from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import structlog

from coordinator.server.event_gaps import FeedGaps
from coordinator.server.event_publisher import EventPublisher
from coordinator.server.event_records import event_record, event_source
from coordinator.server.follower_state import FollowerState
from coordinator.server.hub_settings import HubSettings
from coordinator.server.operation_refresh import OperationRefresher
from coordinator.server.stream_failures import ReadFailed, StreamEnded, describe_failure
from coordinator.server.stream_pump import StreamPump
from coordinator.store.base import Store
from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.adapter.v1 import adapter_pb2_grpc as pb_grpc

__all__ = ["AdapterFollower", "FollowerContext"]

_log = structlog.get_logger(__name__)


@dataclass(frozen=True, kw_only=True)
class FollowerContext:
    """What every follower of one hub shares."""

    channel: Callable[[str], Any]
    """The registry's channel to a replica address."""
    store: Store
    publisher: EventPublisher
    gaps: FeedGaps
    operations: OperationRefresher
    settings: HubSettings
    rng: random.Random


class AdapterFollower:
    """Follows one replica's event stream into the store for as long as it runs."""

    def __init__(self, state: FollowerState, context: FollowerContext) -> None:
        self._state = state
        self._context = context

    async def run(self) -> None:
        """Connect, follow, and reconnect with backoff for as long as the replica is registered.

        A stream ended with RESOURCE_EXHAUSTED after progress (we fell behind) resumes at once
        from the store's position; an event that cannot be read is skipped (a gap event takes
        its place) and the stream resumes at once after it; every other end, or no progress,
        waits with backoff (woken early when the registry reports the replica's health changed).
        """
        state = self._state
        attempt = 0
        while True:
            before = (state.source, state.last_sequence)
            failure, read_failed = await self._follow_until_failure()
            progressed = (state.source, state.last_sequence) != before
            state.connected = False
            state.errors += 1
            state.last_error = describe_failure(failure)
            if await self._resumes_now(failure, read_failed=read_failed, progressed=progressed):
                attempt = 0
                continue
            attempt = 1 if progressed else attempt + 1
            await self._wait(attempt)

    async def _follow_until_failure(self) -> tuple[Exception, bool]:
        """How the connection ended, and whether reading the stream (not GetInfo, not the
        store) failed."""
        try:
            await self._follow_once()
        except ReadFailed as exc:
            return exc.cause, True
        except Exception as exc:
            return exc, False
        return StreamEnded("the adapter ended the event stream"), False

    async def _resumes_now(
        self, failure: Exception, *, read_failed: bool, progressed: bool
    ) -> bool:
        """True after skipping an unreadable event, or after falling behind with progress."""
        state = self._state
        try:
            if await self._context.gaps.skip_unreadable(
                state, failure, read_failed=read_failed, progressed=progressed
            ):
                return True
        except Exception as exc:  # the store is away: retry the whole thing later
            state.last_error = f"recording a gap failed: {describe_failure(exc)}"
        exhausted = (
            isinstance(failure, grpc.RpcError)
            and failure.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        if exhausted and progressed:
            _log.info(
                "hub.follower_fell_behind",
                address=state.address,
                source=state.source,
                last_sequence=state.last_sequence,
            )
            return True
        return False

    async def _wait(self, attempt: int) -> None:
        """Back off before reconnecting; the registry's health news ends the wait early."""
        state = self._state
        delay = self._backoff(attempt)
        _log.info(
            "hub.follower_reconnecting",
            address=state.address,
            source=state.source,
            last_sequence=state.last_sequence,
            error=state.last_error,
            delay_seconds=round(delay, 3),
        )
        state.wakeup.clear()
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
        # arrives as the wakeup is set, leaving the follower running after stop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await state.wakeup.wait()

    def _backoff(self, attempt: int) -> float:
        """Equal-jitter exponential backoff: uniform in [step/2, step]."""
        settings = self._context.settings
        step = min(
            settings.backoff_max_seconds,
            settings.backoff_initial_seconds * 2 ** max(0, attempt - 1),
        )
        return self._context.rng.uniform(step / 2, step)

    async def _follow_once(self) -> None:
        """One connection: GetInfo, resume point, stream until it ends or fails."""
        state, context = self._state, self._context
        stub = pb_grpc.MeshAdapterServiceStub(context.channel(state.address))
        await self._identify_stream(stub)
        after = await context.store.last_sequence(state.source)
        if context.publisher.shared and after > state.last_sequence:
            # Another coordinator stored what we would have: publish it to our watchers, since
            # those events will not come through our stream (and our appends) any more.
            await context.publisher.publish_tail()
        state.last_sequence = after
        state.connected = True
        # The error stays until the connection proves itself: an event stored, or this long up.
        settled = asyncio.get_running_loop().call_later(
            context.settings.error_clear_seconds, self._clear_error
        )
        try:
            await self._stream(stub, after)
        finally:
            settled.cancel()

    def _clear_error(self) -> None:
        self._state.last_error = ""

    async def _identify_stream(self, stub: Any) -> None:
        """GetInfo: the stream's source (a new stream id starts a new source at 0)."""
        state = self._state
        info = await stub.GetInfo(
            pb.GetInfoRequest(), timeout=self._context.settings.call_timeout_seconds
        )
        if not info.event_stream_id:
            raise ValueError(f"adapter {state.address} reports no event_stream_id")
        mesh = info.mesh or state.mesh
        source = event_source(mesh, info.event_stream_id)
        if source == state.source:
            return
        if state.source:
            _log.info(
                "hub.event_stream_changed",
                address=state.address,
                old_source=state.source,
                new_source=source,
            )
        state.source = source
        state.mesh = mesh
        state.stream_id = info.event_stream_id
        state.failures_here = 0

    async def _stream(self, stub: Any, after: int) -> None:
        """StreamEvents after ``after``; on OUT_OF_RANGE, from 0 with the lost ones as a gap."""
        state = self._state
        call = stub.StreamEvents(pb.StreamEventsRequest(after_sequence=after))
        try:
            await self._pump(stub, call)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.OUT_OF_RANGE or after == 0:
                raise
            # Retention dropped events we never stored: take what is left rather than stall
            # forever, recording the gap (before the first event we get) as an event. The
            # store drops anything at or below `after`.
            _log.error(
                "hub.event_gap",
                address=state.address,
                source=state.source,
                after_sequence=after,
                details=exc.details(),
            )
            state.gap_after = after
            call.cancel()
            call = stub.StreamEvents(pb.StreamEventsRequest(after_sequence=0))
            await self._pump(stub, call)
        finally:
            call.cancel()

    async def _pump(self, stub: Any, call: Any) -> None:
        settings = self._context.settings

        async def write(batch: list[pb.Event]) -> None:
            await self._write(stub, batch)

        pump = StreamPump(
            self._state,
            write,
            buffer_size=settings.stream_buffer,
            batch_size=settings.batch_size,
        )
        await pump.run(call)

    async def _write(self, stub: Any, batch: list[pb.Event]) -> None:
        """Store the events of ``batch`` past the follower's position (a retention gap first)."""
        state = self._state
        fresh = [event for event in batch if event.sequence > state.last_sequence]
        if not fresh:
            return
        state.last_error = ""  # the stream delivers again
        if state.gap_after is not None:
            await self._context.gaps.record_retention_gap(state, fresh[0].sequence)
        await self._store_batch(stub, fresh)

    async def _store_batch(self, stub: Any, batch: list[pb.Event]) -> None:
        """Bring changed operations up to date, then append and publish the batch."""
        state, context = self._state, self._context
        # Operations first: a watcher that sees the final event finds the final record too.
        await context.operations.refresh_batch(state, stub, batch)
        records = [event_record(event, source=state.source, mesh=state.mesh) for event in batch]
        try:
            await context.publisher.append(records)
        except ValueError:
            # One event the store cannot hold (a value JSON columns refuse) must not stop the
            # feed: store one by one, a gap event in place of each refused one.
            for record in records:
                try:
                    await context.publisher.append([record])
                except ValueError as exc:
                    await context.gaps.record(
                        state,
                        first=record.sequence,
                        last=record.sequence,
                        reason=f"the store refused it: {describe_failure(exc)}",
                    )
        state.last_sequence = batch[-1].sequence
        state.delay_seconds = max(0.0, (datetime.now(UTC) - records[-1].timestamp).total_seconds())
