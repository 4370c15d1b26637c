"""OperationJournal: persistence, interruption on open, bounded size, awkward ids."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.kit.model.records import (
    ClusterResult,
    ErrorDetail,
    OperationRecord,
    OperationState,
)
from adapters.kit.run.journal import (
    ADAPTER_STOPPED,
    MAX_RECORD_BYTES,
    OperationJournal,
    RecordTooLarge,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _record(operation_id: str, state: OperationState, minute: int = 0) -> OperationRecord:
    return OperationRecord(
        operation_id=operation_id,
        operation="install",
        mesh="toy",
        mesh_version="1.30.3",
        namespace="toy-system",
        delete=False,
        parameters={"profile": "demo"},
        username="alice",
        state=state,
        clusters=("east", "west"),
        cluster_results=(
            ClusterResult(cluster="east", state=OperationState.SUCCEEDED, objects_applied=4),
            ClusterResult(cluster="west", state=OperationState.RUNNING),
        )
        if state is OperationState.RUNNING
        else (),
        create_time=T0 + timedelta(minutes=minute),
        start_time=T0 + timedelta(minutes=minute, seconds=1),
        attempt=1,
        timeout_seconds=30.0,
    )


def test_records_round_trip_through_the_state_dir(tmp_path: Path) -> None:
    journal = OperationJournal(state_dir=tmp_path)
    done = dataclasses.replace(
        _record("done", OperationState.FAILED),
        error=ErrorDetail(code="C", message="m", probable_cause="p", suggested_remediation="r"),
        end_time=T0 + timedelta(minutes=2),
    )
    journal.put(done)
    reopened = OperationJournal(state_dir=tmp_path)
    assert reopened.get("done") == done
    assert reopened.interrupted_on_open == ()


def test_unfinished_records_are_marked_interrupted_on_open(tmp_path: Path) -> None:
    journal = OperationJournal(state_dir=tmp_path)
    journal.put(_record("running", OperationState.RUNNING))
    journal.put(_record("pending", OperationState.PENDING, minute=1))
    journal.put(_record("ok", OperationState.SUCCEEDED, minute=2))

    reopened = OperationJournal(state_dir=tmp_path)
    running = reopened.get("running")
    assert running is not None
    assert running.state is OperationState.INTERRUPTED
    assert running.error is not None and running.error.code == ADAPTER_STOPPED
    assert "same operation_id" in running.error.suggested_remediation
    assert running.end_time is not None
    # The cluster that finished keeps its result; the one in flight is interrupted.
    assert [(r.cluster, r.state) for r in running.cluster_results] == [
        ("east", OperationState.SUCCEEDED),
        ("west", OperationState.INTERRUPTED),
    ]
    pending = reopened.get("pending")
    assert pending is not None and pending.state is OperationState.INTERRUPTED
    assert [r.state for r in pending.cluster_results] == [OperationState.INTERRUPTED] * 2
    assert {r.operation_id for r in reopened.interrupted_on_open} == {"running", "pending"}
    ok = reopened.get("ok")
    assert ok is not None and ok.state is OperationState.SUCCEEDED
    # Interrupted once: a second restart does not report them again.
    assert OperationJournal(state_dir=tmp_path).interrupted_on_open == ()


def test_bounded_journal_evicts_oldest_finished_records(tmp_path: Path) -> None:
    journal = OperationJournal(state_dir=tmp_path, max_records=3)
    journal.put(_record("old-running", OperationState.RUNNING, minute=0))
    for minute in range(1, 5):
        journal.put(_record(f"done-{minute}", OperationState.SUCCEEDED, minute=minute))
    assert {r.operation_id for r in journal} == {"old-running", "done-3", "done-4"}
    assert len(list((tmp_path / "operations").glob("*.json"))) == 3


def test_awkward_ids_are_stored_safely(tmp_path: Path) -> None:
    journal = OperationJournal(state_dir=tmp_path)
    ids = [".", "..", "a:b", "x" * 128]
    for index, operation_id in enumerate(ids):
        journal.put(_record(operation_id, OperationState.SUCCEEDED, minute=index))
    reopened = OperationJournal(state_dir=tmp_path)
    assert sorted(r.operation_id for r in reopened) == sorted(ids)


def test_in_memory_journal_writes_nothing(tmp_path: Path) -> None:
    journal = OperationJournal()
    journal.put(_record("a", OperationState.RUNNING))
    assert journal.get("a") is not None
    assert list(tmp_path.iterdir()) == []


def test_journal_is_bounded_in_bytes(tmp_path: Path) -> None:
    journal = OperationJournal(state_dir=tmp_path, max_records=1000, max_bytes=MAX_RECORD_BYTES)
    big = {"blob": "b" * (1024 * 1024)}
    journal.put(dataclasses.replace(_record("running", OperationState.RUNNING), parameters=big))
    for minute in range(1, 6):
        record = _record(f"done-{minute}", OperationState.SUCCEEDED, minute=minute)
        journal.put(dataclasses.replace(record, parameters=big))
    assert journal.size_bytes <= MAX_RECORD_BYTES
    kept = {r.operation_id for r in journal}
    assert "running" in kept and "done-5" in kept and "done-1" not in kept
    on_disk = sum(p.stat().st_size for p in (tmp_path / "operations").glob("*.json"))
    assert on_disk == journal.size_bytes
    reopened = OperationJournal(state_dir=tmp_path)  # marks "running" interrupted (rewritten)
    on_disk = sum(p.stat().st_size for p in (tmp_path / "operations").glob("*.json"))
    assert reopened.size_bytes == on_disk


def test_a_record_larger_than_the_per_record_bound_is_refused() -> None:
    record = dataclasses.replace(
        _record("huge", OperationState.PENDING), username="u" * (MAX_RECORD_BYTES + 1)
    )
    with pytest.raises(RecordTooLarge, match="shorten username"):
        OperationJournal.check_size(record)
