"""Owner of named long-lived tasks: nothing in meshplane runs a bare ``asyncio.create_task``.

A task that dies is logged with its exception at once (not when garbage collected); on stop every
task is cancelled and given a grace period, and any that ignore cancellation are named in the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog

_log = structlog.get_logger(__name__)


class BackgroundTasks:
    """Start, watch and stop named tasks on behalf of one lifecycle (a server, a hub)."""

    def __init__(self, *, owner: str) -> None:
        self._owner = owner
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._stopping = False

    @property
    def names(self) -> frozenset[str]:
        """Names of tasks still running."""
        return frozenset(self._tasks)

    def start(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as task ``name``; names are unique so logs and stops can refer to them."""
        if self._stopping:
            coro.close()
            raise RuntimeError(f"{self._owner}: stopping, cannot start task {name!r}")
        if name in self._tasks:
            coro.close()
            raise ValueError(f"{self._owner}: task {name!r} is already running")
        task = asyncio.get_running_loop().create_task(coro, name=f"{self._owner}:{name}")
        self._tasks[name] = task
        task.add_done_callback(lambda t: self._finished(name, t))
        return task

    def _finished(self, name: str, task: asyncio.Task[Any]) -> None:
        if self._tasks.get(name) is task:
            del self._tasks[name]
        if task.cancelled():
            _log.debug("task.cancelled", owner=self._owner, task=name)
            return
        exc = task.exception()
        if exc is not None:
            _log.error("task.died", owner=self._owner, task=name, exc_info=exc)
        elif not self._stopping:
            _log.info("task.finished", owner=self._owner, task=name)

    async def stop(self, *, grace_seconds: float) -> None:
        """Cancel every task and wait up to ``grace_seconds`` for them to unwind."""
        self._stopping = True
        names = {task: name for name, task in self._tasks.items()}
        for task in names:
            task.cancel()
        if not names:
            return
        _, pending = await asyncio.wait(names, timeout=grace_seconds)
        for task in pending:
            _log.error(
                "task.ignored_cancellation",
                owner=self._owner,
                task=names[task],
                grace_seconds=grace_seconds,
            )
