"""The store contract both backends implement, so the coordinator never knows which it has."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from datetime import datetime

from coordinator.store.audit_trail import AuditFilter, AuditRecord
from coordinator.store.records import (
    AppliedMigration,
    EventFilter,
    EventRecord,
    OperationFilter,
    OperationRecord,
    PerfResultRecord,
    RowCounts,
    StoredEvent,
)

DEFAULT_PAGE_SIZE = 100
DEFAULT_EVENT_BATCH = 1000


class Store(abc.ABC):
    """Operations, events and perf results; every method is safe to call concurrently."""

    @abc.abstractmethod
    async def migrate(self) -> None:
        """Apply missing schema migrations in order; idempotent and safe across coordinators."""

    @abc.abstractmethod
    async def applied_migrations(self) -> list[AppliedMigration]:
        """The schema_migrations rows, by version, so operators can see the schema in place."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and threads; the store is unusable afterwards."""

    @abc.abstractmethod
    async def save_operation(self, record: OperationRecord) -> OperationRecord:
        """Insert or update by operation_id, keeping the first save's created_at.

        Returns the record as stored (with that created_at).
        """

    @abc.abstractmethod
    async def claim_operation(self, record: OperationRecord) -> OperationRecord | None:
        """Insert ``record`` unless its operation_id is taken, atomically.

        Returns None when ``record`` now holds the id, else the record that already held it.
        """

    @abc.abstractmethod
    async def release_operation(self, operation_id: str) -> bool:
        """Delete a claim no adapter answered for (its ``adapter`` is empty); True if deleted."""

    @abc.abstractmethod
    async def get_operation(self, operation_id: str) -> OperationRecord | None:
        """The operation, or None when unknown."""

    @abc.abstractmethod
    async def list_operations(
        self,
        filter: OperationFilter | None = None,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str = "",
    ) -> tuple[list[OperationRecord], str]:
        """Newest first by (created_at, operation_id); returns the page and the next token.

        The next token is empty on the last page. Paging is keyset-based, so operations saved
        between pages do not repeat or hide rows of later pages.
        """

    @abc.abstractmethod
    async def append_events(self, events: Sequence[EventRecord]) -> list[StoredEvent]:
        """Store events in the given order; return only the newly stored ones, with cursors.

        An event whose (source, sequence) is already stored (or was stored and pruned) is
        skipped silently: that is how coordinators sharing a database never record it twice.
        """

    @abc.abstractmethod
    async def events_after(
        self,
        cursor: int,
        filter: EventFilter | None = None,
        limit: int = DEFAULT_EVENT_BATCH,
    ) -> list[StoredEvent]:
        """Matching events with a cursor greater than ``cursor``, ascending.

        Cursors grow in commit order: an event committed after this call returns has a cursor
        greater than any returned now, so polling from the last seen cursor misses nothing.
        """

    @abc.abstractmethod
    async def last_sequence(self, source: str) -> int:
        """Highest sequence ever stored for ``source`` (0 when none); survives pruning."""

    @abc.abstractmethod
    async def latest_cursor(self) -> int:
        """Highest committed cursor still stored (0 when none): "live from now" starts here."""

    @abc.abstractmethod
    async def prune_events(
        self, older_than: datetime | None = None, *, keep: int | None = None
    ) -> int:
        """Delete events whose timestamp is before ``older_than`` and every event but the
        ``keep`` newest (by cursor); returns how many. Pruned (source, sequence) pairs are
        never stored again, and the highest pruned cursor is remembered."""

    @abc.abstractmethod
    async def pruned_through_cursor(self) -> int:
        """The highest cursor retention deleted (0 when none): a watch resuming below it missed
        events."""

    @abc.abstractmethod
    async def prune_operations(
        self, older_than: datetime | None = None, *, keep: int | None = None
    ) -> int:
        """Delete operations not updated since ``older_than`` and every one but the ``keep``
        newest (by created_at); returns how many."""

    @abc.abstractmethod
    async def row_counts(self) -> RowCounts:
        """How many rows each table holds (for metrics)."""

    @abc.abstractmethod
    async def save_perf_result(self, record: PerfResultRecord) -> None:
        """Insert or replace a performance result by result_id."""

    @abc.abstractmethod
    async def get_perf_result(self, result_id: str) -> PerfResultRecord | None:
        """The result, or None when unknown."""

    @abc.abstractmethod
    async def list_perf_results(
        self,
        mesh: str | None = None,
        *,
        test_id: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> list[PerfResultRecord]:
        """Newest first, optionally only one mesh's or one test's results."""

    @abc.abstractmethod
    async def append_audit_record(self, record: AuditRecord) -> AuditRecord:
        """Store one audit record; returns it with its id."""

    @abc.abstractmethod
    async def list_audit_records(
        self,
        filter: AuditFilter | None = None,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str = "",
    ) -> tuple[list[AuditRecord], str]:
        """Newest first; returns the page and the next token (empty on the last page)."""

    @abc.abstractmethod
    async def prune_audit_records(
        self, *, older_than: datetime | None = None, keep_newest: int | None = None
    ) -> int:
        """Delete records older than a time and/or all but the newest N; returns how many."""
