"""The event log's state on disk: ``events.jsonl`` (one event a line, appended and fsynced on
flush) and ``events-meta.json`` (the stream id and the last sequence handed out).

The file is rewritten to the replay window when it grows to twice its bounds (and on every
start, which also repairs a line cut short by a kill). A failing disk is logged, never raised:
events keep flowing to subscribers from memory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import structlog

from adapters.kit.run.event_lines import event_from_json, event_line
from adapters.kit.run.event_retention import RetainedEvents
from adapters.kit.run.events import Event
from adapters.kit.run.state_files import atomic_write_text

__all__ = ["EVENTS_FILE", "META_FILE", "EventFile", "StoredStream"]

_log = structlog.get_logger(__name__)

EVENTS_FILE = "events.jsonl"
META_FILE = "events-meta.json"
_SPARE_LINES = 100
"""Lines the file may hold beyond twice the retained count before it is compacted."""


@dataclass(frozen=True, kw_only=True)
class StoredStream:
    """What a previous run of the adapter left: its stream, numbering and readable events."""

    stream_id: str
    last_sequence: int
    events: list[Event]


class EventFile:
    """The persisted events of one adapter's log, in ``directory``."""

    def __init__(self, directory: Path, *, mesh: str) -> None:
        self.directory = directory
        self._mesh = mesh
        self._file: IO[str] | None = None
        self._lines = 0
        self._bytes = 0

    def read(self) -> StoredStream | None:
        """The stream stored in the directory (created if missing); None when it holds none."""
        self.directory.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {}
        try:
            loaded = json.loads((self.directory / META_FILE).read_text(encoding="utf-8"))
            if isinstance(loaded, dict) and isinstance(loaded.get("stream_id"), str):
                meta = loaded
        except (FileNotFoundError, ValueError):
            pass
        if not meta:
            return None
        stream_id = str(meta["stream_id"])
        return StoredStream(
            stream_id=stream_id,
            last_sequence=int(meta.get("last_sequence", 0)),
            events=self._read_events(stream_id),
        )

    def _read_events(self, stream_id: str) -> list[Event]:
        path = self.directory / EVENTS_FILE
        events: list[Event] = []
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return events
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                events.append(
                    event_from_json(json.loads(line), mesh=self._mesh, stream_id=stream_id)
                )
            except (ValueError, KeyError, TypeError):
                # A line cut short by a kill was never delivered to anyone: drop it.
                _log.warning("events.unreadable_line", file=str(path), line=number)
        return events

    def outgrew(self, window: RetainedEvents) -> bool:
        """Whether the file holds twice the window's bounds, and should be compacted."""
        return (
            self._lines >= 2 * window.count + _SPARE_LINES or self._bytes >= 2 * window.size_bytes
        )

    def append(self, line: str, *, sequence: int) -> None:
        """Write one event's line (nothing while the file could not be opened)."""
        if self._file is None:
            return
        try:
            self._file.write(line + "\n")
            self._file.flush()
            self._lines += 1
            self._bytes += len(line) + 1
        except OSError:
            _log.exception("events.persist_failed", sequence=sequence)

    def compact(self, window: RetainedEvents, *, stream_id: str, last_sequence: int) -> None:
        """Rewrite the file to the window's events, and the meta file, then reopen for appends."""
        self._close_file()
        events_path = self.directory / EVENTS_FILE
        body = "".join(event_line(event) + "\n" for event in window)
        try:
            atomic_write_text(events_path, body)
            atomic_write_text(
                self.directory / META_FILE,
                json.dumps({"stream_id": stream_id, "last_sequence": last_sequence}),
            )
            self._file = events_path.open("a", encoding="utf-8")
            self._lines = len(window)
            self._bytes = window.bytes
        except OSError:
            _log.exception("events.compact_failed", state_dir=str(self.directory))

    def flush(self) -> None:
        """Push written events to stable storage."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Flush and close the file."""
        self.flush()
        self._close_file()

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
