"""What one install, upgrade or uninstall run shares: its session, policies, sink and deadline.

Like the `Configuration` Helm's actions are given, one frozen `RunContext` is built per run and
handed to each small step (`install`, `hooks`, `prune`, `uninstall`); `ClusterWork` alone (a
session and how many requests run at once) serves the reads dry runs share with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.apply.kube_errors import ApplyError
from adapters.kit.model.objects import ObjectRef
from adapters.kit.model.plans import (
    NO_ADOPTION,
    Adoption,
    ApplyPolicy,
    Progress,
    ProgressKind,
    ProgressSink,
    WaitPolicy,
)

__all__ = ["ClusterWork", "Counts", "RunContext", "concurrent_steps", "first_apply_error"]

T = TypeVar("T")
Item = TypeVar("Item")


def first_apply_error(failures: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception to surface from concurrent steps: the first ApplyError, else the first."""
    flat: list[BaseException] = []
    pending: list[BaseException] = [failures]
    while pending:
        current = pending.pop(0)
        if isinstance(current, BaseExceptionGroup):
            pending[:0] = list(current.exceptions)
        else:
            flat.append(current)
    return next((exc for exc in flat if isinstance(exc, ApplyError)), flat[0])


@contextlib.asynccontextmanager
async def concurrent_steps() -> AsyncIterator[asyncio.TaskGroup]:
    """A task group whose failure surfaces as one exception (`first_apply_error`)."""
    try:
        async with asyncio.TaskGroup() as group:
            yield group
    except BaseExceptionGroup as failures:
        raise first_apply_error(failures) from None


@dataclass(frozen=True, kw_only=True)
class ClusterWork:
    """One cluster session, and how many of its requests a step runs at once."""

    session: ClusterSession
    concurrency: int = 12

    async def each(self, items: Sequence[Item], run: Callable[[Item], Awaitable[T]]) -> list[T]:
        """Run ``run`` over ``items`` concurrently (bounded); the first ApplyError wins."""
        if not items:
            return []
        if len(items) == 1:
            return [await run(items[0])]
        gate = asyncio.Semaphore(self.concurrency)
        results: dict[int, T] = {}

        async def one(index: int, item: Item) -> None:
            async with gate:
                results[index] = await run(item)

        async with concurrent_steps() as group:
            for index, item in enumerate(items):
                group.create_task(one(index, item), name=f"apply-item-{index}")
        return [results[index] for index in range(len(items))]


@dataclass
class Counts:
    """What a run did so far (the `ApplyOutcome` it returns)."""

    applied: int = 0
    unchanged: int = 0
    deleted: int = 0
    ready: int = 0


@dataclass(frozen=True, kw_only=True)
class RunContext:
    """One run of one release in one cluster: every step reads what it needs from here."""

    work: ClusterWork
    release: str
    mesh: str
    sink: ProgressSink
    apply_policy: ApplyPolicy
    wait_policy: WaitPolicy
    started: float = field(default_factory=time.monotonic)
    adoption: Adoption = NO_ADOPTION
    counts: Counts = field(default_factory=Counts)

    @property
    def session(self) -> ClusterSession:
        return self.work.session

    @property
    def deadline(self) -> float:
        """When the run's wait budget (the wait policy's timeout) runs out."""
        return self.started + self.wait_policy.timeout_seconds

    def left(self) -> float:
        """Seconds of the budget left (negative once past the deadline)."""
        return self.deadline - time.monotonic()

    def report(self, kind: ProgressKind, ref: ObjectRef, message: str) -> None:
        """Tell the sink one step about ``ref``."""
        self.sink(Progress(kind=kind, ref=ref, message=message))

    def seconds(self) -> float:
        """Seconds since the run started (for its last log line)."""
        return round(time.monotonic() - self.started, 3)
