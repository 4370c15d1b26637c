"""Retention: the store prunes events and history by age and by count (SQLite and PostgreSQL),
the coordinator's owned task applies its flags, and WatchEvents below the pruned cursor is
OUT_OF_RANGE with how to resume.

Before: nothing ever pruned the store (398 MB after 35 minutes of events).
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import grpc
import grpc.aio
import pytest

from coordinator.server.assembly import build_coordinator
from coordinator.server.retention import Pruner, RetentionPolicy
from coordinator.server.settings import CoordinatorSettings, add_arguments, settings_from_args
from coordinator.store import Store
from coordinator.store.sql_store import PRUNE_BATCH
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from meshplane.coordinator.v1 import coordinator_pb2_grpc as cpb_grpc
from serving.command_settings import SettingsError
from tests.coordinator.identities import channel_as, write_token_file
from tests.coordinator.test_store import T0, keys, make_event, make_operation


async def test_events_beyond_the_count_go_oldest_first_and_never_come_back(store: Store) -> None:
    events = [make_event("istio/a", n) for n in range(1, 11)] + [make_event("linkerd/b", 1)]
    stored = await store.append_events(events)

    assert await store.prune_events(keep=4) == 7
    assert keys(await store.events_after(0)) == [
        ("istio/a", 8),
        ("istio/a", 9),
        ("istio/a", 10),
        ("linkerd/b", 1),
    ]
    assert await store.pruned_through_cursor() == stored[6].cursor
    assert await store.append_events(events[:7]) == []  # a lagging replay stores nothing
    assert await store.prune_events(keep=4) == 0
    counts = await store.row_counts()
    assert (counts.events, counts.operations) == (4, 0)


async def test_age_and_count_together_and_in_batches(store: Store) -> None:
    old = [make_event("istio/a", n, timestamp=T0 - timedelta(days=30)) for n in (1, 2)]
    many = [make_event("istio/a", n) for n in range(3, PRUNE_BATCH + 503)]
    await store.append_events(old + many)

    deleted = await store.prune_events(T0 - timedelta(days=7), keep=PRUNE_BATCH)

    assert deleted == 2 + 500
    remaining = (await store.row_counts()).events
    assert remaining == PRUNE_BATCH
    first = await store.events_after(0, None, 1)
    assert first[0].event.sequence == 503


async def test_history_pruned_by_age_and_by_count(store: Store) -> None:
    for n in range(1, 8):
        await store.save_operation(make_operation(n, created_at=T0 + timedelta(minutes=n)))
    stale = make_operation(99, created_at=T0 - timedelta(days=200))
    await store.save_operation(stale)

    assert await store.prune_operations(T0 - timedelta(days=90)) == 1
    assert await store.get_operation(stale.operation_id) is None
    assert await store.prune_operations(keep=3) == 4
    records, _ = await store.list_operations(page_size=10)
    assert [r.operation_id for r in records] == ["op-00007", "op-00006", "op-00005"]
    assert (await store.row_counts()).operations == 3


async def test_the_pruner_applies_its_policy(store: Store) -> None:
    await store.append_events([make_event("istio/a", n) for n in range(1, 6)])
    for n in range(1, 4):
        await store.save_operation(make_operation(n))
    seen = []
    pruner = Pruner(
        store,
        RetentionPolicy(event_count=2, history_count=1, interval_seconds=0.05),
        on_pruned=seen.append,
        clock=lambda: T0,
    )
    pruner.start()
    try:
        async with asyncio.timeout(10):
            while (await store.row_counts()).operations > 1:  # noqa: ASYNC110 - polling a task
                await asyncio.sleep(0.02)
    finally:
        await pruner.stop()
    assert (await store.row_counts()).events == 2
    assert sum(p.events for p in seen) == 3 and sum(p.operations for p in seen) == 2


def test_retention_flags() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)

    def parsed(*argv: str) -> CoordinatorSettings:
        return settings_from_args(parser.parse_args([*argv, "--allow-anonymous"]), environ={})

    defaults = parsed().retention
    assert defaults == RetentionPolicy()
    assert defaults.event_age == timedelta(hours=168) and defaults.event_count == 1_000_000
    chosen = parsed(
        "--event-retention",
        "24h",
        "--event-retention-count",
        "0",
        "--history-retention",
        "30d",
        "--history-retention-count",
        "500",
        "--retention-interval",
        "90s",
    ).retention
    assert chosen == RetentionPolicy(
        event_age=timedelta(hours=24),
        event_count=None,
        history_age=timedelta(days=30),
        history_count=500,
        interval_seconds=90,
    )
    env = settings_from_args(
        parser.parse_args(["--allow-anonymous"]),
        environ={"MESHPLANE_COORDINATOR_EVENT_RETENTION": "0"},
    )
    assert env.retention.event_age is None
    for bad in ("168", "1w", "-5h", "h", "1e3s"):
        with pytest.raises(SettingsError, match="--event-retention"):
            parsed(f"--event-retention={bad}")
    with pytest.raises(SettingsError, match="--event-retention-count"):
        parsed("--event-retention-count=-1")
    with pytest.raises(SettingsError, match="--retention-interval"):
        parsed("--retention-interval", "0")


async def test_watch_from_a_pruned_cursor_is_out_of_range_with_how_to_resume(
    tmp_path: Path,
) -> None:
    settings = CoordinatorSettings(
        port=0,
        data_dir=tmp_path,
        token_auth_file=write_token_file(tmp_path / "auth"),
        shutdown_grace_seconds=0.5,
        retention=RetentionPolicy(event_age=None, history_age=None),  # T0 is months ago
    )
    coordinator = build_coordinator(settings)
    await coordinator.start()
    try:
        store = coordinator.store
        stored = await store.append_events(
            [
                replace(make_event("istio/a", n), payload={"sequence": n, "summary": f"#{n}"})
                for n in range(1, 7)
            ]
        )
        await store.prune_events(keep=2)
        pruned = stored[3].cursor
        async with channel_as(coordinator.address) as channel:
            stub = cpb_grpc.CoordinatorServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                async for _ in stub.WatchEvents(
                    cpb.WatchEventsRequest(after_cursor=stored[0].cursor), timeout=5
                ):
                    pass
            assert raised.value.code() == grpc.StatusCode.OUT_OF_RANGE
            assert f"resume with after_cursor={pruned}" in raised.value.details()

            async def first_two(after: int) -> list[int]:
                got = []
                async for reply in stub.WatchEvents(
                    cpb.WatchEventsRequest(after_cursor=after), timeout=5
                ):
                    got.append(reply.event.sequence)
                    if len(got) == 2:
                        break
                return got

            assert await first_two(pruned) == [5, 6]
            assert await first_two(0) == [5, 6]
    finally:
        await coordinator.stop(0.5)
