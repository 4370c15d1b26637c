"""Gaps in an adapter's event feed: a WARNING event stored in place of events not read.

An event the follower cannot read (larger than the coordinator accepts from an adapter,
undecodable, or a stream that fails at the same position again and again with an error that is
not the adapter being away) is not retried forever, and events the adapter no longer retains
(OUT_OF_RANGE on resume) are not waited for: either way a gap event takes their place (same
stream, first skipped sequence, naming the replica and the range), is counted, and the follower
resumes after it.
"""

from __future__ import annotations

import grpc
import structlog

from coordinator.server.event_publisher import EventPublisher
from coordinator.server.event_records import gap_record
from coordinator.server.follower_state import FollowerState
from coordinator.server.stream_failures import TRANSIENT_CODES, describe_failure, unreadable

__all__ = ["FeedGaps"]

_log = structlog.get_logger(__name__)


class FeedGaps:
    """Decides when an event is skipped, and records the gap."""

    def __init__(self, publisher: EventPublisher, *, skip_after_failures: int) -> None:
        self._publisher = publisher
        self._skip_after_failures = skip_after_failures

    async def skip_unreadable(
        self, follower: FollowerState, failure: Exception, *, read_failed: bool, progressed: bool
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
        if not unreadable(failure):
            if failure.code() in TRANSIENT_CODES:
                return False
            follower.failures_here += 1
            if follower.failures_here < self._skip_after_failures:
                return False
        follower.failures_here = 0
        sequence = follower.last_sequence + 1
        await self.record(follower, first=sequence, last=sequence, reason=describe_failure(failure))
        return True

    async def record_retention_gap(self, follower: FollowerState, first_received: int) -> None:
        """After resuming from 0 (OUT_OF_RANGE): the events between our position and the first
        one the adapter still had are recorded as a gap."""
        after = follower.gap_after
        follower.gap_after = None
        if after is None or first_received <= after + 1:
            return
        await self.record(
            follower,
            first=after + 1,
            last=first_received - 1,
            reason="the adapter no longer retained them (OUT_OF_RANGE on resume)",
        )

    async def record(self, follower: FollowerState, *, first: int, last: int, reason: str) -> None:
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
        await self._publisher.append([record])
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
