"""Retention of the coordinator's store: events and operation history pruned by age and count.

One owned background task prunes now and then (`RetentionPolicy.interval_seconds`), in small
transactions (see `coordinator.store`), so the store stays bounded however long the coordinator
runs. A watch that resumes below the highest pruned cursor is refused with OUT_OF_RANGE (the
servicer says how to resume), never silently given a gap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from coordinator.store.base import Store
from serving.background_tasks import BackgroundTasks

__all__ = ["Pruned", "Pruner", "RetentionPolicy"]

_log = structlog.get_logger(__name__)


@dataclass(frozen=True, kw_only=True)
class RetentionPolicy:
    """How much the store keeps; None turns one bound off."""

    event_age: timedelta | None = timedelta(hours=168)
    event_count: int | None = 1_000_000
    history_age: timedelta | None = timedelta(days=90)
    """Operations not updated for this long are deleted."""
    history_count: int | None = 100_000
    interval_seconds: float = 300.0


@dataclass(frozen=True, kw_only=True)
class Pruned:
    """Rows one pass deleted."""

    events: int
    operations: int


class Pruner:
    """Applies a `RetentionPolicy` to a store, once (`prune_once`) or periodically (`start`)."""

    def __init__(
        self,
        store: Store,
        policy: RetentionPolicy,
        *,
        on_pruned: Callable[[Pruned], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._policy = policy
        self._on_pruned = on_pruned
        self._clock = clock
        self._tasks = BackgroundTasks(owner="retention")

    async def prune_once(self) -> Pruned:
        """One pass over events and history."""
        policy = self._policy
        now = self._clock()
        events = await self._store.prune_events(
            None if policy.event_age is None else now - policy.event_age,
            keep=policy.event_count,
        )
        operations = await self._store.prune_operations(
            None if policy.history_age is None else now - policy.history_age,
            keep=policy.history_count,
        )
        pruned = Pruned(events=events, operations=operations)
        if self._on_pruned is not None:
            self._on_pruned(pruned)
        return pruned

    def start(self) -> None:
        """Prune now and every `RetentionPolicy.interval_seconds` until `stop`."""
        self._tasks.start("prune", self._run())

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop the periodic pass (a pass in progress ends with its current transaction)."""
        await self._tasks.stop(grace_seconds=grace_seconds)

    async def _run(self) -> None:
        while True:
            try:
                pruned = await self.prune_once()
            except Exception:
                # A database hiccup must not end retention for good: try again next time.
                _log.exception("retention.prune_failed")
            else:
                if pruned.events or pruned.operations:
                    _log.info(
                        "retention.pruned", events=pruned.events, operations=pruned.operations
                    )
            await asyncio.sleep(self._policy.interval_seconds)
