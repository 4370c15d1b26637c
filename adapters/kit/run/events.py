"""The adapter's event log: one strictly increasing sequence, bounded retention, replay-then-follow.

Followers (the coordinator) de-duplicate by (adapter, sequence) and resume from the last sequence
they saw, so a sequence is never reused nor skipped for a subscriber: every event is written to
the state directory before any subscriber sees it, and after a restart numbering continues from
the file. The stream id changes only when that state is lost, telling followers to start over.

Appends never await: each subscriber has its own bounded queue, and a subscriber that falls
behind is ended with `SubscriberOverflow` (naming where to resume) instead of slowing the
operation or the other subscribers.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import structlog

from adapters.kit.model.records import ErrorDetail, OperationState, Severity
from adapters.kit.run.state_files import (
    atomic_write_text,
    error_from_json,
    error_to_json,
    time_from_json,
    time_to_json,
)
from serving.event_text import cap_event_field

__all__ = [
    "Event",
    "EventLog",
    "EventLogClosed",
    "SequenceOutOfRange",
    "SubscriberOverflow",
    "Subscription",
]

_log = structlog.get_logger(__name__)

EVENTS_FILE = "events.jsonl"
META_FILE = "events-meta.json"
DEFAULT_RETENTION_BYTES = 64 * 1024 * 1024
"""Retained events' encoded size at most, by default (the oldest go first)."""


def _capped_error(error: ErrorDetail | None) -> ErrorDetail | None:
    if error is None:
        return None
    return ErrorDetail(
        code=cap_event_field("error.code", error.code),
        message=cap_event_field("error.message", error.message),
        probable_cause=cap_event_field("error.probable_cause", error.probable_cause),
        suggested_remediation=cap_event_field(
            "error.suggested_remediation", error.suggested_remediation
        ),
    )


@dataclass(frozen=True, kw_only=True)
class Event:
    """One entry of the log; `operation_state` is the operation's state after this event."""

    sequence: int
    operation_id: str = ""
    operation: str = ""
    severity: Severity
    summary: str
    details: str = ""
    error: ErrorDetail | None = None
    component: str = ""
    cluster: str = ""
    timestamp: datetime
    operation_state: OperationState | None = None
    mesh: str
    stream_id: str


class SubscriberOverflow(Exception):
    """The subscriber fell too far behind; resume with after_sequence=`last_sequence`."""

    def __init__(self, last_sequence: int) -> None:
        super().__init__(f"subscriber fell behind; resume with after_sequence={last_sequence}")
        self.last_sequence = last_sequence


class EventLogClosed(Exception):
    """The log was closed (adapter shutting down); resume with after_sequence=`last_sequence`."""

    def __init__(self, last_sequence: int) -> None:
        super().__init__(f"event log closed; resume with after_sequence={last_sequence}")
        self.last_sequence = last_sequence


class SequenceOutOfRange(Exception):
    """after_sequence cannot be honoured without a gap (dropped by retention, or a reset log)."""


class Subscription:
    """Replays retained events after a sequence, then follows live ones.

    Created registered (the replay snapshot and registration happen in one step, so nothing falls
    between them); use it as a context manager so it is removed from the log however it ends.
    """

    def __init__(
        self,
        log: EventLog,
        *,
        after_sequence: int,
        operation_id: str,
        backlog: list[Event],
        queue_size: int,
    ) -> None:
        self._log = log
        self.operation_id = operation_id
        self._backlog = deque(backlog)
        self._queue: deque[Event] = deque()
        self._queue_size = queue_size
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
        """Called by the log when it closes: the subscriber ends after what it already has."""
        self._log_closed = True
        self._wakeup.set()

    def close(self) -> None:
        """Unregister from the log (idempotent)."""
        if not self._closed:
            self._closed = True
            self._log.remove(self)
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
        if retention < 1:
            raise ValueError("event retention must be at least 1")
        if retention_bytes < 1:
            raise ValueError("event retention bytes must be at least 1")
        if queue_size < 1:
            raise ValueError("subscriber queue size must be at least 1")
        self.mesh = mesh
        self.retention = retention
        self.retention_bytes = retention_bytes
        self.queue_size = queue_size
        self._on_append = on_append
        self._retained: deque[Event] = deque()
        self._sizes: deque[int] = deque()
        self._retained_bytes = 0
        self._file_bytes = 0
        self._subscribers: set[Subscription] = set()
        self._closed = False
        self._dir = state_dir
        self._file: IO[str] | None = None
        self._file_lines = 0
        self._last_sequence = 0
        self.stream_id = str(uuid.uuid4())
        if state_dir is not None:
            self._load(state_dir)

    @property
    def last_sequence(self) -> int:
        """Sequence of the newest event (0 when nothing was ever appended)."""
        return self._last_sequence

    @property
    def oldest_sequence(self) -> int:
        """Sequence of the oldest retained event (0 when none is retained)."""
        return self._retained[0].sequence if self._retained else 0

    @property
    def retained_bytes(self) -> int:
        """Encoded size of the retained events (what the persisted file holds once compacted)."""
        return self._retained_bytes

    @property
    def subscriber_count(self) -> int:
        """Subscribers currently registered."""
        return len(self._subscribers)

    def retained(self) -> list[Event]:
        """A snapshot of the retained events, oldest first."""
        return list(self._retained)

    def append(
        self,
        *,
        severity: Severity,
        summary: str,
        operation_id: str = "",
        operation: str = "",
        details: str = "",
        error: ErrorDetail | None = None,
        component: str = "",
        cluster: str = "",
        operation_state: OperationState | None = None,
    ) -> Event:
        """Record an event under the next sequence, persist it, then hand it to subscribers.

        Free text longer than its budget (`serving.event_text`) is cut with a visible marker,
        whatever produced it, so one event always fits what the coordinator reads.
        """
        if self._closed:
            raise RuntimeError("event log is closed")
        event = Event(
            sequence=self._last_sequence + 1,
            operation_id=cap_event_field("operation_id", operation_id),
            operation=cap_event_field("operation", operation),
            severity=severity,
            summary=cap_event_field("summary", summary),
            details=cap_event_field("details", details),
            error=_capped_error(error),
            component=cap_event_field("component", component),
            cluster=cap_event_field("cluster", cluster),
            timestamp=datetime.now(UTC),
            operation_state=operation_state,
            mesh=self.mesh,
            stream_id=self.stream_id,
        )
        line = self._event_to_line(event)
        self._persist(event, line)
        self._last_sequence = event.sequence
        self._retain(event, len(line) + 1)
        for subscriber in list(self._subscribers):
            if subscriber.wants(event):
                subscriber.offer(event)
        if self._on_append is not None:
            self._on_append(event)
        return event

    def _retain(self, event: Event, size: int) -> None:
        """Keep ``event`` for replay; drop the oldest beyond the count or the byte bound."""
        self._retained.append(event)
        self._sizes.append(size)
        self._retained_bytes += size
        while len(self._retained) > 1 and (
            len(self._retained) > self.retention or self._retained_bytes > self.retention_bytes
        ):
            self._retained.popleft()
            self._retained_bytes -= self._sizes.popleft()

    def subscribe(self, after_sequence: int = 0, operation_id: str = "") -> Subscription:
        """Start a subscription; raises `SequenceOutOfRange` when it would have a gap."""
        if self._closed:
            raise EventLogClosed(after_sequence)
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
        subscription = Subscription(
            self,
            after_sequence=after_sequence,
            operation_id=operation_id,
            backlog=[
                event
                for event in self._retained
                if event.sequence > after_sequence
                and (not operation_id or event.operation_id == operation_id)
            ],
            queue_size=self.queue_size,
        )
        self._subscribers.add(subscription)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        """Forget a subscriber (called by `Subscription.close`)."""
        self._subscribers.discard(subscription)

    def flush(self) -> None:
        """Push persisted events to stable storage."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """End every subscription (they raise `EventLogClosed`) and close the file."""
        if self._closed:
            return
        self._closed = True
        for subscriber in list(self._subscribers):
            subscriber.end()
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None

    # persistence

    def _load(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        meta_path = state_dir / META_FILE
        events_path = state_dir / EVENTS_FILE
        meta: dict[str, Any] = {}
        try:
            loaded = json.loads(meta_path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict) and isinstance(loaded.get("stream_id"), str):
                meta = loaded
        except (FileNotFoundError, ValueError):
            pass
        if meta:
            self.stream_id = str(meta["stream_id"])
            self._last_sequence = int(meta.get("last_sequence", 0))
            for event in self._read_events(events_path):
                self._retain(event, len(self._event_to_line(event)) + 1)
                self._last_sequence = max(self._last_sequence, event.sequence)
            _log.info(
                "events.restored",
                stream_id=self.stream_id,
                last_sequence=self._last_sequence,
                retained=len(self._retained),
            )
        else:
            _log.info("events.new_stream", stream_id=self.stream_id, state_dir=str(state_dir))
        self._compact()

    def _read_events(self, path: Path) -> list[Event]:
        events: list[Event] = []
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return events
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                events.append(self._event_from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                # A line cut short by a kill was never delivered to anyone: drop it.
                _log.warning("events.unreadable_line", file=str(path), line=number)
        return events

    def _event_from_json(self, data: dict[str, Any]) -> Event:
        timestamp = time_from_json(data["timestamp"])
        if timestamp is None:
            raise ValueError("event without timestamp")
        state = data.get("operation_state")
        # Capped again: a file written by an older adapter may hold longer text.
        return Event(
            sequence=int(data["sequence"]),
            operation_id=cap_event_field("operation_id", str(data.get("operation_id", ""))),
            operation=cap_event_field("operation", str(data.get("operation", ""))),
            severity=Severity(data["severity"]),
            summary=cap_event_field("summary", str(data.get("summary", ""))),
            details=cap_event_field("details", str(data.get("details", ""))),
            error=_capped_error(error_from_json(data.get("error"))),
            component=cap_event_field("component", str(data.get("component", ""))),
            cluster=cap_event_field("cluster", str(data.get("cluster", ""))),
            timestamp=timestamp,
            operation_state=None if state is None else OperationState(state),
            mesh=self.mesh,
            stream_id=self.stream_id,
        )

    @staticmethod
    def _event_to_line(event: Event) -> str:
        return json.dumps(
            {
                "sequence": event.sequence,
                "operation_id": event.operation_id,
                "operation": event.operation,
                "severity": event.severity.value,
                "summary": event.summary,
                "details": event.details,
                "error": error_to_json(event.error),
                "component": event.component,
                "cluster": event.cluster,
                "timestamp": time_to_json(event.timestamp),
                "operation_state": (
                    None if event.operation_state is None else event.operation_state.value
                ),
            },
            separators=(",", ":"),
        )

    def _persist(self, event: Event, line: str) -> None:
        if self._dir is None:
            return
        if (
            self._file_lines >= 2 * self.retention + 100
            or self._file_bytes >= 2 * self.retention_bytes
        ):
            self._compact()
        if self._file is None:
            return
        try:
            self._file.write(line + "\n")
            self._file.flush()
            self._file_lines += 1
            self._file_bytes += len(line) + 1
        except OSError:
            _log.exception("events.persist_failed", sequence=event.sequence)

    def _compact(self) -> None:
        """Rewrite the file to the retention window (also repairs a line cut short by a kill)."""
        if self._dir is None:
            return
        if self._file is not None:
            self._file.close()
            self._file = None
        events_path = self._dir / EVENTS_FILE
        body = "".join(self._event_to_line(event) + "\n" for event in self._retained)
        try:
            atomic_write_text(events_path, body)
            atomic_write_text(
                self._dir / META_FILE,
                json.dumps({"stream_id": self.stream_id, "last_sequence": self._last_sequence}),
            )
            self._file = events_path.open("a", encoding="utf-8")
            self._file_lines = len(self._retained)
            self._file_bytes = self._retained_bytes
        except OSError:
            _log.exception("events.compact_failed", state_dir=str(self._dir))
