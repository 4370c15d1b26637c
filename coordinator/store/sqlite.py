"""SQLite backend: the default store, one file under the coordinator's data dir.

sqlite3 blocks, so every call runs on one dedicated thread that owns the connection; that thread
also serialises this process's use of it. Writes take the database write lock up front
(BEGIN IMMEDIATE), so several processes on one file queue on busy_timeout instead of failing,
and AUTOINCREMENT cursors are handed out in commit order.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import structlog

from coordinator.store import statements
from coordinator.store.base import DEFAULT_EVENT_BATCH, DEFAULT_PAGE_SIZE, Store
from coordinator.store.errors import StoreClosedError
from coordinator.store.json_values import dump_json
from coordinator.store.migrations import (
    MIGRATIONS,
    SQLITE_MIGRATIONS_TABLE,
    Migration,
    pending_migrations,
)
from coordinator.store.paging import (
    PageKey,
    check_page_size,
    decode_page_token,
    encode_page_token,
)
from coordinator.store.records import (
    AppliedMigration,
    EventFilter,
    EventRecord,
    OperationFilter,
    OperationRecord,
    PerfResultRecord,
    StoredEvent,
    severity_rank,
    utc,
)

_log = structlog.get_logger(__name__)
_T = TypeVar("_T")


def encode_time(value: datetime) -> str:
    """Fixed-width UTC text, so string order is time order (keyset paging relies on it)."""
    return utc(value).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def decode_time(value: str) -> datetime:
    """Inverse of encode_time: an aware UTC datetime."""
    return datetime.fromisoformat(value).astimezone(UTC)


def _decode_optional_time(value: str | None) -> datetime | None:
    return None if value is None else decode_time(value)


DIALECT = statements.Dialect(placeholder="?", json_placeholder="?", encode_time=encode_time)


class SQLiteStore(Store):
    """A Store over one SQLite file (WAL mode)."""

    def __init__(
        self,
        path: str | Path,
        *,
        migrations: Sequence[Migration] = MIGRATIONS,
        busy_timeout_ms: int = 30_000,
    ) -> None:
        self._path = str(path)
        self._migrations = tuple(migrations)
        self._busy_timeout_ms = busy_timeout_ms
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._connection: sqlite3.Connection | None = None
        self._closed = False

    @property
    def path(self) -> str:
        """The database file this store uses."""
        return self._path

    # -- thread plumbing -------------------------------------------------------------------

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._closed:
            raise StoreClosedError(f"SQLite store {self._path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._on_thread, work)

    def _on_thread(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._connection is None:
            self._connection = self._connect()
        return work(self._connection)

    def _connect(self) -> sqlite3.Connection:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so write locks are explicit.
        connection = sqlite3.connect(
            self._path, timeout=self._busy_timeout_ms / 1000, isolation_level=None
        )
        connection.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        _log.debug("sqlite store opened", path=self._path)
        return connection

    @staticmethod
    @contextmanager
    def _write(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    # -- schema ----------------------------------------------------------------------------

    async def migrate(self) -> None:
        applied = await self._run(self._migrate)
        if applied:
            _log.info("store migrated", backend="sqlite", path=self._path, versions=applied)

    def _migrate(self, connection: sqlite3.Connection) -> list[int]:
        with self._write(connection):
            connection.execute(SQLITE_MIGRATIONS_TABLE)
            present = {
                row[0] for row in connection.execute("SELECT version FROM schema_migrations")
            }
            _warn_if_newer(present, self._migrations)
            applied: list[int] = []
            for migration in pending_migrations(self._migrations, present):
                for statement in migration.sqlite:
                    connection.execute(statement)
                connection.execute(
                    "INSERT INTO schema_migrations (version, description, applied_at) "
                    "VALUES (?, ?, ?)",
                    (migration.version, migration.description, encode_time(datetime.now(UTC))),
                )
                applied.append(migration.version)
            return applied

    async def applied_migrations(self) -> list[AppliedMigration]:
        def read(connection: sqlite3.Connection) -> list[AppliedMigration]:
            rows = connection.execute(
                "SELECT version, description, applied_at FROM schema_migrations ORDER BY version"
            ).fetchall()
            return [
                AppliedMigration(version=v, description=d, applied_at=decode_time(a))
                for v, d, a in rows
            ]

        return await self._run(read)

    async def close(self) -> None:
        if self._closed:
            return

        def shut() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        # Refuse new work first; work already queued on the thread still runs before shut().
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)

    # -- operations ------------------------------------------------------------------------

    async def save_operation(self, record: OperationRecord) -> OperationRecord:
        params = (
            record.operation_id,
            record.mesh,
            record.operation,
            record.state,
            record.username,
            record.adapter,
            dump_json(record.request),
            dump_json(record.cluster_results),
            None if record.error is None else dump_json(record.error),
            encode_time(record.created_at),
            encode_time(record.updated_at),
            None if record.started_at is None else encode_time(record.started_at),
            None if record.finished_at is None else encode_time(record.finished_at),
        )
        sql = statements.upsert_operation_sql(DIALECT)

        def write(connection: sqlite3.Connection) -> str:
            with self._write(connection):
                row = connection.execute(sql, params).fetchone()
            return str(row[0])

        created_at = await self._run(write)
        return replace(record, created_at=decode_time(created_at))

    async def get_operation(self, operation_id: str) -> OperationRecord | None:
        sql = statements.select_operation_sql(DIALECT)

        def read(connection: sqlite3.Connection) -> tuple[Any, ...] | None:
            row: tuple[Any, ...] | None = connection.execute(sql, (operation_id,)).fetchone()
            return row

        row = await self._run(read)
        return None if row is None else _operation_from_row(row)

    async def list_operations(
        self,
        filter: OperationFilter | None = None,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str = "",
    ) -> tuple[list[OperationRecord], str]:
        check_page_size(page_size)
        query = statements.list_operations_query(
            DIALECT, filter or OperationFilter(), decode_page_token(page_token), page_size + 1
        )
        rows = await self._run(lambda c: c.execute(query.sql, query.params).fetchall())
        records = [_operation_from_row(row) for row in rows[:page_size]]
        if len(rows) <= page_size:
            return records, ""
        last = records[-1]
        return records, encode_page_token(
            PageKey(created_at=last.created_at, row_id=last.operation_id)
        )

    # -- events ----------------------------------------------------------------------------

    async def append_events(self, events: Sequence[EventRecord]) -> list[StoredEvent]:
        if not events:
            return []
        batch = list(events)
        insert = statements.insert_event_sql(DIALECT)
        record_source = statements.record_sources_sql(DIALECT, "MAX")

        def write(connection: sqlite3.Connection) -> list[StoredEvent]:
            stored: list[StoredEvent] = []
            highest: dict[str, int] = {}
            with self._write(connection):
                for event in batch:
                    row = connection.execute(insert, _event_params(event)).fetchone()
                    if row is None:
                        continue
                    stored.append(StoredEvent(cursor=int(row[0]), event=event))
                    highest[event.source] = max(highest.get(event.source, 0), event.sequence)
                for source, sequence in highest.items():
                    connection.execute(record_source, (source, sequence))
            return stored

        return await self._run(write)

    async def events_after(
        self,
        cursor: int,
        filter: EventFilter | None = None,
        limit: int = DEFAULT_EVENT_BATCH,
    ) -> list[StoredEvent]:
        check_page_size(limit, "limit")
        query = statements.events_after_query(DIALECT, cursor, filter or EventFilter(), limit)
        rows = await self._run(lambda c: c.execute(query.sql, query.params).fetchall())
        return [_event_from_row(row) for row in rows]

    async def last_sequence(self, source: str) -> int:
        def read(connection: sqlite3.Connection) -> int:
            row = connection.execute(
                "SELECT last_sequence FROM event_sources WHERE source = ?", (source,)
            ).fetchone()
            return 0 if row is None else int(row[0])

        return await self._run(read)

    async def latest_cursor(self) -> int:
        def read(connection: sqlite3.Connection) -> int:
            row = connection.execute("SELECT COALESCE(MAX(cursor), 0) FROM events").fetchone()
            return int(row[0])

        return await self._run(read)

    async def prune_events(self, older_than: datetime) -> int:
        cutoff = encode_time(older_than)
        summary = statements.prune_summary_sql(DIALECT)
        delete = statements.prune_events_sql(DIALECT)
        record_pruned = statements.record_pruned_sql(DIALECT, "MAX")

        def write(connection: sqlite3.Connection) -> int:
            with self._write(connection):
                groups = connection.execute(summary, (cutoff,)).fetchall()
                connection.execute(delete, (cutoff,))
                for source, sequence, _count in groups:
                    connection.execute(record_pruned, (source, sequence, sequence))
            return sum(int(count) for _source, _sequence, count in groups)

        deleted = await self._run(write)
        _log.info("events pruned", backend="sqlite", older_than=cutoff, deleted=deleted)
        return deleted

    # -- perf results ----------------------------------------------------------------------

    async def save_perf_result(self, record: PerfResultRecord) -> None:
        params = (
            record.result_id,
            record.test_id,
            record.name,
            record.mesh,
            encode_time(record.created_at),
            dump_json(record.labels),
            dump_json(record.document),
        )
        sql = statements.upsert_perf_result_sql(DIALECT)

        def write(connection: sqlite3.Connection) -> None:
            with self._write(connection):
                connection.execute(sql, params)

        await self._run(write)

    async def get_perf_result(self, result_id: str) -> PerfResultRecord | None:
        sql = statements.select_perf_result_sql(DIALECT)

        def read(connection: sqlite3.Connection) -> tuple[Any, ...] | None:
            row: tuple[Any, ...] | None = connection.execute(sql, (result_id,)).fetchone()
            return row

        row = await self._run(read)
        return None if row is None else _perf_from_row(row)

    async def list_perf_results(
        self,
        mesh: str | None = None,
        *,
        test_id: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> list[PerfResultRecord]:
        check_page_size(limit, "limit")
        query = statements.list_perf_results_query(DIALECT, mesh, test_id, limit)
        rows = await self._run(lambda c: c.execute(query.sql, query.params).fetchall())
        return [_perf_from_row(row) for row in rows]


def _warn_if_newer(present: set[int], known: Sequence[Migration]) -> None:
    """A newer coordinator migrated this database: keep going (migrations are additive)."""
    unknown = sorted(v for v in present if v > len(known))
    if unknown:
        _log.warning("database schema is newer than this coordinator", unknown_versions=unknown)


def _event_params(event: EventRecord) -> tuple[object, ...]:
    return (
        event.source,
        event.sequence,
        event.mesh,
        event.operation_id,
        event.severity,
        severity_rank(event.severity),
        encode_time(event.timestamp),
        dump_json(event.payload),
        event.source,
        event.sequence,
    )


def _operation_from_row(row: Sequence[Any]) -> OperationRecord:
    (
        operation_id,
        mesh,
        operation,
        state,
        username,
        adapter,
        request,
        cluster_results,
        error,
        created_at,
        updated_at,
        started_at,
        finished_at,
    ) = row
    return OperationRecord(
        operation_id=operation_id,
        mesh=mesh,
        operation=operation,
        state=state,
        username=username,
        adapter=adapter,
        request=json.loads(request),
        cluster_results=json.loads(cluster_results),
        error=None if error is None else json.loads(error),
        created_at=decode_time(created_at),
        updated_at=decode_time(updated_at),
        started_at=_decode_optional_time(started_at),
        finished_at=_decode_optional_time(finished_at),
    )


def _event_from_row(row: Sequence[Any]) -> StoredEvent:
    cursor, source, sequence, mesh, operation_id, severity, occurred_at, payload = row
    return StoredEvent(
        cursor=int(cursor),
        event=EventRecord(
            source=source,
            sequence=int(sequence),
            mesh=mesh,
            operation_id=operation_id,
            severity=severity,
            timestamp=decode_time(occurred_at),
            payload=json.loads(payload),
        ),
    )


def _perf_from_row(row: Sequence[Any]) -> PerfResultRecord:
    result_id, test_id, name, mesh, created_at, labels, document = row
    return PerfResultRecord(
        result_id=result_id,
        test_id=test_id,
        name=name,
        mesh=mesh,
        created_at=decode_time(created_at),
        labels=json.loads(labels),
        document=json.loads(document),
    )
