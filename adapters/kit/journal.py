"""The operation journal: every operation record, kept so a restarted adapter still answers.

Records are written (one JSON file per operation, atomically renamed) before the work they
describe starts, so an adapter that is killed mid-operation finds the record on restart, marks it
INTERRUPTED and resumes it when the client re-sends the same operation_id. Without a state
directory the journal lives in memory only. It is bounded: the oldest finished records go first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import structlog

from adapters.kit.operations import (
    TERMINAL_STATES,
    ClusterResult,
    ErrorDetail,
    OperationRecord,
    OperationState,
)
from adapters.kit.state_files import atomic_write_text, record_from_json, record_to_json

__all__ = ["ADAPTER_STOPPED", "OperationJournal", "interrupted"]

_log = structlog.get_logger(__name__)

ADAPTER_STOPPED = "ADAPTER_STOPPED"
OPERATIONS_DIR = "operations"


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

    def __init__(self, *, state_dir: Path | None = None, max_records: int = 1_000) -> None:
        if max_records < 1:
            raise ValueError("the journal must keep at least one record")
        self.max_records = max_records
        self._dir = None if state_dir is None else state_dir / OPERATIONS_DIR
        self._records: dict[str, OperationRecord] = {}
        self.interrupted_on_open: tuple[OperationRecord, ...] = ()
        """Records found PENDING/RUNNING on open (the previous process stopped mid-run)."""
        if self._dir is not None:
            self._load(self._dir)

    def get(self, operation_id: str) -> OperationRecord | None:
        """The current record, or None."""
        return self._records.get(operation_id)

    def put(self, record: OperationRecord) -> None:
        """Store (and persist) the record, replacing the previous one with the same id."""
        self._records[record.operation_id] = record
        self._write(record)
        self._evict()

    def __iter__(self) -> Iterator[OperationRecord]:
        return iter(list(self._records.values()))

    def __len__(self) -> int:
        return len(self._records)

    def _path(self, operation_id: str) -> Path:
        # Ids may be "." or 128 characters long: hash them into safe, short file names.
        assert self._dir is not None
        digest = hashlib.sha256(operation_id.encode("utf-8")).hexdigest()
        return self._dir / f"{digest}.json"

    def _write(self, record: OperationRecord) -> None:
        if self._dir is None:
            return
        try:
            atomic_write_text(
                self._path(record.operation_id), json.dumps(record_to_json(record), indent=1)
            )
        except OSError:
            _log.exception("journal.write_failed", operation_id=record.operation_id)

    def _evict(self) -> None:
        excess = len(self._records) - self.max_records
        if excess <= 0:
            return
        for record in sorted(self._records.values(), key=lambda r: r.create_time):
            if excess <= 0:
                break
            if record.state not in TERMINAL_STATES:
                continue
            del self._records[record.operation_id]
            excess -= 1
            if self._dir is not None:
                self._path(record.operation_id).unlink(missing_ok=True)

    def _load(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        loaded: list[OperationRecord] = []
        for path in directory.glob("*.json"):
            try:
                loaded.append(record_from_json(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, KeyError, TypeError):
                _log.warning("journal.unreadable_record", file=str(path))
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
                self._write(record)
                stopped.append(record)
            self._records[record.operation_id] = record
        self.interrupted_on_open = tuple(stopped)
        self._evict()
        _log.info(
            "journal.opened",
            directory=str(directory),
            records=len(self._records),
            interrupted=len(stopped),
        )
