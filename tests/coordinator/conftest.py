"""Fixtures the coordinator tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from coordinator.store import Store, open_store
from tests.coordinator.scripted_adapter import StaticRegistry


@pytest.fixture
async def store(store_location: str) -> AsyncIterator[Store]:
    """A migrated store, once on SQLite and once on PostgreSQL (``store_location``)."""
    opened = open_store(store_location)
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def registry() -> AsyncIterator[StaticRegistry]:
    """The registry surface the event hub reads, with real channels (closed afterwards)."""
    made = StaticRegistry()
    yield made
    await made.close()
