"""Versioned schema migrations as data: one logical schema, spelled for SQLite and PostgreSQL.

A migration is never edited once released; changes go in a new version appended to the list.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Migration:
    """One schema step; each backend's statements run in order inside one transaction."""

    version: int
    description: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


SQLITE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""

POSTGRES_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL
)
"""

# Index shapes shared by both spellings: filters lead, then the keyset order they page by.
_OPERATION_INDEXES = (
    "CREATE INDEX operations_by_created ON operations (created_at, operation_id)",
    "CREATE INDEX operations_by_mesh ON operations (mesh, created_at, operation_id)",
    "CREATE INDEX operations_by_state ON operations (state, created_at, operation_id)",
    "CREATE INDEX operations_by_username ON operations (username, created_at, operation_id)",
)
_EVENT_INDEXES = (
    "CREATE INDEX events_by_operation ON events (operation_id, cursor)",
    "CREATE INDEX events_by_mesh ON events (mesh, cursor)",
    "CREATE INDEX events_by_occurred ON events (occurred_at)",
)
_PERF_INDEXES = (
    "CREATE INDEX perf_results_by_created ON perf_results (created_at, result_id)",
    "CREATE INDEX perf_results_by_mesh ON perf_results (mesh, created_at, result_id)",
    "CREATE INDEX perf_results_by_test ON perf_results (test_id, created_at, result_id)",
)

_AUDIT_INDEXES = (
    "CREATE INDEX audit_records_by_time ON audit_records (recorded_at)",
    "CREATE INDEX audit_records_by_subject ON audit_records (subject, record_id)",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        description="operations, events and per-source event high-water marks",
        sqlite=(
            """
            CREATE TABLE operations (
                operation_id TEXT PRIMARY KEY,
                mesh TEXT NOT NULL,
                operation TEXT NOT NULL,
                state TEXT NOT NULL,
                username TEXT NOT NULL,
                adapter TEXT NOT NULL,
                request TEXT NOT NULL,
                cluster_results TEXT NOT NULL,
                error TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                started_at TEXT,
                finished_at TEXT
            )
            """,
            *_OPERATION_INDEXES,
            # AUTOINCREMENT: cursors are never reused, even after the newest events are pruned.
            """
            CREATE TABLE events (
                cursor INTEGER PRIMARY KEY AUTOINCREMENT,
                source TEXT NOT NULL,
                sequence INTEGER NOT NULL,
                mesh TEXT NOT NULL,
                operation_id TEXT NOT NULL,
                severity TEXT NOT NULL,
                severity_rank INTEGER NOT NULL,
                occurred_at TEXT NOT NULL,
                payload TEXT NOT NULL,
                UNIQUE (source, sequence)
            )
            """,
            *_EVENT_INDEXES,
            """
            CREATE TABLE event_sources (
                source TEXT PRIMARY KEY,
                last_sequence INTEGER NOT NULL,
                pruned_through INTEGER NOT NULL DEFAULT 0
            )
            """,
        ),
        postgres=(
            """
            CREATE TABLE operations (
                operation_id TEXT PRIMARY KEY,
                mesh TEXT NOT NULL,
                operation TEXT NOT NULL,
                state TEXT NOT NULL,
                username TEXT NOT NULL,
                adapter TEXT NOT NULL,
                request JSONB NOT NULL,
                cluster_results JSONB NOT NULL,
                error JSONB,
                created_at TIMESTAMPTZ NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL,
                started_at TIMESTAMPTZ,
                finished_at TIMESTAMPTZ
            )
            """,
            *_OPERATION_INDEXES,
            # BIGSERIAL alone does not give commit order; inserts hold an advisory lock for that.
            """
            CREATE TABLE events (
                cursor BIGSERIAL PRIMARY KEY,
                source TEXT NOT NULL,
                sequence BIGINT NOT NULL,
                mesh TEXT NOT NULL,
                operation_id TEXT NOT NULL,
                severity TEXT NOT NULL,
                severity_rank INTEGER NOT NULL,
                occurred_at TIMESTAMPTZ NOT NULL,
                payload JSONB NOT NULL,
                UNIQUE (source, sequence)
            )
            """,
            *_EVENT_INDEXES,
            """
            CREATE TABLE event_sources (
                source TEXT PRIMARY KEY,
                last_sequence BIGINT NOT NULL,
                pruned_through BIGINT NOT NULL DEFAULT 0
            )
            """,
        ),
    ),
    Migration(
        version=2,
        description="performance test results",
        sqlite=(
            """
            CREATE TABLE perf_results (
                result_id TEXT PRIMARY KEY,
                test_id TEXT NOT NULL,
                name TEXT NOT NULL,
                mesh TEXT NOT NULL,
                created_at TEXT NOT NULL,
                labels TEXT NOT NULL,
                document TEXT NOT NULL
            )
            """,
            *_PERF_INDEXES,
        ),
        postgres=(
            """
            CREATE TABLE perf_results (
                result_id TEXT PRIMARY KEY,
                test_id TEXT NOT NULL,
                name TEXT NOT NULL,
                mesh TEXT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL,
                labels JSONB NOT NULL,
                document JSONB NOT NULL
            )
            """,
            *_PERF_INDEXES,
        ),
    ),
    Migration(
        version=3,
        description="event retention: the highest cursor pruned; history pruned by updated_at",
        sqlite=(
            """
            CREATE TABLE event_retention (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                pruned_through_cursor INTEGER NOT NULL
            )
            """,
            "CREATE INDEX operations_by_updated ON operations (updated_at)",
        ),
        postgres=(
            """
            CREATE TABLE event_retention (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                pruned_through_cursor BIGINT NOT NULL
            )
            """,
            "CREATE INDEX operations_by_updated ON operations (updated_at)",
        ),
    ),
    Migration(
        version=4,
        description="audit records",
        sqlite=(
            """
            CREATE TABLE audit_records (
                record_id INTEGER PRIMARY KEY AUTOINCREMENT,
                recorded_at TEXT NOT NULL,
                subject TEXT NOT NULL,
                uid TEXT NOT NULL,
                groups TEXT NOT NULL,
                authenticated_by TEXT NOT NULL,
                source TEXT NOT NULL,
                method TEXT NOT NULL,
                mesh TEXT NOT NULL,
                operation_id TEXT NOT NULL,
                namespace TEXT NOT NULL,
                decision TEXT NOT NULL,
                outcome TEXT NOT NULL,
                reason TEXT NOT NULL
            )
            """,
            *_AUDIT_INDEXES,
        ),
        postgres=(
            """
            CREATE TABLE audit_records (
                record_id BIGSERIAL PRIMARY KEY,
                recorded_at TIMESTAMPTZ NOT NULL,
                subject TEXT NOT NULL,
                uid TEXT NOT NULL,
                groups JSONB NOT NULL,
                authenticated_by TEXT NOT NULL,
                source TEXT NOT NULL,
                method TEXT NOT NULL,
                mesh TEXT NOT NULL,
                operation_id TEXT NOT NULL,
                namespace TEXT NOT NULL,
                decision TEXT NOT NULL,
                outcome TEXT NOT NULL,
                reason TEXT NOT NULL
            )
            """,
            *_AUDIT_INDEXES,
        ),
    ),
)


def check_migrations(migrations: Sequence[Migration]) -> None:
    """Versions must run 1, 2, 3, ... so "applied" is a prefix and order is unambiguous."""
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise ValueError(
                f"migration versions must be consecutive from 1: expected {expected}, "
                f"got {migration.version} ({migration.description!r})"
            )


def pending_migrations(
    migrations: Sequence[Migration], applied: Collection[int]
) -> list[Migration]:
    """The migrations not yet applied, in version order."""
    check_migrations(migrations)
    return [migration for migration in migrations if migration.version not in applied]


check_migrations(MIGRATIONS)
