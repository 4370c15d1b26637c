"""The reads both SQL backends answer alike, written once over two fetch primitives.

A backend supplies its ``Dialect`` and ``RowCodec`` and how it runs one query (a thread for
SQLite, a pooled connection for PostgreSQL); writes stay in each backend because their locking
and transactions differ.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import structlog

from coordinator.store import audit_trail, statements
from coordinator.store.audit_trail import AuditFilter, AuditRecord
from coordinator.store.base import DEFAULT_EVENT_BATCH, DEFAULT_PAGE_SIZE, Store
from coordinator.store.migrations import Migration
from coordinator.store.paging import check_page_size, decode_page_token
from coordinator.store.records import (
    AppliedMigration,
    EventFilter,
    OperationFilter,
    OperationRecord,
    PerfResultRecord,
    RowCounts,
    StoredEvent,
)
from coordinator.store.rows import (
    RowCodec,
    event_from_row,
    operation_from_row,
    operation_params,
    operations_page,
    perf_from_row,
)

_log = structlog.get_logger(__name__)

Row = tuple[Any, ...]

PRUNE_BATCH = 5000
"""Rows deleted per transaction, so pruning never holds the write lock for long."""


async def _in_batches(batch: Callable[[], Awaitable[int]]) -> int:
    """Run ``batch`` (deleting at most `PRUNE_BATCH` rows) until one deletes fewer; the total."""
    total = 0
    while True:
        deleted = await batch()
        total += deleted
        if deleted < PRUNE_BATCH:
            return total


def highest_sequences(candidates: Sequence[Row]) -> dict[str, int]:
    """Per source, the highest sequence among (cursor, source, sequence) prune candidates."""
    highest: dict[str, int] = {}
    for _cursor, source, sequence in candidates:
        highest[source] = max(highest.get(source, 0), int(sequence))
    return highest


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

    @abc.abstractmethod
    async def _prune_event_batch(
        self, through_cursor: int | None, older_than: datetime | None, limit: int
    ) -> int:
        """One transaction: delete the oldest ``limit`` events past retention, raise their
        sources' pruned_through and the pruned cursor mark; returns how many."""

    @abc.abstractmethod
    async def _write_statement(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run one write statement in its own transaction; returns the rows it changed."""

    async def prune_events(
        self, older_than: datetime | None = None, *, keep: int | None = None
    ) -> int:
        through: int | None = None
        if keep is not None:
            row = await self._fetch_one(statements.event_keep_cutoff_sql(self._dialect), (keep,))
            through = None if row is None else int(row[0])
        if through is None and older_than is None:
            return 0
        total = await _in_batches(lambda: self._prune_event_batch(through, older_than, PRUNE_BATCH))
        if total:
            _log.info("events pruned", older_than=older_than, keep=keep, deleted=total)
        return total

    async def pruned_through_cursor(self) -> int:
        row = await self._fetch_one(statements.PRUNED_THROUGH_CURSOR_SQL)
        return 0 if row is None else int(row[0])

    async def prune_operations(
        self, older_than: datetime | None = None, *, keep: int | None = None
    ) -> int:
        through: tuple[object, str] | None = None
        if keep is not None:
            row = await self._fetch_one(
                statements.operation_keep_cutoff_sql(self._dialect), (keep,)
            )
            through = None if row is None else (row[0], str(row[1]))
        if through is None and older_than is None:
            return 0
        query = statements.prune_operations_query(self._dialect, through, older_than, PRUNE_BATCH)
        total = await _in_batches(lambda: self._write_statement(query.sql, query.params))
        if total:
            _log.info("operations pruned", older_than=older_than, keep=keep, deleted=total)
        return total

    async def row_counts(self) -> RowCounts:
        row = await self._fetch_one(statements.ROW_COUNTS_SQL)
        assert row is not None  # scalar subqueries always yield one row
        return RowCounts(events=int(row[0]), operations=int(row[1]), perf_results=int(row[2]))

    async def applied_migrations(self) -> list[AppliedMigration]:
        rows = await self._fetch_all(statements.APPLIED_MIGRATIONS_SQL)
        return [
            AppliedMigration(version=int(v), description=d, applied_at=self._codec.decode_time(a))
            for v, d, a in rows
        ]

    async def claim_operation(self, record: OperationRecord) -> OperationRecord | None:
        params = operation_params(record, self._codec)
        if await self._write_statement(statements.claim_operation_sql(self._dialect), params):
            return None
        existing = await self.get_operation(record.operation_id)
        if existing is None:  # released between the insert and the read: try once more
            return await self.claim_operation(record)
        return existing

    async def release_operation(self, operation_id: str) -> bool:
        sql = statements.release_operation_sql(self._dialect)
        return bool(await self._write_statement(sql, (operation_id,)))

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

    # -- audit records (single statements, each its own transaction) -----------------------

    async def append_audit_record(self, record: AuditRecord) -> AuditRecord:
        # Every row fetched: the statement (and SQLite's implicit transaction) ends here.
        rows = await self._fetch_all(
            audit_trail.insert_sql(self._dialect), audit_trail.insert_params(record, self._codec)
        )
        return replace(record, record_id=int(rows[0][0]))

    async def list_audit_records(
        self,
        filter: AuditFilter | None = None,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str = "",
    ) -> tuple[list[AuditRecord], str]:
        check_page_size(page_size)
        query = audit_trail.list_query(
            self._dialect,
            filter or AuditFilter(),
            audit_trail.decode_page_token(page_token),
            page_size + 1,
        )
        rows = await self._fetch_all(query.sql, query.params)
        records = [audit_trail.record_from_row(row, self._codec) for row in rows[:page_size]]
        more = len(rows) > page_size
        return records, str(records[-1].record_id) if more and records else ""

    async def prune_audit_records(
        self, *, older_than: datetime | None = None, keep_newest: int | None = None
    ) -> int:
        deleted = 0
        if older_than is not None:
            rows = await self._fetch_all(
                audit_trail.prune_by_age_sql(self._dialect),
                (self._dialect.encode_time(older_than),),
            )
            deleted += len(rows)
        if keep_newest is not None:
            if keep_newest < 0:
                raise ValueError(f"keep_newest must not be negative, got {keep_newest}")
            rows = await self._fetch_all(
                audit_trail.prune_by_count_sql(self._dialect), (keep_newest,)
            )
            deleted += len(rows)
        if deleted:
            _log.info("audit records pruned", deleted=deleted)
        return deleted
