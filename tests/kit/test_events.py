"""EventLog: sequencing, retention, replay-then-follow, overflow, persistence across restarts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from adapters.kit.grpc.messages import event_to_pb
from adapters.kit.model.records import ErrorDetail, OperationState, Severity
from adapters.kit.run.event_files import EVENTS_FILE, META_FILE
from adapters.kit.run.event_log import EventLog
from adapters.kit.run.events import (
    Event,
    EventLogClosed,
    NewEvent,
    SequenceOutOfRange,
    SubscriberOverflow,
)
from serving.event_text import EVENT_FIELD_BYTES
from serving.message_limits import MAX_EVENT_BYTES


def _append(log: EventLog, count: int, operation_id: str = "op-1") -> list[Event]:
    return [
        log.append(
            NewEvent(
                severity=Severity.INFO,
                summary=f"event {i}",
                operation_id=operation_id,
                operation="install",
                operation_state=OperationState.RUNNING,
            )
        )
        for i in range(count)
    ]


async def _take(subscription: object, count: int) -> list[Event]:
    taken: list[Event] = []
    async with asyncio.timeout(5):
        async for event in subscription:  # type: ignore[attr-defined]
            taken.append(event)
            if len(taken) == count:
                break
    return taken


def test_sequences_increase_and_retention_drops_oldest() -> None:
    log = EventLog(mesh="toy", retention=5)
    events = _append(log, 12)
    assert [e.sequence for e in events] == list(range(1, 13))
    assert [e.sequence for e in log.retained()] == [8, 9, 10, 11, 12]
    assert log.oldest_sequence == 8
    assert log.last_sequence == 12
    assert {e.stream_id for e in events} == {log.stream_id}
    assert all(e.mesh == "toy" for e in events)


async def test_replay_then_follow_without_gap_or_duplicate() -> None:
    log = EventLog(mesh="toy")
    _append(log, 3)
    with log.subscribe(after_sequence=1) as subscription:
        first = await _take(subscription, 2)
        _append(log, 2)
        second = await _take(subscription, 2)
    assert [e.sequence for e in first + second] == [2, 3, 4, 5]
    assert log.subscriber_count == 0


async def test_live_events_arrive_while_waiting() -> None:
    log = EventLog(mesh="toy")
    with log.subscribe() as subscription:
        waiter = asyncio.ensure_future(_take(subscription, 2))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        _append(log, 2)
        assert [e.sequence for e in await waiter] == [1, 2]


async def test_operation_filter_replays_and_follows_only_that_operation() -> None:
    log = EventLog(mesh="toy")
    _append(log, 2, "a")
    _append(log, 2, "b")
    with log.subscribe(operation_id="b") as subscription:
        _append(log, 1, "a")
        _append(log, 1, "b")
        got = await _take(subscription, 3)
    assert [(e.sequence, e.operation_id) for e in got] == [(3, "b"), (4, "b"), (6, "b")]


async def test_overflow_ends_only_the_slow_subscriber_with_its_resume_point() -> None:
    log = EventLog(mesh="toy", queue_size=4)
    with log.subscribe() as slow, log.subscribe() as fast:
        _append(log, 2)
        assert [e.sequence for e in await _take(slow, 1)] == [1]
        for _ in range(10):
            _append(log, 1)
            await _take(fast, 1)
        with pytest.raises(SubscriberOverflow) as raised:
            await _take(slow, 1)
        assert raised.value.last_sequence == 1
        assert "after_sequence=1" in str(raised.value)
        _append(log, 1)
        assert [e.sequence for e in await _take(fast, 2)] == [11, 12]
    with log.subscribe(after_sequence=raised.value.last_sequence) as resumed:
        assert [e.sequence for e in await _take(resumed, 11)] == list(range(2, 13))


def test_after_sequence_outside_the_retained_window_is_refused() -> None:
    log = EventLog(mesh="toy", retention=3)
    _append(log, 10)
    with pytest.raises(SequenceOutOfRange, match=r"oldest retained event is 8"):
        log.subscribe(after_sequence=5)
    with pytest.raises(SequenceOutOfRange, match=r"beyond the newest event \(10\)"):
        log.subscribe(after_sequence=11)
    # 0 means "everything retained"; oldest-1 leaves no gap.
    with log.subscribe(after_sequence=0), log.subscribe(after_sequence=7):
        assert log.subscriber_count == 2


async def test_close_ends_subscribers_with_their_resume_point() -> None:
    log = EventLog(mesh="toy")
    _append(log, 2)
    with log.subscribe() as subscription:
        await _take(subscription, 2)
        log.close()
        with pytest.raises(EventLogClosed) as raised:
            await _take(subscription, 1)
    assert raised.value.last_sequence == 2
    with pytest.raises(RuntimeError):
        _append(log, 1)


def test_persisted_log_continues_its_sequence_and_stream(tmp_path: Path) -> None:
    log = EventLog(mesh="toy", retention=4, state_dir=tmp_path)
    _append(log, 6)
    log.append(
        NewEvent(
            severity=Severity.ERROR,
            summary="boom",
            operation_id="op-2",
            error=ErrorDetail(code="X", message="m", probable_cause="c", suggested_remediation="r"),
            operation_state=OperationState.FAILED,
        )
    )
    stream_id = log.stream_id
    log.close()

    reopened = EventLog(mesh="toy", retention=4, state_dir=tmp_path)
    assert reopened.stream_id == stream_id
    assert reopened.last_sequence == 7
    assert [e.sequence for e in reopened.retained()] == [4, 5, 6, 7]
    last = reopened.retained()[-1]
    assert last.error == ErrorDetail(
        code="X", message="m", probable_cause="c", suggested_remediation="r"
    )
    assert last.operation_state is OperationState.FAILED
    assert reopened.append(NewEvent(severity=Severity.INFO, summary="next")).sequence == 8
    reopened.close()


def test_a_line_cut_short_by_a_kill_is_dropped_and_numbering_continues(tmp_path: Path) -> None:
    log = EventLog(mesh="toy", state_dir=tmp_path)
    _append(log, 3)
    # No close(): the process "dies" halfway through writing event 4.
    with (tmp_path / EVENTS_FILE).open("a", encoding="utf-8") as handle:
        handle.write('{"sequence":4,"summ')
    reopened = EventLog(mesh="toy", state_dir=tmp_path)
    assert reopened.last_sequence == 3
    assert reopened.append(NewEvent(severity=Severity.INFO, summary="after")).sequence == 4
    reopened.close()
    log.close()  # only releases the dead process's file handle
    lines = (tmp_path / EVENTS_FILE).read_text().splitlines()
    assert [json.loads(line)["sequence"] for line in lines] == [1, 2, 3, 4]


def test_lost_state_starts_a_new_stream(tmp_path: Path) -> None:
    log = EventLog(mesh="toy", state_dir=tmp_path)
    _append(log, 3)
    log.close()
    (tmp_path / META_FILE).unlink()
    fresh = EventLog(mesh="toy", state_dir=tmp_path)
    assert fresh.stream_id != log.stream_id
    assert fresh.last_sequence == 0
    assert fresh.retained() == []
    fresh.close()


def test_file_is_compacted_to_the_retention_window(tmp_path: Path) -> None:
    log = EventLog(mesh="toy", retention=5, state_dir=tmp_path)
    _append(log, 400)
    lines = (tmp_path / EVENTS_FILE).read_text().splitlines()
    assert len(lines) <= 2 * 5 + 100
    assert json.loads(lines[-1])["sequence"] == 400
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["stream_id"] == log.stream_id
    log.close()


def test_append_hook_sees_every_event() -> None:
    seen: list[int] = []
    log = EventLog(mesh="toy", on_append=lambda event: seen.append(event.sequence))
    _append(log, 3)
    assert seen == [1, 2, 3]


def test_a_5_mb_detail_is_cut_with_a_marker_and_fits_the_coordinator(tmp_path: Path) -> None:
    log = EventLog(mesh="toy", state_dir=tmp_path)
    username = "u" * (5 * 1024 * 1024)
    event = log.append(
        NewEvent(
            severity=Severity.ERROR,
            summary=f"install accepted for {username}",
            details=f"requested by {username}",
            error=ErrorDetail(code="X", message=username, probable_cause=username),
            component=username,
            cluster=username,
            operation_id=username,
            operation=username,
        )
    )
    assert event.details.startswith("requested by uuu")
    assert event.details.endswith(" bytes]") and "… [truncated " in event.details
    assert len(event.details.encode()) <= EVENT_FIELD_BYTES["details"]
    assert event.error is not None and "truncated" in event.error.probable_cause
    encoded = event_to_pb(event)
    assert encoded.ByteSize() <= MAX_EVENT_BYTES
    log.close()
    # What the file holds is capped too, and an older, uncapped line is capped when read back.
    line = json.loads((tmp_path / EVENTS_FILE).read_text().splitlines()[-1])
    line["details"] = "d" * (3 * 1024 * 1024)
    line["sequence"] = 2
    with (tmp_path / EVENTS_FILE).open("a") as file:
        file.write(json.dumps(line) + "\n")
    reopened = EventLog(mesh="toy", state_dir=tmp_path)
    assert [e.sequence for e in reopened.retained()] == [1, 2]
    assert all(event_to_pb(e).ByteSize() <= MAX_EVENT_BYTES for e in reopened.retained())
    reopened.close()


def test_retention_is_bounded_in_bytes_as_well_as_in_count(tmp_path: Path) -> None:
    log = EventLog(mesh="toy", retention=1000, retention_bytes=200_000, state_dir=tmp_path)
    for index in range(40):
        log.append(NewEvent(severity=Severity.INFO, summary=f"event {index}", details="z" * 20_000))
    assert log.retained_bytes <= 200_000
    kept = [e.sequence for e in log.retained()]
    assert 5 <= len(kept) <= 10 and kept[-1] == 40
    with pytest.raises(SequenceOutOfRange, match="200000 bytes"):
        log.subscribe(after_sequence=1)
    # The file is compacted by bytes too: never more than about twice the bound.
    assert (tmp_path / EVENTS_FILE).stat().st_size <= 2 * 200_000 + 25_000
    log.close()
    reopened = EventLog(mesh="toy", retention=1000, retention_bytes=200_000, state_dir=tmp_path)
    assert [e.sequence for e in reopened.retained()] == kept
    reopened.close()
