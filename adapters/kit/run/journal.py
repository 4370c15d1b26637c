"""The operation journal: every operation record, kept so a restarted adapter still answers.

Records are written (one JSON file per operation, atomically renamed) before the work they
describe starts, so an adapter that is killed mid-operation finds the record on restart, marks it
INTERRUPTED and resumes it when the client re-sends the same operation_id. Without a state
directory the journal lives in memory only. It is bounded in records and in bytes (the encoded
records' total): the oldest finished records go first. One record is bounded too
(`MAX_RECORD_BYTES`): the runner refuses a request whose record would be larger, before running it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import structlog

from adapters.kit.model.records import (
    TERMINAL_STATES,
    ClusterResult,
    ErrorDetail,
    OperationRecord,
    OperationState,
)
from adapters.kit.run.state_files import atomic_write_text, record_from_json, record_to_json

__all__ = [
    "ADAPTER_STOPPED",
    "DEFAULT_JOURNAL_BYTES",
    "MAX_RECORD_BYTES",
    "OperationJournal",
    "RecordTooLarge",
    "interrupted",
]

_log = structlog.get_logger(__name__)

ADAPTER_STOPPED = "ADAPTER_STOPPED"
OPERATIONS_DIR = "operations"
MAX_RECORD_BYTES = 4 * 1024 * 1024
"""One encoded operation record at most (custom_body, parameters, username and results)."""
DEFAULT_JOURNAL_BYTES = 256 * 1024 * 1024
"""Every kept record's encoded size together, by default."""


class RecordTooLarge(ValueError):
    """An operation record would be larger than `MAX_RECORD_BYTES`."""


def _encoded(record: OperationRecord) -> str:
    return json.dumps(record_to_json(record), indent=1)


def interrupted(record: OperationRecord, *, cause: str) -> OperationRecord:
    """The record as INTERRUPTED: unfinished clusters too, with how to resume."""
    error = ErrorDetail(
        code=ADAPTER_STOPPED,
        message=f"the adapter stopped while operation {record.operation_id!r} was "
        f"{record.state.value.lower()}",
        probable_cause=cause,
        suggested_remediation="send ApplyOperation again with the same operation_id to resume; "
        "the work is idempotent and converges from where it stopped",
    )
    results = tuple(
        result
        if result.state in TERMINAL_STATES
        else dataclasses.replace(result, state=OperationState.INTERRUPTED, error=error)
        for result in record.cluster_results
    ) or tuple(
        ClusterResult(cluster=name, state=OperationState.INTERRUPTED, error=error)
        for name in record.clusters
    )
    return dataclasses.replace(
        record,
        state=OperationState.INTERRUPTED,
        cluster_results=results,
        error=error,
        end_time=datetime.now(UTC),
    )


class OperationJournal:
    """Operation records by id, persisted under ``state_dir/operations`` when a dir is given."""

    def __init__(
        self,
        *,
        state_dir: Path | None = None,
        max_records: int = 1_000,
        max_bytes: int = DEFAULT_JOURNAL_BYTES,
    ) -> None:
        if max_records < 1:
            raise ValueError("the journal must keep at least one record")
        if max_bytes < MAX_RECORD_BYTES:
            raise ValueError(f"the journal must hold at least {MAX_RECORD_BYTES} bytes")
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._dir = None if state_dir is None else state_dir / OPERATIONS_DIR
        self._records: dict[str, OperationRecord] = {}
        self._sizes: dict[str, int] = {}
        self._bytes = 0
        self.interrupted_on_open: tuple[OperationRecord, ...] = ()
        """Records found PENDING/RUNNING on open (the previous process stopped mid-run)."""
        if self._dir is not None:
            self._load(self._dir)

    def get(self, operation_id: str) -> OperationRecord | None:
        """The current record, or None."""
        return self._records.get(operation_id)

    @property
    def size_bytes(self) -> int:
        """Encoded size of every kept record together."""
        return self._bytes

    @staticmethod
    def check_size(record: OperationRecord) -> int:
        """The record's encoded size; `RecordTooLarge` beyond `MAX_RECORD_BYTES`."""
        size = len(_encoded(record).encode("utf-8"))
        if size > MAX_RECORD_BYTES:
            raise RecordTooLarge(
                f"operation {record.operation_id!r} would be recorded as {size} bytes; at most "
                f"{MAX_RECORD_BYTES} are kept per operation (shorten username, parameters or "
                "custom_body)"
            )
        return size

    def put(self, record: OperationRecord) -> None:
        """Store (and persist) the record, replacing the previous one with the same id."""
        text = _encoded(record)
        self._records[record.operation_id] = record
        self._resize(record.operation_id, len(text.encode("utf-8")))
        self._write(record, text)
        self._evict()

    def _resize(self, operation_id: str, size: int) -> None:
        self._bytes += size - self._sizes.get(operation_id, 0)
        self._sizes[operation_id] = size

    def __iter__(self) -> Iterator[OperationRecord]:
        return iter(list(self._records.values()))

    def __len__(self) -> int:
        return len(self._records)

    def _path(self, operation_id: str) -> Path:
        # Ids may be "." or 128 characters long: hash them into safe, short file names.
        assert self._dir is not None
        digest = hashlib.sha256(operation_id.encode("utf-8")).hexdigest()
        return self._dir / f"{digest}.json"

    def _write(self, record: OperationRecord, text: str) -> None:
        if self._dir is None:
            return
        try:
            atomic_write_text(self._path(record.operation_id), text)
        except OSError:
            _log.exception("journal.write_failed", operation_id=record.operation_id)

    def _over(self) -> bool:
        return len(self._records) > self.max_records or self._bytes > self.max_bytes

    def _evict(self) -> None:
        if not self._over():
            return
        for record in sorted(self._records.values(), key=lambda r: r.create_time):
            if not self._over():
                break
            if record.state not in TERMINAL_STATES:
                continue
            del self._records[record.operation_id]
            self._bytes -= self._sizes.pop(record.operation_id, 0)
            if self._dir is not None:
                self._path(record.operation_id).unlink(missing_ok=True)

    def _load(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        loaded: list[OperationRecord] = []
        sizes: dict[str, int] = {}
        for path in directory.glob("*.json"):
            try:
                size = path.stat().st_size
                if size > MAX_RECORD_BYTES:
                    raise RecordTooLarge(f"{size} bytes")
                found = record_from_json(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError, TypeError):
                _log.warning("journal.unreadable_record", file=str(path))
                continue
            loaded.append(found)
            sizes[found.operation_id] = size
        loaded.sort(key=lambda r: r.create_time)
        stopped: list[OperationRecord] = []
        for found in loaded:
            record = found
            if found.state not in TERMINAL_STATES:
                record = interrupted(
                    found,
                    cause="the adapter process ended without a graceful shutdown (killed, "
                    "crashed, or its pod was rescheduled) while the operation ran",
                )
                text = _encoded(record)
                self._write(record, text)
                sizes[record.operation_id] = len(text.encode("utf-8"))
                stopped.append(record)
            self._records[record.operation_id] = record
            self._resize(record.operation_id, sizes[found.operation_id])
        self.interrupted_on_open = tuple(stopped)
        self._evict()
        _log.info(
            "journal.opened",
            directory=str(directory),
            records=len(self._records),
            interrupted=len(stopped),
        )
