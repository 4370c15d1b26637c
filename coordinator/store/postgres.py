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
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog
from psycopg import pq

from coordinator.store import statements
from coordinator.store.base import DEFAULT_EVENT_BATCH, DEFAULT_PAGE_SIZE, Store
from coordinator.store.errors import StoreClosedError
from coordinator.store.json_values import dump_json
from coordinator.store.migrations import (
    MIGRATIONS,
    POSTGRES_MIGRATIONS_TABLE,
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

# Advisory lock keys (per database): "mesh" in ASCII, then which critical section.
EVENTS_LOCK_KEY = 0x6D657368_0001
MIGRATIONS_LOCK_KEY = 0x6D657368_0002

Connection = psycopg.AsyncConnection[tuple[Any, ...]]


DIALECT = statements.Dialect(placeholder="%s", json_placeholder="%s::jsonb", encode_time=utc)


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
        await connection.execute("SET TIME ZONE 'UTC'")
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


class PostgresStore(Store):
    """A Store over a PostgreSQL database given by a libpq URL."""

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
            cursor = await connection.execute("SELECT version FROM schema_migrations")
            present = {int(row[0]) for row in await cursor.fetchall()}
            unknown = sorted(v for v in present if v > len(self._migrations))
            if unknown:
                _log.warning(
                    "database schema is newer than this coordinator", unknown_versions=unknown
                )
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

    async def applied_migrations(self) -> list[AppliedMigration]:
        async with self._pool.connection() as connection:
            cursor = await connection.execute(
                "SELECT version, description, applied_at FROM schema_migrations ORDER BY version"
            )
            rows = await cursor.fetchall()
        return [
            AppliedMigration(version=int(v), description=d, applied_at=utc(a)) for v, d, a in rows
        ]

    async def close(self) -> None:
        await self._pool.close()

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
            utc(record.created_at),
            utc(record.updated_at),
            None if record.started_at is None else utc(record.started_at),
            None if record.finished_at is None else utc(record.finished_at),
        )
        async with self._pool.connection() as connection:
            cursor = await connection.execute(statements.upsert_operation_sql(DIALECT), params)
            row = await cursor.fetchone()
        assert row is not None  # RETURNING always yields the upserted row
        return replace(record, created_at=utc(row[0]))

    async def get_operation(self, operation_id: str) -> OperationRecord | None:
        async with self._pool.connection() as connection:
            cursor = await connection.execute(
                statements.select_operation_sql(DIALECT), (operation_id,)
            )
            row = await cursor.fetchone()
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
        async with self._pool.connection() as connection:
            cursor = await connection.execute(query.sql, query.params)
            rows = await cursor.fetchall()
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
        stored: list[StoredEvent] = []
        highest: dict[str, int] = {}
        async with self._pool.connection() as connection, connection.transaction():
            # Held until commit: the next writer allocates cursors only after ours are visible.
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (EVENTS_LOCK_KEY,))
            cursor = connection.cursor()
            await cursor.executemany(
                statements.insert_event_sql(DIALECT),
                [_event_params(event) for event in batch],
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

    async def events_after(
        self,
        cursor: int,
        filter: EventFilter | None = None,
        limit: int = DEFAULT_EVENT_BATCH,
    ) -> list[StoredEvent]:
        check_page_size(limit, "limit")
        query = statements.events_after_query(DIALECT, cursor, filter or EventFilter(), limit)
        async with self._pool.connection() as connection:
            result = await connection.execute(query.sql, query.params)
            rows = await result.fetchall()
        return [_event_from_row(row) for row in rows]

    async def last_sequence(self, source: str) -> int:
        async with self._pool.connection() as connection:
            cursor = await connection.execute(
                "SELECT last_sequence FROM event_sources WHERE source = %s", (source,)
            )
            row = await cursor.fetchone()
        return 0 if row is None else int(row[0])

    async def latest_cursor(self) -> int:
        async with self._pool.connection() as connection:
            cursor = await connection.execute("SELECT COALESCE(MAX(cursor), 0) FROM events")
            row = await cursor.fetchone()
        assert row is not None  # an aggregate always yields one row
        return int(row[0])

    async def prune_events(self, older_than: datetime) -> int:
        cutoff = utc(older_than)
        async with self._pool.connection() as connection, connection.transaction():
            # Same lock as appends: a concurrent re-append of an event being pruned must see
            # either the row or the raised pruned_through mark, never neither.
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (EVENTS_LOCK_KEY,))
            cursor = await connection.execute(statements.prune_summary_sql(DIALECT), (cutoff,))
            groups = await cursor.fetchall()
            await connection.execute(statements.prune_events_sql(DIALECT), (cutoff,))
            if groups:
                await connection.cursor().executemany(
                    statements.record_pruned_sql(DIALECT, "GREATEST"),
                    [(source, sequence, sequence) for source, sequence, _count in groups],
                )
        deleted = sum(int(count) for _source, _sequence, count in groups)
        _log.info("events pruned", backend="postgres", older_than=cutoff, deleted=deleted)
        return deleted

    # -- perf results ----------------------------------------------------------------------

    async def save_perf_result(self, record: PerfResultRecord) -> None:
        params = (
            record.result_id,
            record.test_id,
            record.name,
            record.mesh,
            utc(record.created_at),
            dump_json(record.labels),
            dump_json(record.document),
        )
        async with self._pool.connection() as connection:
            await connection.execute(statements.upsert_perf_result_sql(DIALECT), params)

    async def get_perf_result(self, result_id: str) -> PerfResultRecord | None:
        async with self._pool.connection() as connection:
            cursor = await connection.execute(
                statements.select_perf_result_sql(DIALECT), (result_id,)
            )
            row = await cursor.fetchone()
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
        async with self._pool.connection() as connection:
            cursor = await connection.execute(query.sql, query.params)
            rows = await cursor.fetchall()
        return [_perf_from_row(row) for row in rows]


def _event_params(event: EventRecord) -> tuple[object, ...]:
    return (
        event.source,
        event.sequence,
        event.mesh,
        event.operation_id,
        event.severity,
        severity_rank(event.severity),
        utc(event.timestamp),
        dump_json(event.payload),
        event.source,
        event.sequence,
    )


def _optional_utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


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
        request=request,
        cluster_results=cluster_results,
        error=error,
        created_at=utc(created_at),
        updated_at=utc(updated_at),
        started_at=_optional_utc(started_at),
        finished_at=_optional_utc(finished_at),
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
            timestamp=utc(occurred_at),
            payload=payload,
        ),
    )


def _perf_from_row(row: Sequence[Any]) -> PerfResultRecord:
    result_id, test_id, name, mesh, created_at, labels, document = row
    return PerfResultRecord(
        result_id=result_id,
        test_id=test_id,
        name=name,
        mesh=mesh,
        created_at=utc(created_at),
        labels=labels,
        document=document,
    )
