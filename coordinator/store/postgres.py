"""PostgreSQL backend: several coordinators may share one database.

Two rules make sharing safe. Event inserts hold one transaction-scoped advisory lock, so
cursors (a BIGSERIAL) are allocated in commit order and a reader polling "after N" never misses
an event that commits later with a smaller cursor. Migrations hold another, so two coordinators
starting together apply each version once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

import psycopg
import structlog
from psycopg import pq

from coordinator.store import statements
from coordinator.store.errors import StoreClosedError
from coordinator.store.migrations import (
    MIGRATIONS,
    POSTGRES_MIGRATIONS_TABLE,
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

# Advisory lock keys (per database): "mesh" in ASCII, then which critical section.
EVENTS_LOCK_KEY = 0x6D657368_0001
MIGRATIONS_LOCK_KEY = 0x6D657368_0002

Connection = psycopg.AsyncConnection[tuple[Any, ...]]


DIALECT = statements.Dialect(placeholder="%s", json_placeholder="%s::jsonb", encode_time=utc)
# TIMESTAMPTZ and JSONB come back as aware datetimes and decoded JSON already.
CODEC = RowCodec(encode_time=utc, decode_time=utc, decode_json=lambda value: value)


class ConnectionPool:
    """At most ``max_size`` connections, reused while healthy and idle.

    psycopg_pool is not a dependency; this is the little of it the store needs.
    """

    def __init__(self, url: str, max_size: int) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        self._url = url
        self._slots = asyncio.Semaphore(max_size)
        self._idle: list[Connection] = []
        self._closed = False

    async def _connect(self) -> Connection:
        connection: Connection = await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, connect_timeout=10
        )
        try:
            await connection.execute("SET TIME ZONE 'UTC'")
        except BaseException:
            # Failed or cancelled (a coordinator shutting down cancels its background work):
            # nobody else holds this connection, so close it here rather than leave it to the
            # garbage collector. psycopg's close does not wait, so a cancellation cannot stop it.
            await connection.close()
            raise
        return connection

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """Borrow a connection; it goes back only if the borrower left it idle and open."""
        async with self._slots:
            if self._closed:
                raise StoreClosedError("PostgreSQL store is closed")
            connection = self._idle.pop() if self._idle else await self._connect()
            try:
                yield connection
            finally:
                reusable = (
                    not self._closed
                    and not connection.closed
                    and connection.info.transaction_status == pq.TransactionStatus.IDLE
                )
                if reusable:
                    self._idle.append(connection)
                else:
                    await connection.close()

    async def close(self) -> None:
        """Close idle connections now; borrowed ones close when returned."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()


class PostgresStore(SQLStore):
    """A Store over a PostgreSQL database given by a libpq URL."""

    _dialect = DIALECT
    _codec = CODEC

    def __init__(
        self,
        url: str,
        *,
        migrations: Sequence[Migration] = MIGRATIONS,
        max_connections: int = 4,
    ) -> None:
        self._url = url
        self._migrations = tuple(migrations)
        self._pool = ConnectionPool(url, max_connections)

    # -- schema ----------------------------------------------------------------------------

    async def migrate(self) -> None:
        async with self._pool.connection() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATIONS_LOCK_KEY,))
            await connection.execute(POSTGRES_MIGRATIONS_TABLE)
            cursor = await connection.execute(statements.PRESENT_MIGRATIONS_SQL)
            present = {int(row[0]) for row in await cursor.fetchall()}
            warn_if_newer(present, self._migrations)
            applied: list[int] = []
            for migration in pending_migrations(self._migrations, present):
                for statement in migration.postgres:
                    await connection.execute(statement)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, description, applied_at) "
                    "VALUES (%s, %s, now())",
                    (migration.version, migration.description),
                )
                applied.append(migration.version)
        if applied:
            _log.info("store migrated", backend="postgres", versions=applied)

    # -- reads (SQLStore runs the shared queries through these) ----------------------------

    async def _fetch_one(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        async with self._pool.connection() as connection:
            cursor = await connection.execute(sql, tuple(params))
            return await cursor.fetchone()

    async def _fetch_all(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        async with self._pool.connection() as connection:
            cursor = await connection.execute(sql, tuple(params))
            return await cursor.fetchall()

    async def close(self) -> None:
        await self._pool.close()

    # -- operations ------------------------------------------------------------------------

    async def save_operation(self, record: OperationRecord) -> OperationRecord:
        params = operation_params(record, CODEC)
        async with self._pool.connection() as connection:
            cursor = await connection.execute(statements.upsert_operation_sql(DIALECT), params)
            row = await cursor.fetchone()
        assert row is not None  # RETURNING always yields the upserted row
        return replace(record, created_at=utc(row[0]))

    # -- events ----------------------------------------------------------------------------

    async def append_events(self, events: Sequence[EventRecord]) -> list[StoredEvent]:
        if not events:
            return []
        batch = list(events)
        stored: list[StoredEvent] = []
        highest: dict[str, int] = {}
        async with self._pool.connection() as connection, connection.transaction():
            # Held until commit: the next writer allocates cursors only after ours are visible.
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (EVENTS_LOCK_KEY,))
            cursor = connection.cursor()
            await cursor.executemany(
                statements.insert_event_sql(DIALECT),
                [event_params(event, CODEC) for event in batch],
                returning=True,
            )
            # One result set per event, in order; an empty one means it was skipped.
            for event in batch:
                row = await cursor.fetchone()
                if row is not None:
                    stored.append(StoredEvent(cursor=int(row[0]), event=event))
                    highest[event.source] = max(highest.get(event.source, 0), event.sequence)
                cursor.nextset()
            if highest:
                await cursor.executemany(
                    statements.record_sources_sql(DIALECT, "GREATEST"), list(highest.items())
                )
        return stored

    async def _prune_event_batch(
        self, through_cursor: int | None, older_than: datetime | None, limit: int
    ) -> int:
        candidates = statements.prune_candidates_query(DIALECT, through_cursor, older_than, limit)
        async with self._pool.connection() as connection, connection.transaction():
            # Same lock as appends: a concurrent re-append of an event being pruned must see
            # either the row or the raised pruned_through mark, never neither.
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (EVENTS_LOCK_KEY,))
            cursor = await connection.execute(candidates.sql, candidates.params)
            rows = await cursor.fetchall()
            if not rows:
                return 0
            top = int(rows[-1][0])
            delete = statements.prune_events_query(DIALECT, top, through_cursor, older_than)
            await connection.execute(delete.sql, delete.params)
            await connection.cursor().executemany(
                statements.record_pruned_sql(DIALECT, "GREATEST"),
                [
                    (source, sequence, sequence)
                    for source, sequence in highest_sequences(rows).items()
                ],
            )
            await connection.execute(
                statements.record_pruned_cursor_sql(DIALECT, "GREATEST"), (top,)
            )
        return len(rows)

    async def _write_statement(self, sql: str, params: Sequence[object] = ()) -> int:
        async with self._pool.connection() as connection:
            cursor = await connection.execute(sql, tuple(params))
            return int(cursor.rowcount)

    # -- perf results ----------------------------------------------------------------------

    async def save_perf_result(self, record: PerfResultRecord) -> None:
        params = perf_params(record, CODEC)
        async with self._pool.connection() as connection:
            await connection.execute(statements.upsert_perf_result_sql(DIALECT), params)
