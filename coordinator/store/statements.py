"""SQL both backends share; only the placeholder and how times are bound differ.

Keeping one spelling of each query is what makes "same schema and behaviour" checkable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from coordinator.store.paging import PageKey
from coordinator.store.records import EventFilter, OperationFilter, severity_rank

OPERATION_COLUMNS = (
    "operation_id",
    "mesh",
    "operation",
    "state",
    "username",
    "adapter",
    "request",
    "cluster_results",
    "error",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
)
# Everything but the key and created_at: an update keeps the first save's creation time.
_OPERATION_UPDATED = tuple(c for c in OPERATION_COLUMNS if c not in {"operation_id", "created_at"})

EVENT_COLUMNS = (
    "cursor",
    "source",
    "sequence",
    "mesh",
    "operation_id",
    "severity",
    "occurred_at",
    "payload",
)

PERF_COLUMNS = ("result_id", "test_id", "name", "mesh", "created_at", "labels", "document")

# Time-bound values are turned into what the backend stores (text on SQLite, as-is elsewhere).
TimeEncoder = Callable[[datetime], object]


@dataclass(frozen=True, kw_only=True)
class Dialect:
    """How one backend spells a bound parameter and a JSON-typed one."""

    placeholder: str
    json_placeholder: str
    encode_time: TimeEncoder


@dataclass(frozen=True, kw_only=True)
class Query:
    """SQL text with its positional parameters."""

    sql: str
    params: tuple[object, ...]


def _operation_values(dialect: Dialect) -> str:
    json_columns = {"request", "cluster_results", "error"}
    return ", ".join(
        dialect.json_placeholder if c in json_columns else dialect.placeholder
        for c in OPERATION_COLUMNS
    )


def claim_operation_sql(dialect: Dialect) -> str:
    """Insert one operation unless its id is taken (then nothing changes)."""
    return (
        f"INSERT INTO operations ({', '.join(OPERATION_COLUMNS)}) "
        f"VALUES ({_operation_values(dialect)}) ON CONFLICT (operation_id) DO NOTHING"
    )


def release_operation_sql(dialect: Dialect) -> str:
    """Delete a claimed operation that no adapter answered for (``adapter`` still empty)."""
    return f"DELETE FROM operations WHERE operation_id = {dialect.placeholder} AND adapter = ''"


def upsert_operation_sql(dialect: Dialect) -> str:
    """Insert-or-update of one operation returning the created_at that was kept."""
    values = _operation_values(dialect)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _OPERATION_UPDATED)
    return (
        f"INSERT INTO operations ({', '.join(OPERATION_COLUMNS)}) VALUES ({values}) "
        f"ON CONFLICT (operation_id) DO UPDATE SET {updates} RETURNING created_at"
    )


def select_operation_sql(dialect: Dialect) -> str:
    """One operation by id."""
    return (
        f"SELECT {', '.join(OPERATION_COLUMNS)} FROM operations "
        f"WHERE operation_id = {dialect.placeholder}"
    )


def list_operations_query(
    dialect: Dialect, filter: OperationFilter, after: PageKey | None, limit: int
) -> Query:
    """A keyset page, newest first: rows strictly before ``after`` in (created_at, id) order."""
    p = dialect.placeholder
    conditions: list[str] = []
    params: list[object] = []
    for column in ("mesh", "state", "username", "operation"):
        value = getattr(filter, column)
        if value is not None:
            conditions.append(f"{column} = {p}")
            params.append(value)
    if filter.since is not None:
        conditions.append(f"created_at >= {p}")
        params.append(dialect.encode_time(filter.since))
    if filter.until is not None:
        conditions.append(f"created_at < {p}")
        params.append(dialect.encode_time(filter.until))
    if after is not None:
        conditions.append(f"(created_at, operation_id) < ({p}, {p})")
        params.extend((dialect.encode_time(after.created_at), after.row_id))
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    sql = (
        f"SELECT {', '.join(OPERATION_COLUMNS)} FROM operations {where}"
        f"ORDER BY created_at DESC, operation_id DESC LIMIT {p}"
    )
    return Query(sql=sql, params=(*params, limit))


def insert_event_sql(dialect: Dialect) -> str:
    """Insert one event unless its (source, sequence) is stored or was pruned already."""
    p, j = dialect.placeholder, dialect.json_placeholder
    return (
        "INSERT INTO events (source, sequence, mesh, operation_id, severity, severity_rank, "
        f"occurred_at, payload) SELECT {p}, {p}, {p}, {p}, {p}, {p}, {p}, {j} "
        "WHERE NOT EXISTS (SELECT 1 FROM event_sources "
        f"WHERE source = {p} AND pruned_through >= {p}) "
        "ON CONFLICT (source, sequence) DO NOTHING RETURNING cursor"
    )


def events_after_query(dialect: Dialect, cursor: int, filter: EventFilter, limit: int) -> Query:
    """Matching events after a cursor, ascending."""
    p = dialect.placeholder
    conditions = [f"cursor > {p}"]
    params: list[object] = [cursor]
    if filter.mesh is not None:
        conditions.append(f"mesh = {p}")
        params.append(filter.mesh)
    if filter.operation_id is not None:
        conditions.append(f"operation_id = {p}")
        params.append(filter.operation_id)
    if filter.severity_at_least is not None:
        conditions.append(f"severity_rank >= {p}")
        params.append(severity_rank(filter.severity_at_least))
    sql = (
        f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE {' AND '.join(conditions)} "
        f"ORDER BY cursor LIMIT {p}"
    )
    return Query(sql=sql, params=(*params, limit))


def record_sources_sql(dialect: Dialect, greatest: str) -> str:
    """Raise a source's high-water mark; ``greatest`` is the backend's two-argument max."""
    p = dialect.placeholder
    return (
        f"INSERT INTO event_sources (source, last_sequence) VALUES ({p}, {p}) "
        "ON CONFLICT (source) DO UPDATE SET last_sequence = "
        f"{greatest}(event_sources.last_sequence, excluded.last_sequence)"
    )


def event_keep_cutoff_sql(dialect: Dialect) -> str:
    """The cursor of the newest event beyond the ``keep`` newest (no row: nothing to prune)."""
    return f"SELECT cursor FROM events ORDER BY cursor DESC LIMIT 1 OFFSET {dialect.placeholder}"


def _any_of(parts: list[tuple[str, tuple[object, ...]] | None]) -> tuple[str, list[object]]:
    """The given (condition, params) joined with OR; no condition matches nothing."""
    given = [part for part in parts if part is not None]
    if not given:
        return "1 = 0", []
    params = [param for _condition, values in given for param in values]
    return f"({' OR '.join(condition for condition, _ in given)})", params


def _prune_condition(
    dialect: Dialect, through_cursor: int | None, older_than: datetime | None
) -> tuple[str, list[object]]:
    """Events past retention: at or below a cursor (count) or older than a time (age)."""
    p = dialect.placeholder
    return _any_of(
        [
            None if through_cursor is None else (f"cursor <= {p}", (through_cursor,)),
            None
            if older_than is None
            else (f"occurred_at < {p}", (dialect.encode_time(older_than),)),
        ]
    )


def prune_candidates_query(
    dialect: Dialect, through_cursor: int | None, older_than: datetime | None, limit: int
) -> Query:
    """The oldest ``limit`` events past retention: (cursor, source, sequence), by cursor."""
    condition, params = _prune_condition(dialect, through_cursor, older_than)
    return Query(
        sql=f"SELECT cursor, source, sequence FROM events WHERE {condition} "
        f"ORDER BY cursor LIMIT {dialect.placeholder}",
        params=(*params, limit),
    )


def prune_events_query(
    dialect: Dialect, top: int, through_cursor: int | None, older_than: datetime | None
) -> Query:
    """Delete the candidates a `prune_candidates_query` returned (its highest cursor: ``top``)."""
    condition, params = _prune_condition(dialect, through_cursor, older_than)
    return Query(
        sql=f"DELETE FROM events WHERE cursor <= {dialect.placeholder} AND {condition}",
        params=(top, *params),
    )


def record_pruned_cursor_sql(dialect: Dialect, greatest: str) -> str:
    """Remember the highest cursor retention deleted (WatchEvents refuses to resume below it)."""
    p = dialect.placeholder
    return (
        f"INSERT INTO event_retention (id, pruned_through_cursor) VALUES (1, {p}) "
        "ON CONFLICT (id) DO UPDATE SET pruned_through_cursor = "
        f"{greatest}(event_retention.pruned_through_cursor, excluded.pruned_through_cursor)"
    )


PRUNED_THROUGH_CURSOR_SQL = "SELECT COALESCE(MAX(pruned_through_cursor), 0) FROM event_retention"


def operation_keep_cutoff_sql(dialect: Dialect) -> str:
    """(created_at, operation_id) of the newest operation beyond the ``keep`` newest."""
    return (
        "SELECT created_at, operation_id FROM operations "
        f"ORDER BY created_at DESC, operation_id DESC LIMIT 1 OFFSET {dialect.placeholder}"
    )


def prune_operations_query(
    dialect: Dialect,
    through: tuple[object, str] | None,
    older_than: datetime | None,
    limit: int,
) -> Query:
    """Delete up to ``limit`` operations past retention: at or before ``through`` in history
    order (count), or not updated since ``older_than`` (age)."""
    p = dialect.placeholder
    condition, params = _any_of(
        [
            None if through is None else (f"(created_at, operation_id) <= ({p}, {p})", through),
            None
            if older_than is None
            else (f"updated_at < {p}", (dialect.encode_time(older_than),)),
        ]
    )
    return Query(
        sql="DELETE FROM operations WHERE operation_id IN (SELECT operation_id FROM operations "
        f"WHERE {condition} ORDER BY created_at, operation_id LIMIT {p})",
        params=(*params, limit),
    )


ROW_COUNTS_SQL = (
    "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM operations), "
    "(SELECT COUNT(*) FROM perf_results)"
)


def record_pruned_sql(dialect: Dialect, greatest: str) -> str:
    """Remember the highest pruned sequence so a late duplicate is not stored again."""
    p = dialect.placeholder
    return (
        f"INSERT INTO event_sources (source, last_sequence, pruned_through) VALUES ({p}, {p}, {p}) "
        "ON CONFLICT (source) DO UPDATE SET pruned_through = "
        f"{greatest}(event_sources.pruned_through, excluded.pruned_through), "
        f"last_sequence = {greatest}(event_sources.last_sequence, excluded.last_sequence)"
    )


def upsert_perf_result_sql(dialect: Dialect) -> str:
    """Insert or replace one perf result."""
    p, j = dialect.placeholder, dialect.json_placeholder
    updates = ", ".join(f"{c} = excluded.{c}" for c in PERF_COLUMNS if c != "result_id")
    return (
        f"INSERT INTO perf_results ({', '.join(PERF_COLUMNS)}) "
        f"VALUES ({p}, {p}, {p}, {p}, {p}, {j}, {j}) "
        f"ON CONFLICT (result_id) DO UPDATE SET {updates}"
    )


def select_perf_result_sql(dialect: Dialect) -> str:
    """One perf result by id."""
    return (
        f"SELECT {', '.join(PERF_COLUMNS)} FROM perf_results "
        f"WHERE result_id = {dialect.placeholder}"
    )


def list_perf_results_query(
    dialect: Dialect, mesh: str | None, test_id: str | None, limit: int
) -> Query:
    """Newest perf results first, optionally for one mesh or test."""
    p = dialect.placeholder
    conditions: list[str] = []
    params: list[object] = []
    if mesh is not None:
        conditions.append(f"mesh = {p}")
        params.append(mesh)
    if test_id is not None:
        conditions.append(f"test_id = {p}")
        params.append(test_id)
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    sql = (
        f"SELECT {', '.join(PERF_COLUMNS)} FROM perf_results {where}"
        f"ORDER BY created_at DESC, result_id DESC LIMIT {p}"
    )
    return Query(sql=sql, params=(*params, limit))


def last_sequence_sql(dialect: Dialect) -> str:
    """A source's high-water mark (no row when the source never stored an event)."""
    return f"SELECT last_sequence FROM event_sources WHERE source = {dialect.placeholder}"


LATEST_CURSOR_SQL = "SELECT COALESCE(MAX(cursor), 0) FROM events"
APPLIED_MIGRATIONS_SQL = (
    "SELECT version, description, applied_at FROM schema_migrations ORDER BY version"
)
PRESENT_MIGRATIONS_SQL = "SELECT version FROM schema_migrations"
