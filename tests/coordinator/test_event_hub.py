"""The event hub against scripted adapters over real gRPC, with SQLite and PostgreSQL stores."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from coordinator.server.event_hub import EventHub
from coordinator.server.hub_settings import HubSettings
from coordinator.store import Store, StoredEvent, open_store
from meshplane.adapter.v1 import adapter_pb2 as pb
from tests.coordinator.scripted_adapter import ScriptedAdapter, StaticRegistry, serve

FAST = HubSettings(backoff_initial_seconds=0.02, backoff_max_seconds=0.2, batch_size=50)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(str(tmp_path / "coordinator.db"))
    await opened.migrate()
    yield opened
    await opened.close()


@pytest.fixture
async def hub(store: Store, registry: StaticRegistry) -> AsyncIterator[EventHub]:
    started = EventHub(store, registry, settings=FAST)
    await started.start()
    yield started
    await started.stop()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Poll ``check`` until it holds (for state the hub reaches asynchronously)."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def stored_pairs(store: Store) -> list[tuple[str, int]]:
    """Every stored (source, sequence), in cursor order."""
    pairs: list[tuple[str, int]] = []
    cursor = 0
    while page := await store.events_after(cursor, None, 1000):
        pairs += [(e.event.source, e.event.sequence) for e in page]
        cursor = page[-1].cursor
    return pairs


async def take(
    events: AsyncIterator[StoredEvent], count: int, within: float = 10.0
) -> list[StoredEvent]:
    """The next ``count`` events of a watch."""

    async def collect() -> list[StoredEvent]:
        got = []
        async for stored in events:
            got.append(stored)
            if len(got) == count:
                break
        return got

    return await asyncio.wait_for(collect(), within)


async def test_follows_replays_and_resumes_after_falling_behind(
    store: Store, registry: StaticRegistry, hub: EventHub
) -> None:
    adapter = ScriptedAdapter(mesh="toy", stream_id="s1")
    await adapter.emit(30)
    adapter.exhaust_after = 12
    server = await serve(adapter)
    try:
        registry.add(server.address, "toy")
        await adapter.emit(25)
        expected = [("toy/s1", n) for n in range(1, 56)]

        async def all_stored() -> bool:
            return await stored_pairs(store) == expected

        await eventually(all_stored)
        # Every resume started where the store stopped: no request re-read stored events.
        assert adapter.requests[0] == 0
        assert len(adapter.requests) >= 5
        assert adapter.requests == sorted(adapter.requests)

        async def caught_up() -> bool:  # the store has them a moment before the status
            status = hub.follower_status(server.address)
            return status is not None and (status.source, status.last_sequence) == ("toy/s1", 55)

        await eventually(caught_up)
        assert hub.address_of("toy/s1") == server.address
        stored = await store.events_after(0, None, 1)
        assert stored[0].event.payload["summary"] == "event 1"
        assert stored[0].event.payload["event_stream_id"] == "s1"
    finally:
        await server.stop(grace_seconds=0)


async def test_adapter_restart_and_lost_log(
    store: Store, registry: StaticRegistry, hub: EventHub
) -> None:
    adapter = ScriptedAdapter(mesh="toy", stream_id="s1")
    await adapter.emit(5)
    server = await serve(adapter)
    port = server.port
    registry.add(server.address, "toy")

    async def count(n: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return len(await stored_pairs(store)) == n

        return check

    await eventually(await count(5))
    await server.stop(grace_seconds=0)
    await adapter.emit(3)  # emitted while the hub cannot reach the adapter (kept in its log)
    server = await serve(adapter, port)
    try:
        await eventually(await count(8))
        await adapter.reset_log("s2")
        await adapter.emit(4)
        await eventually(await count(12))
        pairs = await stored_pairs(store)
        assert pairs == [("toy/s1", n) for n in range(1, 9)] + [("toy/s2", n) for n in range(1, 5)]
        assert adapter.requests[-1] == 0  # the new stream was read from its start
    finally:
        await server.stop(grace_seconds=0)


async def test_operation_state_events_refresh_history(
    store: Store, registry: StaticRegistry, hub: EventHub
) -> None:
    adapter = ScriptedAdapter(mesh="toy", stream_id="s1")
    operation = pb.Operation(
        operation_id="op-1",
        operation="install",
        mesh="toy",
        username="ann",
        state=pb.OPERATION_STATE_RUNNING,
    )
    adapter.operations["op-1"] = operation
    server = await serve(adapter)
    try:
        registry.add(server.address, "toy")
        await adapter.emit(2, operation_id="op-1", state=pb.OPERATION_STATE_RUNNING)

        async def state_is(name: str) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                record = await store.get_operation("op-1")
                return record is not None and record.state == name

            return check

        await eventually(await state_is("running"))
        operation.state = pb.OPERATION_STATE_FAILED
        operation.error.code = "WORKLOAD_NOT_READY"
        await adapter.emit(
            1,
            operation_id="op-1",
            state=pb.OPERATION_STATE_FAILED,
            severity=pb.EVENT_SEVERITY_ERROR,
        )
        await eventually(await state_is("failed"))
        record = await store.get_operation("op-1")
        assert record is not None
        assert (record.mesh, record.adapter, record.username) == ("toy", server.address, "ann")
        assert record.error is not None and record.error["code"] == "WORKLOAD_NOT_READY"
    finally:
        await server.stop(grace_seconds=0)


async def test_watch_replays_then_follows_exactly_once_in_order(
    store: Store, registry: StaticRegistry, hub: EventHub
) -> None:
    first = ScriptedAdapter(mesh="alpha", stream_id="a")
    second = ScriptedAdapter(mesh="beta", stream_id="b")
    await first.emit(20)
    servers = [await serve(first), await serve(second)]
    try:
        registry.add(servers[0].address, "alpha")
        registry.add(servers[1].address, "beta")
        everything = hub.watch()
        replayed = await take(everything, 20)
        assert [e.event.sequence for e in replayed] == list(range(1, 21))
        live = asyncio.gather(
            first.emit(40), second.emit(40, operation_id="op-b", severity=pb.EVENT_SEVERITY_ERROR)
        )
        await live
        rest = await take(everything, 80)
        cursors = [e.cursor for e in replayed + rest]
        assert cursors == sorted(set(cursors))
        assert sorted((e.event.source, e.event.sequence) for e in rest) == sorted(
            [("alpha/a", n) for n in range(21, 61)] + [("beta/b", n) for n in range(1, 41)]
        )
        await everything.aclose()  # type: ignore[attr-defined]

        # Resume after the 50th event: exactly the rest, nothing before.
        resumed = hub.watch(after_cursor=cursors[49])
        again = await take(resumed, 50)
        assert [e.cursor for e in again] == cursors[50:]
        await resumed.aclose()  # type: ignore[attr-defined]

        errors = hub.watch(mesh="beta", operation_id="op-b", min_severity=pb.EVENT_SEVERITY_ERROR)
        only = await take(errors, 40)
        assert {(e.event.mesh, e.event.severity) for e in only} == {("beta", "error")}
        await errors.aclose()  # type: ignore[attr-defined]
        none = hub.watch(mesh="alpha", min_severity="warning")
        with pytest.raises(TimeoutError):
            await take(none, 1, within=0.3)
        assert hub.watcher_count == 0
    finally:
        for server in servers:
            await server.stop(grace_seconds=0)


async def test_slow_watcher_falls_back_to_the_store_without_loss(
    store: Store, registry: StaticRegistry
) -> None:
    hub = EventHub(store, registry, settings=HubSettings(watcher_buffer=5, batch_size=20))
    await hub.start()
    adapter = ScriptedAdapter(mesh="toy", stream_id="s")
    server = await serve(adapter)
    try:
        registry.add(server.address, "toy")
        slow = hub.watch()
        fast = hub.watch()
        await adapter.emit(1)
        assert len(await take(slow, 1)) == 1  # both are now live
        assert len(await take(fast, 1)) == 1
        await adapter.emit(200)
        fast_got = await take(fast, 200)
        await asyncio.sleep(0.2)  # the slow watcher overflowed meanwhile
        slow_got = await take(slow, 200)
        assert [e.event.sequence for e in fast_got] == list(range(2, 202))
        assert [e.event.sequence for e in slow_got] == list(range(2, 202))
        await slow.aclose()  # type: ignore[attr-defined]
        await fast.aclose()  # type: ignore[attr-defined]
    finally:
        await hub.stop()
        await server.stop(grace_seconds=0)


async def test_removed_replica_is_no_longer_followed(
    store: Store, registry: StaticRegistry, hub: EventHub
) -> None:
    adapter = ScriptedAdapter(mesh="toy", stream_id="s")
    server = await serve(adapter)
    try:
        registry.add(server.address, "toy")
        await adapter.emit(3)

        async def three() -> bool:
            return len(await stored_pairs(store)) == 3

        await eventually(three)
        await registry.remove(server.address)
        assert hub.follower_status(server.address) is None
        await adapter.emit(3)
        await asyncio.sleep(0.3)
        assert len(await stored_pairs(store)) == 3

        registry.add(server.address, "toy")  # back at once: followed again, from the store

        async def six() -> bool:
            return len(await stored_pairs(store)) == 6

        await eventually(six)
        assert adapter.requests[-1] == 3
    finally:
        await server.stop(grace_seconds=0)


async def test_stop_ends_watches(store: Store, registry: StaticRegistry) -> None:
    hub = EventHub(store, registry, settings=FAST)
    await hub.start()
    watch = hub.watch()

    async def drain() -> list[StoredEvent]:
        return [e async for e in watch]

    draining = asyncio.ensure_future(drain())
    await asyncio.sleep(0.05)
    await hub.stop()
    assert await asyncio.wait_for(draining, 5) == []


@pytest.mark.postgres
async def test_two_hubs_on_one_postgres_store_each_event_once(fresh_postgres_url: str) -> None:
    stores = [open_store(fresh_postgres_url), open_store(fresh_postgres_url)]
    await stores[0].migrate()
    await stores[1].migrate()
    registries = [StaticRegistry(), StaticRegistry()]
    hubs = [EventHub(s, r, settings=FAST) for s, r in zip(stores, registries, strict=True)]
    adapters = [ScriptedAdapter(mesh="alpha", stream_id="a"), ScriptedAdapter(mesh="beta")]
    servers = [await serve(a) for a in adapters]
    try:
        for hub in hubs:
            await hub.start()
        watches = [hub.watch() for hub in hubs]
        collectors = [asyncio.ensure_future(take(watch, 600, within=30)) for watch in watches]

        async def live() -> bool:
            return all(hub.watcher_count == 1 for hub in hubs)

        await eventually(live)
        for registry in registries:
            for server, adapter in zip(servers, adapters, strict=True):
                registry.add(server.address, adapter.mesh)
        await asyncio.gather(*(adapter.emit(150) for adapter in adapters))
        for adapter in adapters:
            adapter.exhaust_after = 7  # both hubs reconnect often, racing each other
        await asyncio.gather(*(adapter.emit(150) for adapter in adapters))
        expected = sorted(
            [("alpha/a", n) for n in range(1, 301)] + [("beta/stream-1", n) for n in range(1, 301)]
        )

        async def all_stored() -> bool:
            return sorted(await stored_pairs(stores[0])) == expected

        await eventually(all_stored, within=30)
        pairs = await stored_pairs(stores[0])
        assert len(pairs) == len(set(pairs)) == 600
        # Each coordinator's watcher sees every event once, in cursor order, whoever stored it.
        for watch, collector in zip(watches, collectors, strict=True):
            got = await collector
            assert [e.cursor for e in got] == sorted({e.cursor for e in got})
            assert sorted((e.event.source, e.event.sequence) for e in got) == expected
            await watch.aclose()  # type: ignore[attr-defined]
    finally:
        for hub in hubs:
            await hub.stop()
        for registry in registries:
            await registry.close()
        for server in servers:
            await server.stop(grace_seconds=0)
        for store in stores:
            await store.close()


async def test_an_adapter_that_never_lets_us_progress_is_retried_with_backoff(
    store: Store, registry: StaticRegistry, hub: EventHub
) -> None:
    adapter = ScriptedAdapter(mesh="toy", stream_id="s")
    await adapter.emit(3)
    adapter.exhaust_after = 0  # every stream ends before its first event
    server = await serve(adapter)
    try:
        registry.add(server.address, "toy")
        await asyncio.sleep(1.0)
        # Backoff (0.02 s doubling to 0.2 s) allows about a dozen attempts; a hot loop, hundreds.
        assert 2 <= len(adapter.requests) <= 40
        status = hub.follower_status(server.address)
        assert status is not None and status.last_error.startswith("RESOURCE_EXHAUSTED")
        adapter.exhaust_after = None

        async def three() -> bool:
            return len(await stored_pairs(store)) == 3

        await eventually(three)
        # Between attempts the follower was connected for a moment each time; the error stayed
        # shown until a stored event proved the feed works.
        status = hub.follower_status(server.address)
        assert status is not None and status.last_error == ""
    finally:
        await server.stop(grace_seconds=0)


async def test_a_reconnected_idle_stream_clears_its_error_only_after_staying_up(
    store: Store, registry: StaticRegistry
) -> None:
    adapter = ScriptedAdapter(mesh="toy", stream_id="s1")
    server = await serve(adapter)
    settings = HubSettings(
        backoff_initial_seconds=0.02, backoff_max_seconds=0.2, error_clear_seconds=1.5
    )
    hub = EventHub(store, registry, settings=settings)
    await hub.start()
    try:
        registry.add(server.address, "toy")

        async def reconnected() -> bool:
            return len(adapter.requests) == 1

        await eventually(reconnected)
        await adapter.reset_log("s2")  # the open stream ends: UNAVAILABLE, event log reset

        async def errored_and_reconnected() -> bool:
            status = hub.follower_status(server.address)
            return (
                status is not None
                and status.connected
                and status.source == "toy/s2"
                and len(adapter.requests) == 2
            )

        await eventually(errored_and_reconnected)
        status = hub.follower_status(server.address)
        assert status is not None and status.last_error == "UNAVAILABLE: event log reset"

        async def cleared() -> bool:
            shown = hub.follower_status(server.address)
            return shown is not None and shown.connected and shown.last_error == ""

        await eventually(cleared)
        assert len(adapter.requests) == 2  # it stayed connected; nothing failed again
    finally:
        await hub.stop()
        await server.stop(grace_seconds=0)


@pytest.mark.postgres
async def test_watchers_see_events_another_coordinator_stored(fresh_postgres_url: str) -> None:
    stores = [open_store(fresh_postgres_url), open_store(fresh_postgres_url)]
    for store in stores:
        await store.migrate()
    registries = [StaticRegistry(), StaticRegistry()]
    quiet = HubSettings(backoff_initial_seconds=0.02, shared_poll_seconds=3600)
    polling = HubSettings(backoff_initial_seconds=0.02, shared_poll_seconds=0.1)
    ours = EventHub(stores[0], registries[0], settings=quiet)
    theirs = EventHub(stores[1], registries[1], settings=quiet)
    adapter = ScriptedAdapter(mesh="alpha", stream_id="a")
    only_theirs = ScriptedAdapter(mesh="beta", stream_id="b")
    servers = [await serve(adapter), await serve(only_theirs)]
    await ours.start()
    await theirs.start()
    watch = ours.watch()
    collector = asyncio.ensure_future(take(watch, 10))
    try:
        await eventually(lambda: _true(ours.watcher_count == 1))
        registries[1].add(servers[0].address, "alpha")
        await adapter.emit(10)
        await eventually(lambda: _stored_count(stores[1], 10))
        # Our hub starts following only now: the store is ahead, so nothing comes through our
        # stream; the events still reach our watcher, in order.
        registries[0].add(servers[0].address, "alpha")
        got = await collector
        assert [e.event.sequence for e in got] == list(range(1, 11))
        await watch.aclose()  # type: ignore[attr-defined]

        await ours.stop()
        ours = EventHub(stores[0], registries[0], settings=polling)
        await ours.start()
        watch = ours.watch(mesh="beta")
        collector = asyncio.ensure_future(take(watch, 5))
        await eventually(lambda: _true(ours.watcher_count == 1))
        registries[1].add(servers[1].address, "beta")  # an adapter only they follow
        await only_theirs.emit(5)
        got = await collector
        assert [e.event.source for e in got] == ["beta/b"] * 5
        await watch.aclose()  # type: ignore[attr-defined]
    finally:
        collector.cancel()
        await ours.stop()
        await theirs.stop()
        for registry in registries:
            await registry.close()
        for server in servers:
            await server.stop(grace_seconds=0)
        for store in stores:
            await store.close()


async def _true(value: bool) -> bool:
    return value


async def _stored_count(store: Store, count: int) -> bool:
    return len(await stored_pairs(store)) == count
