"""The coordinator's persistent store: operations, adapter events and perf results.

SQLite by default (a file under the data dir), PostgreSQL when given a ``postgresql://`` URL;
both speak the same ``Store`` contract and schema.
"""

from __future__ import annotations

from coordinator.store.audit_trail import AuditFilter, AuditRecord
from coordinator.store.base import Store
from coordinator.store.errors import StoreClosedError, StoreError
from coordinator.store.migrations import MIGRATIONS, Migration
from coordinator.store.postgres import PostgresStore
from coordinator.store.records import (
    SEVERITIES,
    AppliedMigration,
    EventFilter,
    EventRecord,
    OperationFilter,
    OperationRecord,
    PerfResultRecord,
    StoredEvent,
    severity_rank,
)
from coordinator.store.sqlite import SQLiteStore

__all__ = [
    "MIGRATIONS",
    "SEVERITIES",
    "AppliedMigration",
    "AuditFilter",
    "AuditRecord",
    "EventFilter",
    "EventRecord",
    "Migration",
    "OperationFilter",
    "OperationRecord",
    "PerfResultRecord",
    "PostgresStore",
    "SQLiteStore",
    "Store",
    "StoreClosedError",
    "StoreError",
    "StoredEvent",
    "open_store",
    "severity_rank",
]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_SQLITE_SCHEME = "sqlite://"


def open_store(url_or_path: str) -> Store:
    """A store for a PostgreSQL URL, a ``sqlite:///abs/path`` URL or a plain file path.

    Nothing is opened yet; call ``migrate()`` before use.
    """
    if url_or_path.startswith(_POSTGRES_SCHEMES):
        return PostgresStore(url_or_path)
    if url_or_path.startswith(_SQLITE_SCHEME):
        path = url_or_path.removeprefix(_SQLITE_SCHEME)
        if not path.startswith("/"):
            raise ValueError(
                f"SQLite URL must name an absolute path (sqlite:///abs/path): {url_or_path!r}"
            )
        return SQLiteStore(path)
    if "://" in url_or_path:
        raise ValueError(f"unsupported store URL scheme: {url_or_path!r}")
    if not url_or_path:
        raise ValueError("store location must not be empty")
    return SQLiteStore(url_or_path)
