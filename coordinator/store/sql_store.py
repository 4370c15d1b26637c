"""The reads both SQL backends answer alike, written once over two fetch primitives.

A backend supplies its ``Dialect`` and ``RowCodec`` and how it runs one query (a thread for
SQLite, a pooled connection for PostgreSQL); writes stay in each backend because their locking
and transactions differ.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Sequence
from typing import Any

import structlog

from coordinator.store import statements
from coordinator.store.base import DEFAULT_EVENT_BATCH, DEFAULT_PAGE_SIZE, Store
from coordinator.store.migrations import Migration
from coordinator.store.paging import check_page_size, decode_page_token
from coordinator.store.records import (
    AppliedMigration,
    EventFilter,
    OperationFilter,
    OperationRecord,
    PerfResultRecord,
    StoredEvent,
)
from coordinator.store.rows import (
    RowCodec,
    event_from_row,
    operation_from_row,
    operations_page,
    perf_from_row,
)

_log = structlog.get_logger(__name__)

Row = tuple[Any, ...]


def warn_if_newer(present: Collection[int], known: Sequence[Migration]) -> None:
    """A newer coordinator migrated this database: keep going (migrations are additive)."""
    unknown = sorted(v for v in present if v > len(known))
    if unknown:
        _log.warning("database schema is newer than this coordinator", unknown_versions=unknown)


class SQLStore(Store):
    """A Store whose reads are the shared statements decoded by the backend's codec."""

    _dialect: statements.Dialect
    _codec: RowCodec

    @abc.abstractmethod
    async def _fetch_one(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        """The first row of one query run outside any write transaction."""

    @abc.abstractmethod
    async def _fetch_all(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Every row of one query run outside any write transaction."""

    async def applied_migrations(self) -> list[AppliedMigration]:
        rows = await self._fetch_all(statements.APPLIED_MIGRATIONS_SQL)
        return [
            AppliedMigration(version=int(v), description=d, applied_at=self._codec.decode_time(a))
            for v, d, a in rows
        ]

    async def get_operation(self, operation_id: str) -> OperationRecord | None:
        row = await self._fetch_one(statements.select_operation_sql(self._dialect), (operation_id,))
        return None if row is None else operation_from_row(row, self._codec)

    async def list_operations(
        self,
        filter: OperationFilter | None = None,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str = "",
    ) -> tuple[list[OperationRecord], str]:
        check_page_size(page_size)
        query = statements.list_operations_query(
            self._dialect,
            filter or OperationFilter(),
            decode_page_token(page_token),
            page_size + 1,
        )
        rows = await self._fetch_all(query.sql, query.params)
        return operations_page(rows, page_size, self._codec)

    async def events_after(
        self,
        cursor: int,
        filter: EventFilter | None = None,
        limit: int = DEFAULT_EVENT_BATCH,
    ) -> list[StoredEvent]:
        check_page_size(limit, "limit")
        query = statements.events_after_query(self._dialect, cursor, filter or EventFilter(), limit)
        rows = await self._fetch_all(query.sql, query.params)
        return [event_from_row(row, self._codec) for row in rows]

    async def last_sequence(self, source: str) -> int:
        row = await self._fetch_one(statements.last_sequence_sql(self._dialect), (source,))
        return 0 if row is None else int(row[0])

    async def latest_cursor(self) -> int:
        row = await self._fetch_one(statements.LATEST_CURSOR_SQL)
        assert row is not None  # an aggregate always yields one row
        return int(row[0])

    async def get_perf_result(self, result_id: str) -> PerfResultRecord | None:
        row = await self._fetch_one(statements.select_perf_result_sql(self._dialect), (result_id,))
        return None if row is None else perf_from_row(row, self._codec)

    async def list_perf_results(
        self,
        mesh: str | None = None,
        *,
        test_id: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> list[PerfResultRecord]:
        check_page_size(limit, "limit")
        query = statements.list_perf_results_query(self._dialect, mesh, test_id, limit)
        rows = await self._fetch_all(query.sql, query.params)
        return [perf_from_row(row, self._codec) for row in rows]
