"""Event fan-out: one adapter's events through the hub and the store to 100 live watchers.

A scripted adapter (real gRPC) emits events in bursts; the hub appends them to a SQLite store and
publishes each batch to 100 watchers, each consuming its own WatchEvents-style iterator. Printed:
events stored per second and deliveries per second (events x watchers), the target being >= 20,000
deliveries/s with zero loss; also how many watchers fell back to reading the store. Loss and order
are asserted; timings are only printed. Run with `make bench`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from coordinator.server.event_hub import EventHub
from coordinator.server.hub_settings import HubSettings
from coordinator.store import Store, StoredEvent, open_store
from tests.coordinator.scripted_adapter import ScriptedAdapter, StaticRegistry, serve

pytestmark = pytest.mark.bench

WATCHERS = 100
EVENTS = 5_000
BURST = 250


async def _consume(events: AsyncIterator[StoredEvent], count: int) -> list[int]:
    sequences: list[int] = []
    async for stored in events:
        sequences.append(stored.event.sequence)
        if len(sequences) == count:
            break
    return sequences


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(str(tmp_path / "bench.db"))
    await opened.migrate()
    yield opened
    await opened.close()


async def test_fan_out_to_100_watchers(store: Store) -> None:
    registry = StaticRegistry()
    hub = EventHub(store, registry, settings=HubSettings(batch_size=500))
    await hub.start()
    adapter = ScriptedAdapter(mesh="bench", stream_id="s")
    server = await serve(adapter)
    watches = [hub.watch() for _ in range(WATCHERS)]
    consumers = [asyncio.ensure_future(_consume(w, EVENTS + 1)) for w in watches]
    try:
        registry.add(server.address, "bench")
        await adapter.emit(1)  # every watcher is live before the clock starts
        async with asyncio.timeout(30):
            while hub.watcher_count < WATCHERS:  # noqa: ASYNC110 - counting registrations
                await asyncio.sleep(0.01)
        started = time.perf_counter()
        for _ in range(EVENTS // BURST):
            await adapter.emit(BURST)
            await asyncio.sleep(0)
        results = await asyncio.wait_for(asyncio.gather(*consumers), 120)
        elapsed = time.perf_counter() - started
    finally:
        for consumer in consumers:
            consumer.cancel()
        for watch in watches:
            await watch.aclose()  # type: ignore[attr-defined]
        await hub.stop()
        await registry.close()
        await server.stop(grace_seconds=0)

    expected = list(range(1, EVENTS + 2))
    lost = sum(len(set(expected) - set(got)) for got in results)
    assert lost == 0
    assert all(got == expected for got in results)
    deliveries = EVENTS * WATCHERS
    print()
    print(f"event fan-out: {EVENTS} events x {WATCHERS} watchers in {elapsed:.2f}s (SQLite store)")
    print(f"  events stored+published  {EVENTS / elapsed:10.0f} /s")
    print(f"  deliveries (aggregate)   {deliveries / elapsed:10.0f} /s   (target >= 20000)")
    print(f"  lost                     {lost:10d}")
