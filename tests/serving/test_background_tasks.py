"""Named background tasks: deaths are logged with the exception, stop cancels within a grace."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Iterator

import pytest
import structlog

from serving import BackgroundTasks, configure_logging
from serving.logging_setup import reset_logging


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(level="debug", json=True, stream=stream)
    yield stream
    reset_logging()


def _events(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_a_dying_task_is_logged_with_its_exception(log_lines: io.StringIO) -> None:
    tasks = BackgroundTasks(owner="hub")

    async def crash() -> None:
        raise RuntimeError("fan-out lost its queue")

    task = tasks.start("fan-out", crash())
    assert task.get_name() == "hub:fan-out"
    await asyncio.wait([task])
    await asyncio.sleep(0)  # let done-callbacks run
    assert tasks.names == frozenset()
    (died,) = [e for e in _events(log_lines) if e["event"] == "task.died"]
    assert died["task"] == "fan-out"
    assert died["owner"] == "hub"
    assert "fan-out lost its queue" in str(died["exception"])


async def test_names_are_unique_while_running() -> None:
    tasks = BackgroundTasks(owner="server")
    tasks.start("watch", asyncio.Event().wait())
    with pytest.raises(ValueError, match="already running"):
        tasks.start("watch", asyncio.Event().wait())
    assert tasks.names == frozenset({"watch"})
    await tasks.stop(grace_seconds=1)
    assert tasks.names == frozenset()
    with pytest.raises(RuntimeError, match="stopping"):
        tasks.start("late", asyncio.Event().wait())


async def test_stop_cancels_and_waits_for_cleanup() -> None:
    tasks = BackgroundTasks(owner="server")
    cleaned: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.01)
            cleaned.append(name)

    for name in ("a", "b", "c"):
        tasks.start(name, forever(name))
    await asyncio.sleep(0)
    await tasks.stop(grace_seconds=2)
    assert sorted(cleaned) == ["a", "b", "c"]


async def test_stop_gives_up_on_tasks_that_ignore_cancellation(log_lines: io.StringIO) -> None:
    tasks = BackgroundTasks(owner="server")
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue

    task = tasks.start("stubborn", stubborn())
    await asyncio.sleep(0)
    started = time.monotonic()
    await tasks.stop(grace_seconds=0.2)
    assert 0.15 <= time.monotonic() - started < 2
    ignored = [e for e in _events(log_lines) if e["event"] == "task.ignored_cancellation"]
    assert ignored and ignored[0]["task"] == "stubborn"
    release.set()
    await task
    structlog.contextvars.clear_contextvars()
