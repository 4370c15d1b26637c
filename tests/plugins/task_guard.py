"""Fail an async test that leaves asyncio tasks pending (STYLE.md: every background task has an
owner, so a test's tasks must all be finished once it and its fixtures are torn down).

An autouse fixture records the loop's tasks before the test's other fixtures are set up and, after
they are all torn down and the loop has had a few turns, fails the test naming every task created
since that is still pending. A test whose leak lives in code that cannot be fixed yet says so with
``@pytest.mark.allow_task_leak(reason="...")``; the leak is then reported, not failed.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import structlog

MARKER = "allow_task_leak"
SETTLE_TURNS = 20
"""Loop turns given to tasks cancelled during teardown to run their ``finally`` blocks."""
SETTLE_SECONDS = 1.0
"""After that, time given to tasks waiting on I/O completions (grpc.aio's per-call status task
finishes when the closed channel's completion queue reports it); a real leak outlives it."""

_log = structlog.get_logger(__name__)


def pytest_configure(config: pytest.Config) -> None:
    """Register the opt-out marker here, so ``--strict-markers`` accepts it."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(reason): this async test may leave asyncio tasks pending "
        "(a known leak in code under test; the reason says which)",
    )


def describe(task: asyncio.Task[object]) -> str:
    """``name: coroutine qualname at file:line`` — enough to find who started the task."""
    coroutine = task.get_coro()
    where = ""
    frame = getattr(coroutine, "cr_frame", None)
    if frame is not None:
        where = f" at {frame.f_code.co_filename}:{frame.f_lineno}"
    qualname = getattr(coroutine, "__qualname__", repr(coroutine))
    return f"{task.get_name()}: {qualname}{where}"


def leaked_since(before: set[asyncio.Task[object]]) -> list[asyncio.Task[object]]:
    """Tasks of the running loop, other than the caller, not in ``before`` and not done."""
    current = asyncio.current_task()
    return sorted(
        (t for t in asyncio.all_tasks() if t not in before and t is not current and not t.done()),
        key=lambda t: t.get_name(),
    )


@pytest_asyncio.fixture
async def _task_guard_in_loop(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Runs in the test's own loop: snapshot at setup, check at teardown."""
    before = set(asyncio.all_tasks())
    yield
    for _ in range(SETTLE_TURNS):
        if not leaked_since(before):
            break
        await asyncio.sleep(0)
    pending = leaked_since(before)
    if pending:
        await asyncio.wait(pending, timeout=SETTLE_SECONDS)
    leaked = leaked_since(before)
    if not leaked:
        return
    names = [describe(t) for t in leaked]
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:
        _log.warning(
            "task leak allowed", test=request.node.nodeid, reason=marker.kwargs.get("reason", "")
        )
        return
    pytest.fail(
        f"{len(leaked)} asyncio task(s) still pending after the test and its fixtures ended:\n  "
        + "\n  ".join(names),
        pytrace=False,
    )


@pytest.fixture(autouse=True)
def _task_guard(request: pytest.FixtureRequest) -> None:
    """For async tests only; autouse fixtures come first, so the check runs after every other
    function-scoped fixture of the test has been torn down."""
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None and not marker.kwargs.get("reason"):
        pytest.fail(f"@pytest.mark.{MARKER} needs reason=... naming the leak", pytrace=False)
    if inspect.iscoroutinefunction(getattr(request.node, "function", None)):
        request.getfixturevalue("_task_guard_in_loop")
