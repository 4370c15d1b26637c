"""What the coordinator persists: operations, adapter events and performance results.

Plain frozen dataclasses so the store never depends on protobuf; the servicer converts at the door.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Event severities from least to most severe; ``EventFilter.severity_at_least`` compares by rank.
SEVERITIES: tuple[str, ...] = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)
_SEVERITY_RANKS: Mapping[str, int] = {name: rank for rank, name in enumerate(SEVERITIES)}


def severity_rank(severity: str) -> int:
    """Rank of a severity name (case-insensitive); unknown names are a caller error."""
    try:
        return _SEVERITY_RANKS[severity.lower()]
    except KeyError:
        raise ValueError(f"unknown severity {severity!r}; expected one of {SEVERITIES}") from None


def _require_aware(name: str, value: datetime | None) -> None:
    """Reject naive datetimes: the store keeps UTC and would otherwise have to guess a zone."""
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")


def utc(value: datetime) -> datetime:
    """Normalise an aware datetime to UTC so equal instants compare and serialise alike."""
    _require_aware("timestamp", value)
    return value.astimezone(UTC)


@dataclass(frozen=True, kw_only=True)
class OperationRecord:
    """One management operation as the coordinator routed it, and what came of it."""

    operation_id: str
    mesh: str
    operation: str
    state: str
    username: str
    request: dict[str, Any]
    cluster_results: list[dict[str, Any]]
    error: dict[str, Any] | None
    adapter: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def __post_init__(self) -> None:
        if not self.operation_id:
            raise ValueError("operation_id must not be empty")
        for name in ("created_at", "updated_at", "started_at", "finished_at"):
            _require_aware(name, getattr(self, name))


@dataclass(frozen=True, kw_only=True)
class EventRecord:
    """One event from one adapter event stream; (source, sequence) identifies it everywhere."""

    source: str
    sequence: int
    mesh: str
    operation_id: str
    severity: str
    timestamp: datetime
    payload: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.source:
            raise ValueError("source must not be empty")
        if self.sequence < 1:
            # 0 is what last_sequence() reports for "nothing stored yet".
            raise ValueError(f"sequence must be >= 1, got {self.sequence}")
        severity_rank(self.severity)
        object.__setattr__(self, "severity", self.severity.lower())
        _require_aware("timestamp", self.timestamp)


@dataclass(frozen=True, kw_only=True)
class StoredEvent:
    """An event together with its store-wide cursor (strictly increasing in commit order)."""

    cursor: int
    event: EventRecord


@dataclass(frozen=True, kw_only=True)
class OperationFilter:
    """Which operations to list; unset fields match everything, times are [since, until)."""

    mesh: str | None = None
    state: str | None = None
    username: str | None = None
    operation: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        _require_aware("since", self.since)
        _require_aware("until", self.until)


@dataclass(frozen=True, kw_only=True)
class EventFilter:
    """Which events a watcher wants; unset fields match everything."""

    mesh: str | None = None
    operation_id: str | None = None
    severity_at_least: str | None = None

    def __post_init__(self) -> None:
        if self.severity_at_least is not None:
            severity_rank(self.severity_at_least)


@dataclass(frozen=True, kw_only=True)
class PerfResultRecord:
    """One performance test result: an SMP-shaped JSON document plus what it is listed by."""

    result_id: str
    test_id: str
    name: str
    mesh: str
    created_at: datetime
    labels: dict[str, str] = field(default_factory=dict)
    document: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.result_id:
            raise ValueError("result_id must not be empty")
        _require_aware("created_at", self.created_at)


@dataclass(frozen=True, kw_only=True)
class AppliedMigration:
    """A row of schema_migrations: which schema version is in place and since when."""

    version: int
    description: str
    applied_at: datetime


@dataclass(frozen=True, kw_only=True)
class RowCounts:
    """Rows per table."""

    events: int
    operations: int
    perf_results: int
