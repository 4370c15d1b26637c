"""The adapter's event log: one strictly increasing sequence, bounded retention, replay-then-follow.

Followers (the coordinator) de-duplicate by (adapter, sequence) and resume from the last sequence
they saw, so a sequence is never reused nor skipped for a subscriber: every event is written to
the state directory (`event_files`) before any subscriber (`event_subscriptions`) sees it, and
after a restart numbering continues from the file. The stream id changes only when that state is
lost, telling followers to start over.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog

from adapters.kit.run.event_files import EventFile
from adapters.kit.run.event_lines import event_line
from adapters.kit.run.event_retention import DEFAULT_RETENTION_BYTES, RetainedEvents
from adapters.kit.run.event_subscriptions import Subscribers, Subscription
from adapters.kit.run.events import (
    Event,
    EventLogClosed,
    NewEvent,
    SequenceOutOfRange,
    capped_error,
)
from serving.event_text import cap_event_field

__all__ = ["EventLog"]

_log = structlog.get_logger(__name__)


class EventLog:
    """Per-adapter event log, in memory with optional persistence to a state directory."""

    def __init__(
        self,
        *,
        mesh: str,
        retention: int = 10_000,
        retention_bytes: int = DEFAULT_RETENTION_BYTES,
        queue_size: int = 1_000,
        state_dir: Path | None = None,
        on_append: Callable[[Event], None] | None = None,
    ) -> None:
        self.mesh = mesh
        self._window = RetainedEvents(count=retention, size_bytes=retention_bytes)
        self._subscribers = Subscribers(queue_size=queue_size)
        self._on_append = on_append
        self._closed = False
        self._last_sequence = 0
        self.stream_id = str(uuid.uuid4())
        self._file = None if state_dir is None else EventFile(state_dir, mesh=mesh)
        if self._file is not None:
            self._restore(self._file)

    @property
    def retention(self) -> int:
        """Events retained for replay at most."""
        return self._window.count

    @property
    def retention_bytes(self) -> int:
        """Encoded size of the retained events at most."""
        return self._window.size_bytes

    @property
    def queue_size(self) -> int:
        """Live events a subscriber may fall behind by before it is ended."""
        return self._subscribers.queue_size

    @property
    def last_sequence(self) -> int:
        """Sequence of the newest event (0 when nothing was ever appended)."""
        return self._last_sequence

    @property
    def oldest_sequence(self) -> int:
        """Sequence of the oldest retained event (0 when none is retained)."""
        return self._window.oldest_sequence

    @property
    def retained_bytes(self) -> int:
        """Encoded size of the retained events (what the persisted file holds once compacted)."""
        return self._window.bytes

    @property
    def subscriber_count(self) -> int:
        """Subscribers currently registered."""
        return len(self._subscribers)

    def retained(self) -> list[Event]:
        """A snapshot of the retained events, oldest first."""
        return list(self._window)

    def append(self, new: NewEvent) -> Event:
        """Record an event under the next sequence, persist it, then hand it to subscribers.

        Free text longer than its budget (`serving.event_text`) is cut with a visible marker,
        whatever produced it, so one event always fits what the coordinator reads.
        """
        if self._closed:
            raise RuntimeError("event log is closed")
        event = self._numbered(new)
        line = event_line(event)
        if self._file is not None:
            if self._file.outgrew(self._window):
                self._compact(self._file)
            self._file.append(line, sequence=event.sequence)
        self._last_sequence = event.sequence
        self._window.keep(event, len(line) + 1)
        self._subscribers.offer(event)
        if self._on_append is not None:
            self._on_append(event)
        return event

    def _numbered(self, new: NewEvent) -> Event:
        return Event(
            sequence=self._last_sequence + 1,
            operation_id=cap_event_field("operation_id", new.operation_id),
            operation=cap_event_field("operation", new.operation),
            severity=new.severity,
            summary=cap_event_field("summary", new.summary),
            details=cap_event_field("details", new.details),
            error=capped_error(new.error),
            component=cap_event_field("component", new.component),
            cluster=cap_event_field("cluster", new.cluster),
            timestamp=datetime.now(UTC),
            operation_state=new.operation_state,
            mesh=self.mesh,
            stream_id=self.stream_id,
        )

    def subscribe(self, after_sequence: int = 0, operation_id: str = "") -> Subscription:
        """Start a subscription; raises `SequenceOutOfRange` when it would have a gap."""
        if self._closed:
            raise EventLogClosed(after_sequence)
        self._check_resumable(after_sequence)
        return self._subscribers.add(
            after_sequence=after_sequence,
            operation_id=operation_id,
            backlog=self._window.after(after_sequence, operation_id),
        )

    def _check_resumable(self, after_sequence: int) -> None:
        if after_sequence < 0:
            raise SequenceOutOfRange(f"after_sequence={after_sequence} must not be negative")
        if after_sequence > self._last_sequence:
            raise SequenceOutOfRange(
                f"after_sequence={after_sequence} is beyond the newest event "
                f"({self._last_sequence}) of event stream {self.stream_id}: the adapter's event "
                "log was reset; check event_stream_id with GetInfo and restart from "
                "after_sequence=0"
            )
        oldest = self.oldest_sequence
        if after_sequence > 0 and oldest and after_sequence < oldest - 1:
            raise SequenceOutOfRange(
                f"events {after_sequence + 1}..{oldest - 1} are no longer retained (retention "
                f"{self.retention} events, {self.retention_bytes} bytes); the oldest retained "
                f"event is {oldest}: resume with "
                f"after_sequence={oldest - 1} and reconcile state with GetOperation"
            )

    def flush(self) -> None:
        """Push persisted events to stable storage."""
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """End every subscription (they raise `EventLogClosed`) and close the file."""
        if self._closed:
            return
        self._closed = True
        self._subscribers.end_all()
        if self._file is not None:
            self._file.close()
            self._file = None

    def _restore(self, file: EventFile) -> None:
        """Continue the stream the state directory holds, or start one there."""
        stored = file.read()
        if stored is not None:
            self.stream_id = stored.stream_id
            self._last_sequence = stored.last_sequence
            for event in stored.events:
                self._window.keep(event, len(event_line(event)) + 1)
                self._last_sequence = max(self._last_sequence, event.sequence)
            _log.info(
                "events.restored",
                stream_id=self.stream_id,
                last_sequence=self._last_sequence,
                retained=len(self._window),
            )
        else:
            _log.info("events.new_stream", stream_id=self.stream_id, state_dir=str(file.directory))
        self._compact(file)

    def _compact(self, file: EventFile) -> None:
        file.compact(self._window, stream_id=self.stream_id, last_sequence=self._last_sequence)
