"""Events the hub cannot read become recorded gaps; the feed goes on (scripted adapters, real gRPC).

Before: one event larger than the coordinator's receive limit stopped the follower for good (it
re-read the same event forever, also after a restart) while ListAdapters showed no error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from coordinator.server.event_hub import EventHub
from coordinator.server.follower_state import FollowerStatus
from coordinator.store import Store, StoredEvent, open_store
from serving.event_text import EVENT_FIELD_BYTES
from serving.message_limits import ADAPTER_RESPONSE_BYTES
from tests.coordinator.scripted_adapter import ScriptedAdapter, StaticRegistry, serve
from tests.coordinator.test_event_hub import FAST, eventually

FIVE_MB = "x" * (5 * 1024 * 1024)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    location = (
        str(tmp_path / "coordinator.db")
        if request.param == "sqlite"
        else request.getfixturevalue("fresh_postgres_url")
    )
    opened = open_store(location)
    await opened.migrate()
    yield opened
    await opened.close()


@contextlib.asynccontextmanager
async def following(
    store: Store, registry: StaticRegistry, adapter: ScriptedAdapter
) -> AsyncIterator[tuple[EventHub, str]]:
    """A hub on ``store`` following ``adapter`` (served on a port of its own): (hub, address)."""
    server = await serve(adapter)
    hub = EventHub(store, registry, settings=FAST)
    await hub.start()
    try:
        registry.add(server.address, "toy")
        yield hub, server.address
    finally:
        await hub.stop()
        await server.stop(grace_seconds=0)


async def stored(store: Store) -> list[StoredEvent]:
    return await store.events_after(0, None, 1000)


async def until_stored(store: Store, count: int) -> list[StoredEvent]:
    async def enough() -> bool:
        return len(await stored(store)) >= count

    await eventually(enough)
    return await stored(store)


def status_of(hub: EventHub, address: str) -> FollowerStatus:
    status = hub.follower_status(address)
    assert status is not None
    return status


async def test_an_event_larger_than_the_receive_limit_is_a_gap_and_later_events_flow(
    store: Store, registry: StaticRegistry
) -> None:
    adapter = ScriptedAdapter(mesh="toy", stream_id="s1")
    await adapter.emit(2)
    await adapter.emit(details=FIVE_MB)  # the 5 MB "requested by" event of issue 12
    await adapter.emit(2)
    assert adapter.events[2].ByteSize() > ADAPTER_RESPONSE_BYTES
    server = await serve(adapter)
    hub = EventHub(store, registry, settings=FAST)
    await hub.start()
    try:
        registry.add(server.address, "toy")
        events = await until_stored(store, 5)
        assert [(e.event.source, e.event.sequence) for e in events] == [
            ("toy/s1", n) for n in range(1, 6)
        ]
        gap = events[2].event
        assert gap.severity == "warning"
        summary = str(gap.payload["summary"])
        assert f"skipped event 3 of the toy adapter at {server.address}" in summary
        assert "RESOURCE_EXHAUSTED" in str(gap.payload["details"])
        assert gap.payload["event_stream_id"] == "s1"
        assert [e.event.payload["summary"] for e in events[3:]] == ["event 4", "event 5"]
        status = status_of(hub, server.address)
        assert status.skipped_events == 1
        assert "skipped event 3" in status.feed_error
        # Live events after the gap arrive too.
        await adapter.emit(1)
        assert len(await until_stored(store, 6)) == 6
    finally:
        await hub.stop()

    # A restarted hub resumes after the gap: it neither re-reads the event nor skips again.
    restarted = EventHub(store, registry, settings=FAST)
    await restarted.start()
    try:
        await adapter.emit(1)
        events = await until_stored(store, 7)
        assert [e.event.sequence for e in events] == list(range(1, 8))
        assert adapter.requests[-1] == 6
        assert status_of(restarted, server.address).skipped_events == 0
    finally:
        await restarted.stop()
        await server.stop(grace_seconds=0)


async def test_oversized_text_below_the_limit_is_truncated_and_nul_replaced(
    store: Store, registry: StaticRegistry
) -> None:
    adapter = ScriptedAdapter(mesh="toy", stream_id="s1")
    await adapter.emit(details="y" * (1024 * 1024))  # under the limit, over the budget
    await adapter.emit(details="before\x00after")  # JSON columns refuse NUL
    async with following(store, registry, adapter) as (hub, address):
        events = await until_stored(store, 2)
        details = str(events[0].event.payload["details"])
        assert len(details.encode()) <= EVENT_FIELD_BYTES["details"]
        assert details.endswith("bytes]") and "truncated" in details
        assert events[1].event.payload["details"] == "before\ufffdafter"
        assert status_of(hub, address).skipped_events == 0


async def test_a_stream_failing_again_and_again_at_one_event_skips_only_that_event(
    store: Store, registry: StaticRegistry
) -> None:
    adapter = ScriptedAdapter(mesh="toy", stream_id="s1")
    await adapter.emit(4)
    adapter.fail_before[2] = (grpc.StatusCode.INTERNAL, "cannot encode event 2")
    async with following(store, registry, adapter):
        events = await until_stored(store, 4)
        assert [e.event.severity for e in events] == ["info", "warning", "info", "info"]
        assert "INTERNAL: cannot encode event 2" in str(events[1].event.payload["details"])
        # Three attempts at event 2 (HubSettings.skip_after_failures), then on from 3.
        assert adapter.requests == [0, 1, 1, 2]


async def test_an_adapter_that_is_away_is_never_skipped(
    store: Store, registry: StaticRegistry
) -> None:
    adapter = ScriptedAdapter(mesh="toy", stream_id="s1")
    await adapter.emit(3)
    adapter.fail_before[2] = (grpc.StatusCode.UNAVAILABLE, "restarting")
    async with following(store, registry, adapter) as (hub, address):

        async def retried() -> bool:
            return len(adapter.requests) >= 6

        await eventually(retried)
        # event 1 was read before the failures; its write may still be on its way to the store
        assert [e.event.sequence for e in await until_stored(store, 1)] == [1]
        assert status_of(hub, address).last_error == "UNAVAILABLE: restarting"
        del adapter.fail_before[2]
        events = await until_stored(store, 3)
        assert [e.event.severity for e in events] == ["info"] * 3


async def test_events_the_adapter_no_longer_retains_are_recorded_as_a_gap(
    store: Store, registry: StaticRegistry
) -> None:
    adapter = ScriptedAdapter(mesh="toy", stream_id="s1")
    await adapter.emit(2)
    server = await serve(adapter)
    hub = EventHub(store, registry, settings=FAST)
    await hub.start()
    try:
        registry.add(server.address, "toy")
        await until_stored(store, 2)
        await server.stop(grace_seconds=0)
        # The adapter's retention dropped 3..5 while we were away: it answers OUT_OF_RANGE for
        # a resume after 2, and a replay from 0 starts at 6.
        await adapter.emit(4)
        adapter.oldest_retained = 6
        server = await serve(adapter, int(server.address.rsplit(":", 1)[1]))
        events = await until_stored(store, 4)
        assert [e.event.sequence for e in events] == [1, 2, 3, 6]
        assert "skipped events 3..5" in str(events[2].event.payload["summary"])
        assert status_of(hub, server.address).skipped_events == 3
    finally:
        await hub.stop()
        await server.stop(grace_seconds=0)


async def test_shared_gap_is_recorded_once_by_two_hubs(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "shared.db"))
    await store.migrate()
    registries = [StaticRegistry(), StaticRegistry()]
    adapter = ScriptedAdapter(mesh="toy", stream_id="s1")
    await adapter.emit(details=FIVE_MB)
    await adapter.emit(1)
    server = await serve(adapter)
    hubs = [EventHub(store, r, settings=FAST) for r in registries]
    try:
        for hub, registry in zip(hubs, registries, strict=True):
            await hub.start()
            registry.add(server.address, "toy")
        events = await until_stored(store, 2)
        await asyncio.sleep(0.3)
        assert [(e.event.sequence, e.event.severity) for e in await stored(store)] == [
            (1, "warning"),
            (2, "info"),
        ]
        assert len(events) == 2
    finally:
        for hub in hubs:
            await hub.stop()
        for registry in registries:
            await registry.close()
        await server.stop(grace_seconds=0)
        await store.close()
