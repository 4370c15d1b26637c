"""The background task of each operation with work in progress, and why one was stopped (a
CancelOperation, or the adapter shutting down)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from adapters.kit.model.records import OperationState
from serving.background_tasks import BackgroundTasks

__all__ = ["OperationTasks"]


class OperationTasks:
    """One named task per pending or running operation, owned by ``owner``'s lifecycle."""

    def __init__(self, *, owner: str, cancel_wait_seconds: float) -> None:
        self._tasks = BackgroundTasks(owner=owner)
        self._cancel_wait = cancel_wait_seconds
        self._running: dict[str, asyncio.Task[None]] = {}
        self._stop_reasons: dict[str, OperationState] = {}

    @property
    def running(self) -> frozenset[str]:
        """Ids of operations with background work in progress."""
        return frozenset(self._running)

    def __contains__(self, operation_id: object) -> bool:
        return operation_id in self._running

    def start(self, operation_id: str, attempt: int, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as the task of the operation's ``attempt``."""
        self._running[operation_id] = self._tasks.start(f"{operation_id}#{attempt}", work)

    def stop_reason(self, operation_id: str) -> OperationState:
        """The state a cancelled task records: CANCELLED when asked to, else INTERRUPTED."""
        return self._stop_reasons.get(operation_id, OperationState.INTERRUPTED)

    def done(self, operation_id: str) -> None:
        """The operation's work is over (its task ended, or is given up on)."""
        self._running.pop(operation_id, None)
        self._stop_reasons.pop(operation_id, None)

    async def cancel(self, operation_id: str) -> bool:
        """Cancel the operation's task and wait up to the cancel wait; True when it ended."""
        task = self._running.get(operation_id)
        if task is None:
            return False
        self._stop_reasons[operation_id] = OperationState.CANCELLED
        task.cancel()
        await asyncio.wait({task}, timeout=self._cancel_wait)
        return task.done()

    async def interrupt_all(self, *, grace_seconds: float) -> list[str]:
        """Cancel every task (to be recorded INTERRUPTED) and wait up to ``grace_seconds``;
        the ids of operations whose tasks did not record an end themselves (never started, or
        ignored cancellation)."""
        for operation_id in self._running:
            self._stop_reasons[operation_id] = OperationState.INTERRUPTED
        await self._tasks.stop(grace_seconds=grace_seconds)
        return list(self._running)
