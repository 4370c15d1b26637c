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
from typing import TypeVar

import structlog

from coordinator.store import statements
from coordinator.store.errors import StoreClosedError
from coordinator.store.migrations import (
    MIGRATIONS,
    SQLITE_MIGRATIONS_TABLE,
    Migration,
    pending_migrations,
)
from coordinator.store.records import (
    EventRecord,
    OperationRecord,
    PerfResultRecord,
    StoredEvent,
    utc,
)
from coordinator.store.rows import RowCodec, event_params, operation_params, perf_params
from coordinator.store.sql_store import Row, SQLStore, highest_sequences, warn_if_newer

_log = structlog.get_logger(__name__)
_T = TypeVar("_T")


def encode_time(value: datetime) -> str:
    """Fixed-width UTC text, so string order is time order (keyset paging relies on it)."""
    return utc(value).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def decode_time(value: str) -> datetime:
    """Inverse of encode_time: an aware UTC datetime."""
    return datetime.fromisoformat(value).astimezone(UTC)


DIALECT = statements.Dialect(placeholder="?", json_placeholder="?", encode_time=encode_time)
CODEC = RowCodec(encode_time=encode_time, decode_time=decode_time, decode_json=json.loads)


class SQLiteStore(SQLStore):
    """A Store over one SQLite file (WAL mode)."""

    _dialect = DIALECT
    _codec = CODEC

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
            present = {row[0] for row in connection.execute(statements.PRESENT_MIGRATIONS_SQL)}
            warn_if_newer(present, self._migrations)
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

    # -- reads (SQLStore runs the shared queries through these) ----------------------------

    async def _fetch_one(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        def read(connection: sqlite3.Connection) -> Row | None:
            row: Row | None = connection.execute(sql, tuple(params)).fetchone()
            return row

        return await self._run(read)

    async def _fetch_all(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        def read(connection: sqlite3.Connection) -> list[Row]:
            rows: list[Row] = connection.execute(sql, tuple(params)).fetchall()
            return rows

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
        params = operation_params(record, CODEC)
        sql = statements.upsert_operation_sql(DIALECT)

        def write(connection: sqlite3.Connection) -> str:
            with self._write(connection):
                row = connection.execute(sql, params).fetchone()
            return str(row[0])

        created_at = await self._run(write)
        return replace(record, created_at=decode_time(created_at))

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
                    row = connection.execute(insert, event_params(event, CODEC)).fetchone()
                    if row is None:
                        continue
                    stored.append(StoredEvent(cursor=int(row[0]), event=event))
                    highest[event.source] = max(highest.get(event.source, 0), event.sequence)
                for source, sequence in highest.items():
                    connection.execute(record_source, (source, sequence))
            return stored

        return await self._run(write)

    async def _prune_event_batch(
        self, through_cursor: int | None, older_than: datetime | None, limit: int
    ) -> int:
        candidates = statements.prune_candidates_query(DIALECT, through_cursor, older_than, limit)
        record_pruned = statements.record_pruned_sql(DIALECT, "MAX")
        record_cursor = statements.record_pruned_cursor_sql(DIALECT, "MAX")

        def write(connection: sqlite3.Connection) -> int:
            with self._write(connection):
                rows = connection.execute(candidates.sql, candidates.params).fetchall()
                if not rows:
                    return 0
                top = int(rows[-1][0])
                delete = statements.prune_events_query(DIALECT, top, through_cursor, older_than)
                connection.execute(delete.sql, delete.params)
                for source, sequence in highest_sequences(rows).items():
                    connection.execute(record_pruned, (source, sequence, sequence))
                connection.execute(record_cursor, (top,))
            return len(rows)

        return await self._run(write)

    async def _write_statement(self, sql: str, params: Sequence[object] = ()) -> int:
        def write(connection: sqlite3.Connection) -> int:
            with self._write(connection):
                changed = connection.execute(sql, tuple(params)).rowcount
            return int(changed)

        return await self._run(write)

    # -- perf results ----------------------------------------------------------------------

    async def save_perf_result(self, record: PerfResultRecord) -> None:
        params = perf_params(record, CODEC)
        sql = statements.upsert_perf_result_sql(DIALECT)

        def write(connection: sqlite3.Connection) -> None:
            with self._write(connection):
                connection.execute(sql, params)

        await self._run(write)
