"""Fixtures the coordinator tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.coordinator.scripted_adapter import StaticRegistry


@pytest.fixture
async def registry() -> AsyncIterator[StaticRegistry]:
    """The registry surface the event hub reads, with real channels (closed afterwards)."""
    made = StaticRegistry()
    yield made
    await made.close()
