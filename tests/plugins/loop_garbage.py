"""Collect each async test's cyclic garbage inside the test's own event loop.

grpc.aio objects (channels, calls) that end up in reference cycles, typically through a caught
exception's traceback, are freed whenever the collector next runs. pytest-asyncio gives every test
a new loop, so without this that is often during a later test, on another loop, where freeing
them can crash the interpreter (one worker died with a segmentation fault "Garbage-collecting"
inside grpc's ``_invoke``). Collecting at the end of each async test, while its loop still runs,
frees them where they were made. Objects alive once collection is done are frozen (``gc.freeze``)
so each of these collections scans only what tests created, not every imported module.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio


def pytest_collection_finish(session: pytest.Session) -> None:
    """Every test module is imported now: move what exists to the permanent generation."""
    gc.collect()
    gc.freeze()


@pytest_asyncio.fixture
async def _loop_garbage_in_loop() -> AsyncIterator[None]:
    yield
    gc.collect()
    await asyncio.sleep(0)  # callbacks the freed objects scheduled on this loop run here


@pytest.fixture(autouse=True)
def _loop_garbage(request: pytest.FixtureRequest) -> None:
    """Autouse, so its teardown comes after every other function-scoped fixture's."""
    if inspect.iscoroutinefunction(getattr(request.node, "function", None)):
        request.getfixturevalue("_loop_garbage_in_loop")
