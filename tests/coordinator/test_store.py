"""The coordinator store: every test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from coordinator.store import (
    MIGRATIONS,
    EventFilter,
    EventRecord,
    Migration,
    OperationFilter,
    OperationRecord,
    PerfResultRecord,
    PostgresStore,
    SQLiteStore,
    Store,
    StoreClosedError,
    StoredEvent,
    open_store,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_operation(
    n: int,
    *,
    created_at: datetime | None = None,
    mesh: str = "istio",
    state: str = "succeeded",
    username: str = "alice",
    operation: str = "install",
) -> OperationRecord:
    created = created_at or T0 + timedelta(seconds=n)
    return OperationRecord(
        operation_id=f"op-{n:05d}",
        mesh=mesh,
        operation=operation,
        state=state,
        username=username,
        request={"n": n, "namespace": "istio-system", "values": {"replicas": 2}},
        cluster_results=[{"cluster": "east", "ok": True}],
        error=None,
        adapter="istio/a1",
        created_at=created,
        updated_at=created,
    )


def make_event(
    source: str,
    sequence: int,
    *,
    mesh: str = "istio",
    operation_id: str = "op-1",
    severity: str = "info",
    timestamp: datetime | None = None,
) -> EventRecord:
    return EventRecord(
        source=source,
        sequence=sequence,
        mesh=mesh,
        operation_id=operation_id,
        severity=severity,
        timestamp=timestamp or T0 + timedelta(milliseconds=sequence),
        payload={"summary": f"{source} #{sequence}", "details": {"n": sequence}},
    )


def open_with(location: str, migrations: Sequence[Migration]) -> Store:
    """Open a store that knows only some migrations (an older coordinator)."""
    if location.startswith("postgresql://"):
        return PostgresStore(location, migrations=migrations)
    return SQLiteStore(location, migrations=migrations)


def keys(stored: Sequence[StoredEvent]) -> list[tuple[str, int]]:
    return [(s.event.source, s.event.sequence) for s in stored]


# -- operations ---------------------------------------------------------------------------


async def test_operation_round_trips_with_json_and_utc_times(store: Store) -> None:
    plus_two = timezone(timedelta(hours=2))
    record = OperationRecord(
        operation_id="op-a",
        mesh="linkerd",
        operation="upgrade",
        state="failed",
        username="bob",
        request={"version": "2.14", "flags": [1, 2.5, None, True], "note": "ünïcode ✓"},
        cluster_results=[{"cluster": "east", "ok": False, "objects": 3}, {"cluster": "west"}],
        error={"code": "APPLY_FAILED", "message": "boom"},
        adapter="linkerd/a7",
        created_at=datetime(2026, 3, 1, 14, 0, 0, 123456, tzinfo=plus_two),
        updated_at=datetime(2026, 3, 1, 14, 0, 5, tzinfo=plus_two),
        started_at=datetime(2026, 3, 1, 12, 0, 1, tzinfo=UTC),
        finished_at=datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC),
    )
    await store.save_operation(record)

    got = await store.get_operation("op-a")

    assert got == record
    assert got is not None
    assert got.created_at.tzinfo == UTC
    assert got.created_at == datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert await store.get_operation("op-missing") is None


async def test_save_operation_updates_but_keeps_first_created_at(store: Store) -> None:
    first = make_operation(1, state="pending")
    await store.save_operation(first)
    later = OperationRecord(
        **{
            **first.__dict__,
            "state": "succeeded",
            "cluster_results": [{"cluster": "east", "ok": True, "objects": 9}],
            "created_at": first.created_at + timedelta(hours=1),
            "updated_at": first.created_at + timedelta(hours=1),
            "finished_at": first.created_at + timedelta(hours=1),
        }
    )

    returned = await store.save_operation(later)
    got = await store.get_operation(first.operation_id)

    assert returned.created_at == first.created_at
    assert got is not None
    assert got.state == "succeeded"
    assert got.cluster_results == [{"cluster": "east", "ok": True, "objects": 9}]
    assert got.created_at == first.created_at
    assert got.updated_at == later.updated_at
    assert got.finished_at == later.finished_at


async def test_list_operations_filters(store: Store) -> None:
    records = [
        make_operation(
            n,
            mesh=("istio", "linkerd", "consul")[n % 3],
            state=("succeeded", "failed")[n % 2],
            username=("alice", "bob", "carol", "dave")[n % 4],
            operation=("install", "uninstall")[n // 10 % 2],
        )
        for n in range(40)
    ]
    for record in records:
        await store.save_operation(record)
    newest_first = sorted(records, key=lambda r: (r.created_at, r.operation_id), reverse=True)
    cases: list[tuple[OperationFilter, Callable[[OperationRecord], bool]]] = [
        (OperationFilter(), lambda r: True),
        (OperationFilter(mesh="linkerd"), lambda r: r.mesh == "linkerd"),
        (
            OperationFilter(mesh="istio", state="failed"),
            lambda r: r.mesh == "istio" and r.state == "failed",
        ),
        (OperationFilter(username="bob"), lambda r: r.username == "bob"),
        (OperationFilter(operation="uninstall"), lambda r: r.operation == "uninstall"),
        (
            OperationFilter(since=T0 + timedelta(seconds=10), until=T0 + timedelta(seconds=20)),
            lambda r: T0 + timedelta(seconds=10) <= r.created_at < T0 + timedelta(seconds=20),
        ),
        (OperationFilter(mesh="nope"), lambda r: False),
    ]
    for filter_, wanted in cases:
        page, token = await store.list_operations(filter_, page_size=100)
        assert [r.operation_id for r in page] == [
            r.operation_id for r in newest_first if wanted(r)
        ], filter_
        assert token == ""


async def test_paging_is_stable_under_inserts_between_pages(store: Store) -> None:
    # Three operations share each created_at, so the operation_id tie-break matters.
    records = [make_operation(n, created_at=T0 + timedelta(seconds=n // 3)) for n in range(250)]
    shuffled = records[:]
    random.Random(7).shuffle(shuffled)
    for record in shuffled:
        await store.save_operation(record)
    expected = sorted(records, key=lambda r: (r.created_at, r.operation_id), reverse=True)

    seen: list[OperationRecord] = []
    token = ""
    pages = 0
    extra = 1000
    while True:
        page, token = await store.list_operations(page_size=100, page_token=token)
        seen.extend(page)
        pages += 1
        if not token:
            break
        # Newer operations arrive between pages; they must not shift or repeat later pages.
        for _ in range(5):
            await store.save_operation(make_operation(extra, created_at=T0 + timedelta(days=1)))
            extra += 1

    assert pages == 3
    assert [r.operation_id for r in seen] == [r.operation_id for r in expected]
    first_page, _ = await store.list_operations(page_size=100)
    assert first_page[0].created_at == T0 + timedelta(days=1)


async def test_paging_with_a_filter_and_bad_arguments(store: Store) -> None:
    for n in range(30):
        await store.save_operation(make_operation(n, mesh=("istio", "linkerd")[n % 2]))
    collected: list[str] = []
    token = ""
    while True:
        page, token = await store.list_operations(
            OperationFilter(mesh="linkerd"), page_size=4, page_token=token
        )
        assert len(page) <= 4
        collected.extend(r.operation_id for r in page)
        if not token:
            break
    assert collected == [f"op-{n:05d}" for n in range(29, 0, -2)]

    with pytest.raises(ValueError, match="page token"):
        await store.list_operations(page_token="not-a-token")
    with pytest.raises(ValueError, match="page_size"):
        await store.list_operations(page_size=0)


async def test_json_that_postgresql_cannot_hold_is_refused_on_both(store: Store) -> None:
    base = make_operation(1).__dict__
    for request in ({"x": float("nan")}, {"x": "nul \x00 inside"}, {"k\x00": 1}):
        with pytest.raises(ValueError):
            await store.save_operation(OperationRecord(**{**base, "request": request}))
    assert await store.get_operation("op-00001") is None
    # A literal backslash-u text is not a NUL and round-trips.
    literal = OperationRecord(**{**base, "request": {"x": "\\u0000", "y": "C:\\\\u0000\\"}})
    await store.save_operation(literal)
    assert await store.get_operation("op-00001") == literal


# -- events -------------------------------------------------------------------------------


async def test_append_events_skips_already_stored_ones(store: Store) -> None:
    first = await store.append_events([make_event("istio/a1", n) for n in range(1, 6)])
    again = await store.append_events(
        [make_event("istio/a1", n) for n in (3, 4, 5, 6, 6, 7)] + [make_event("linkerd/b1", 1)]
    )

    assert keys(first) == [("istio/a1", n) for n in range(1, 6)]
    assert keys(again) == [("istio/a1", 6), ("istio/a1", 7), ("linkerd/b1", 1)]
    cursors = [s.cursor for s in first + again]
    assert cursors == sorted(cursors)
    assert len(set(cursors)) == len(cursors)
    everything = await store.events_after(0)
    assert everything == first + again
    assert await store.append_events([]) == []


async def test_events_after_filters_and_limits(store: Store) -> None:
    severities = ["debug", "info", "warning", "error"]
    events = [
        make_event(
            "istio/a1",
            n,
            mesh=("istio", "linkerd")[n % 2],
            operation_id=f"op-{n % 3}",
            severity=severities[n % 4],
        )
        for n in range(1, 41)
    ]
    stored = await store.append_events(events)

    def expect(predicate: Callable[[EventRecord], bool], after: int = 0) -> list[StoredEvent]:
        return [s for s in stored if s.cursor > after and predicate(s.event)]

    assert await store.events_after(0, EventFilter(mesh="linkerd")) == expect(
        lambda e: e.mesh == "linkerd"
    )
    assert await store.events_after(0, EventFilter(operation_id="op-2")) == expect(
        lambda e: e.operation_id == "op-2"
    )
    assert await store.events_after(0, EventFilter(severity_at_least="WARNING")) == expect(
        lambda e: e.severity in {"warning", "error"}
    )
    middle = stored[19].cursor
    assert await store.events_after(middle, EventFilter(mesh="istio", operation_id="op-1")) == (
        expect(lambda e: e.mesh == "istio" and e.operation_id == "op-1", after=middle)
    )
    assert await store.events_after(0, limit=7) == stored[:7]
    assert await store.events_after(stored[-1].cursor) == []


async def test_last_sequence_and_latest_cursor(store: Store) -> None:
    assert await store.last_sequence("istio/a1") == 0
    assert await store.latest_cursor() == 0

    await store.append_events([make_event("istio/a1", n) for n in (1, 2, 3)])
    stored = await store.append_events([make_event("linkerd/b1", 10), make_event("istio/a1", 4)])

    assert await store.last_sequence("istio/a1") == 4
    assert await store.last_sequence("linkerd/b1") == 10
    assert await store.last_sequence("consul/c1") == 0
    assert await store.latest_cursor() == stored[-1].cursor


async def test_two_coordinators_appending_the_same_events_store_each_once(
    store_location: str,
) -> None:
    coordinators = [open_store(store_location), open_store(store_location)]
    for coordinator in coordinators:
        await coordinator.migrate()
    streams = {source: [make_event(source, n) for n in range(1, 61)] for source in ("a", "b", "c")}

    async def follow(coordinator: Store, batch_size: int) -> list[StoredEvent]:
        stored: list[StoredEvent] = []
        for start in range(0, 60, batch_size):
            for events in streams.values():
                stored += await coordinator.append_events(events[start : start + batch_size])
        return stored

    try:
        results = await asyncio.gather(follow(coordinators[0], 4), follow(coordinators[1], 7))
        everything = await coordinators[0].events_after(0)
        last = {s: await coordinators[1].last_sequence(s) for s in streams}
    finally:
        for coordinator in coordinators:
            await coordinator.close()

    all_keys = sorted(keys(everything))
    assert all_keys == sorted((s, n) for s in streams for n in range(1, 61))
    returned = results[0] + results[1]
    assert sorted(keys(returned)) == all_keys  # each event reported new by exactly one writer
    assert sorted(returned, key=lambda s: s.cursor) == everything
    assert last == {"a": 60, "b": 60, "c": 60}


async def test_concurrent_writers_and_pollers_see_every_event_once_in_order(
    store_location: str,
) -> None:
    writers = [open_store(store_location) for _ in range(4)]
    reader_store = open_store(store_location)
    for opened in (*writers, reader_store):
        await opened.migrate()
    per_writer = 200
    total = per_writer * len(writers)

    async def write(index: int, writer: Store) -> None:
        rng = random.Random(index)
        sequence = 1
        while sequence <= per_writer:
            size = min(rng.randint(1, 6), per_writer - sequence + 1)
            batch = [make_event(f"w{index}", n) for n in range(sequence, sequence + size)]
            await writer.append_events(batch)
            sequence += size

    writers_done = asyncio.Event()

    async def poll() -> list[StoredEvent]:
        seen: list[StoredEvent] = []
        cursor = 0
        while True:
            # Read the flag first: an empty page after it was set means we have caught up.
            finished = writers_done.is_set()
            page = await reader_store.events_after(cursor, limit=37)
            if page:
                cursor = page[-1].cursor
                seen.extend(page)
            elif finished:
                return seen
            else:
                await asyncio.sleep(0)

    readers = [asyncio.ensure_future(poll()) for _ in range(3)]
    try:
        await asyncio.gather(*(write(i, w) for i, w in enumerate(writers)))
        writers_done.set()
        seen_by_reader = await asyncio.wait_for(asyncio.gather(*readers), timeout=30)
        everything = await reader_store.events_after(0, limit=1000)
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for opened in (*writers, reader_store):
            await opened.close()

    assert len(everything) == total
    for seen in seen_by_reader:
        assert seen == everything  # every event, exactly once, in cursor order
    for index in range(len(writers)):
        sequences = [s.event.sequence for s in everything if s.event.source == f"w{index}"]
        assert sequences == list(range(1, per_writer + 1))


async def test_prune_deletes_old_events_and_keeps_them_from_coming_back(store: Store) -> None:
    old = [make_event("istio/a1", n, timestamp=T0 - timedelta(days=10)) for n in (1, 2, 3)]
    new = [make_event("istio/a1", n, timestamp=T0) for n in (4, 5)]
    other_old = [make_event("linkerd/b1", 1, timestamp=T0 - timedelta(days=9))]
    stored = await store.append_events(old + new + other_old)

    deleted = await store.prune_events(T0 - timedelta(days=1))

    assert deleted == 4
    assert keys(await store.events_after(0)) == [("istio/a1", 4), ("istio/a1", 5)]
    assert await store.last_sequence("istio/a1") == 5
    assert await store.last_sequence("linkerd/b1") == 1
    # A lagging coordinator replaying pruned events must not store them again.
    assert await store.append_events(old + other_old) == []
    assert await store.prune_events(T0 - timedelta(days=1)) == 0

    assert await store.prune_events(T0 + timedelta(days=1)) == 2
    assert await store.latest_cursor() == 0
    fresh = await store.append_events([make_event("istio/a1", 6)])
    assert fresh[0].cursor > max(s.cursor for s in stored)  # cursors are never reused


# -- schema -------------------------------------------------------------------------------


async def test_migrations_are_versioned_and_idempotent(store: Store) -> None:
    applied = await store.applied_migrations()
    await store.migrate()
    again = await store.applied_migrations()

    assert [(m.version, m.description) for m in applied] == [
        (m.version, m.description) for m in MIGRATIONS
    ]
    assert again == applied
    assert all(m.applied_at.tzinfo == UTC for m in applied)


async def test_migrate_applies_only_missing_versions(store_location: str) -> None:
    older = open_with(store_location, MIGRATIONS[:1])
    await older.migrate()
    await older.save_operation(make_operation(1))
    version_one = await older.applied_migrations()
    with pytest.raises(Exception, match="perf_results"):
        await older.list_perf_results()
    await older.close()

    newer = open_store(store_location)
    try:
        await newer.migrate()
        applied = await newer.applied_migrations()
        assert applied[:1] == version_one
        assert [m.version for m in applied] == [m.version for m in MIGRATIONS]
        assert await newer.get_operation("op-00001") == make_operation(1)
        assert await newer.list_perf_results() == []
    finally:
        await newer.close()


async def test_coordinators_migrating_together_apply_each_version_once(
    store_location: str,
) -> None:
    coordinators = [open_store(store_location) for _ in range(3)]
    try:
        await asyncio.gather(*(c.migrate() for c in coordinators))
        applied = await coordinators[0].applied_migrations()
    finally:
        for coordinator in coordinators:
            await coordinator.close()
    assert [m.version for m in applied] == [m.version for m in MIGRATIONS]


async def test_everything_survives_a_coordinator_restart(store_location: str) -> None:
    before = open_store(store_location)
    await before.migrate()
    await before.save_operation(make_operation(1))
    stored = await before.append_events([make_event("istio/a1", n) for n in (1, 2, 3)])
    result = make_perf_result("r1", mesh="istio", minutes=0)
    await before.save_perf_result(result)
    await before.close()

    after = open_store(store_location)
    try:
        await after.migrate()
        assert await after.get_operation("op-00001") == make_operation(1)
        assert await after.events_after(0) == stored
        assert await after.last_sequence("istio/a1") == 3
        assert await after.get_perf_result("r1") == result
        assert await after.append_events([make_event("istio/a1", 3)]) == []
        more = await after.append_events([make_event("istio/a1", 4)])
        assert more[0].cursor > stored[-1].cursor
    finally:
        await after.close()


async def test_a_closed_store_refuses_work(store_location: str) -> None:
    opened = open_store(store_location)
    await opened.migrate()
    await opened.close()
    await opened.close()  # closing twice is harmless
    with pytest.raises(StoreClosedError):
        await opened.get_operation("op-1")


@pytest.mark.postgres
async def test_a_connection_cancelled_while_being_set_up_is_closed(
    fresh_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A coordinator shutting down cancels background work that may be opening a connection;
    the new connection is closed then, not left open for the garbage collector (which warned,
    and failed a test, as `ResourceWarning: ... was deleted while still open`)."""
    opened: list[psycopg.AsyncConnection[Any]] = []
    connect = psycopg.AsyncConnection.connect

    async def cancelled(*args: object, **kwargs: object) -> None:
        raise asyncio.CancelledError

    async def connect_then_cancel_setup(*args: Any, **kwargs: Any) -> Any:
        connection = await connect(*args, **kwargs)
        opened.append(connection)
        monkeypatch.setattr(connection, "execute", cancelled)  # cancelled in SET TIME ZONE
        return connection

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", connect_then_cancel_setup)
    store = PostgresStore(fresh_postgres_url)
    try:
        with pytest.raises(asyncio.CancelledError):
            await store.get_operation("op-1")
        assert len(opened) == 1
        assert opened[0].closed
    finally:
        await store.close()


# -- perf results -------------------------------------------------------------------------


def make_perf_result(
    result_id: str, *, mesh: str, minutes: int, test_id: str = "t1"
) -> PerfResultRecord:
    return PerfResultRecord(
        result_id=result_id,
        test_id=test_id,
        name=f"load {result_id}",
        mesh=mesh,
        created_at=T0 + timedelta(minutes=minutes),
        labels={"env": "ci", "run": result_id},
        document={
            "start_time": "2026-03-01T12:00:00Z",
            "latencies_ms": {"p50": 1.5, "p99": 12.25},
            "actual_qps": 498.7,
            "mesh_config": {"mesh": mesh, "mtls": True},
        },
    )


async def test_perf_results_round_trip_and_list_newest_first(store: Store) -> None:
    results = [
        make_perf_result("r1", mesh="istio", minutes=1),
        make_perf_result("r2", mesh="linkerd", minutes=2),
        make_perf_result("r3", mesh="istio", minutes=3, test_id="t2"),
        make_perf_result("r4", mesh="istio", minutes=4),
    ]
    for result in results:
        await store.save_perf_result(result)

    assert await store.get_perf_result("r2") == results[1]
    assert await store.get_perf_result("r9") is None
    assert [r.result_id for r in await store.list_perf_results()] == ["r4", "r3", "r2", "r1"]
    assert [r.result_id for r in await store.list_perf_results("istio")] == ["r4", "r3", "r1"]
    assert [r.result_id for r in await store.list_perf_results("istio", limit=2)] == ["r4", "r3"]
    assert [r.result_id for r in await store.list_perf_results(test_id="t2")] == ["r3"]

    replaced = PerfResultRecord(**{**results[0].__dict__, "document": {"actual_qps": 1.0}})
    await store.save_perf_result(replaced)
    assert await store.get_perf_result("r1") == replaced


# -- records and locations (no database) --------------------------------------------------


def test_records_refuse_what_the_store_cannot_keep_faithfully() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_operation(1, created_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="severity"):
        make_event("s", 1, severity="loud")
    with pytest.raises(ValueError, match="sequence"):
        make_event("s", 0)
    with pytest.raises(ValueError, match="severity"):
        EventFilter(severity_at_least="loud")
    assert make_event("s", 1, severity="ERROR").severity == "error"


async def test_open_store_picks_the_backend_from_the_location(tmp_path: Path) -> None:
    for url in ("postgresql://u@127.0.0.1:1/db", "postgres://u@127.0.0.1:1/db"):
        assert isinstance(open_store(url), PostgresStore)
    plain = open_store(str(tmp_path / "a.db"))
    from_url = open_store(f"sqlite://{tmp_path}/b.db")
    try:
        assert isinstance(plain, SQLiteStore)
        assert isinstance(from_url, SQLiteStore)
        assert from_url.path == f"{tmp_path}/b.db"
        await from_url.migrate()
        assert (tmp_path / "b.db").is_file()
    finally:
        await plain.close()
        await from_url.close()
    for bad in ("sqlite://relative.db", "mysql://h/db", ""):
        with pytest.raises(ValueError):
            open_store(bad)
