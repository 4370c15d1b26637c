"""Issue 12's poisoned feed, over real processes: `meshplane coordinator` and an adapter process.

The hostile adapter is the scripted one run as a process: it emits "requested by <username>"
uncapped, as the kit did before events were capped, so a 5 MB username sent to it directly (an
attacker on loopback) makes an event larger than the coordinator reads from an adapter. Before: the
coordinator's feed for that adapter stopped for good, also across a restart, and ListAdapters
showed no error. Now: the gap is a WARNING event in its place, ListAdapters and /metrics show it,
and every later event reaches WatchEvents, before and after a coordinator restart. The real
Istio adapter process cuts the same event to its budget, so there is no gap at all.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from adapters.kit.testing import MESHPLANE, AdapterProcess
from kubesim.harness import running_kubesim
from kubesim.server import SimConfig
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.adapter.v1 import adapter_pb2_grpc as apb_grpc
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from meshplane.coordinator.v1 import coordinator_pb2_grpc as cpb_grpc
from serving.message_limits import MAX_EVENT_BYTES
from tests.coordinator.identities import channel_as, write_token_file
from tests.coordinator.metrics_scrape import Samples, scrape, value
from tests.e2e.coordinator_harness import (
    Adapter,
    CoordinatorUnderTest,
    Watcher,
    coordinator_settings,
    free_port_block,
)
from tests.e2e.test_coordinator_e2e import ServerFactory, istio_adapter
from tests.e2e.test_coordinator_e2e import install as install_request

FIVE_MB = "u" * (5 * 1024 * 1024)
SUCCEEDED = apb.OPERATION_STATE_SUCCEEDED


@pytest.fixture
def hostile_adapter(tmp_path: Path) -> Iterator[AdapterProcess]:
    command = [sys.executable, "-m", "tests.coordinator.scripted_adapter"]
    process = AdapterProcess([], tmp_path / "adapter.log", command=command).start()
    yield process
    process.stop()


class CoordinatorProcess:
    """`meshplane coordinator` on a data dir, restartable, with /metrics on a fixed port."""

    def __init__(self, tmp_path: Path, adapter: str) -> None:
        self.metrics_port = free_port_block(1)
        self.args = [
            "--port",
            "0",
            "--data-dir",
            str(tmp_path / "coordinator"),
            "--adapter",
            f"toy={adapter}",
            "--metrics-port",
            str(self.metrics_port),
            "--token-auth-file",
            str(write_token_file(tmp_path / "auth")),
        ]
        self.log = tmp_path / "coordinator.log"
        self.process: AdapterProcess | None = None
        self.channel: Any = None
        self.stub: Any = None

    async def start(self) -> None:
        process = AdapterProcess(self.args, self.log, command=[str(MESHPLANE), "coordinator"])
        self.process = await asyncio.to_thread(process.start)
        self.channel = channel_as(self.process.address)
        self.stub = cpb_grpc.CoordinatorServiceStub(self.channel)

    async def stop(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.process is not None:
            assert await asyncio.to_thread(self.process.stop) == 0
            self.process = None

    async def replica(self) -> cpb.AdapterReplica:
        listing = await self.stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=5)
        [adapter] = listing.adapters
        [replica] = adapter.replicas
        return replica

    async def serving(self) -> None:
        async with asyncio.timeout(20):
            while (await self.replica()).state != cpb.REPLICA_STATE_SERVING:  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    async def metrics(self) -> Samples:
        return await scrape(f"http://127.0.0.1:{self.metrics_port}/metrics")


@pytest.fixture
async def coordinator(
    tmp_path: Path, hostile_adapter: AdapterProcess
) -> AsyncIterator[CoordinatorProcess]:
    running = CoordinatorProcess(tmp_path, hostile_adapter.address)
    await running.start()
    yield running
    await running.stop()


def install(operation_id: str) -> cpb.ApplyOperationRequest:
    return cpb.ApplyOperationRequest(
        mesh="toy",
        request=apb.ApplyOperationRequest(operation_id=operation_id, operation="install"),
    )


def done(operation_id: str) -> Any:
    return lambda r: r.event.operation_id == operation_id and r.event.operation_state == SUCCEEDED


async def assert_the_gap_is_visible(coordinator: CoordinatorProcess, address: str) -> None:
    """ListAdapters and /metrics show the skipped event; the follower is still connected."""
    replica = await coordinator.replica()
    assert replica.skipped_events == 1
    assert "skipped event 3" in replica.event_feed_error
    assert replica.last_error.startswith("event feed: ")
    assert replica.last_event_sequence == 6

    samples = await coordinator.metrics()
    labels = {"mesh": "toy", "replica": address}
    prefix = "meshplane_coordinator"
    assert value(samples, f"{prefix}_follower_skipped_events_total", **labels) == 1
    assert value(samples, f"{prefix}_follower_errors_total", **labels) >= 1
    assert value(samples, f"{prefix}_follower_last_sequence", **labels) == 6
    assert value(samples, f"{prefix}_follower_connected", **labels) == 1
    assert value(samples, f"{prefix}_store_rows", table="events") == 6
    assert value(samples, f"{prefix}_store_rows", table="operations") >= 2
    service = "meshplane.coordinator.v1.CoordinatorService"
    applied = {"service": service, "method": "ApplyOperation", "code": "OK"}
    assert value(samples, f"{prefix}_grpc_requests_total", **applied) == 2
    assert value(samples, f"{prefix}_asyncio_tasks") > 0


async def test_a_5_mb_username_leaves_a_visible_gap_and_the_feed_goes_on(
    coordinator: CoordinatorProcess, hostile_adapter: AdapterProcess
) -> None:
    await coordinator.serving()
    address = hostile_adapter.address
    watcher = Watcher(coordinator.stub, cpb.WatchEventsRequest(mesh="toy")).start()
    try:
        await coordinator.stub.ApplyOperation(install("before"), timeout=10)
        await watcher.wait_for(done("before"), within=20)

        # The attack, straight to the adapter (its answer repeats the username: read it whole).
        options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        async with grpc.aio.insecure_channel(address, options=options) as channel:
            attack = apb.ApplyOperationRequest(
                operation_id="attack", operation="install", username=FIVE_MB
            )
            await apb_grpc.MeshAdapterServiceStub(channel).ApplyOperation(attack, timeout=30)

        await coordinator.stub.ApplyOperation(install("after"), timeout=10)
        await watcher.wait_for(done("after"), within=30)
        gap = await watcher.wait_for(lambda r: r.event.component == "coordinator/event-hub")
        assert gap.event.severity == apb.EVENT_SEVERITY_WARNING
        assert gap.event.sequence == 3  # the attack's "accepted" event
        assert f"skipped event 3 of the toy adapter at {address}" in gap.event.summary
        assert "RESOURCE_EXHAUSTED" in gap.event.details
        assert gap.adapter_address == address
        assert [r.event.sequence for r in watcher.received] == [1, 2, 3, 4, 5, 6]
        assert watcher.received[3].event.operation_id == "attack"  # its outcome still arrives

        await assert_the_gap_is_visible(coordinator, address)
    finally:
        await watcher.stop()

    # Restarted on the same store: no re-read of the poisoned event, the gap still in place.
    await coordinator.stop()
    await coordinator.start()
    await coordinator.serving()
    await coordinator.stub.ApplyOperation(install("after-restart"), timeout=10)
    replay = Watcher(coordinator.stub, cpb.WatchEventsRequest(mesh="toy")).start()
    try:
        await replay.wait_for(done("after-restart"), within=30)
        assert [r.event.sequence for r in replay.received] == list(range(1, 9))
        assert replay.received[2].event.component == "coordinator/event-hub"
        replica = await coordinator.replica()
        assert (replica.skipped_events, replica.event_feed_error) == (0, "")
        samples = await coordinator.metrics()
        labels = {"mesh": "toy", "replica": hostile_adapter.address}
        assert value(samples, "meshplane_coordinator_follower_last_sequence", **labels) == 8
    finally:
        await replay.stop()


@pytest.fixture
async def istio(tmp_path: Path, static_http_server: ServerFactory) -> AsyncIterator[Adapter]:
    with running_kubesim(SimConfig(ready_delay=0.05, bookmark_seconds=0.2)) as sim:
        adapter = istio_adapter(sim, tmp_path, static_http_server)
        await adapter.start()
        try:
            yield adapter
        finally:
            await adapter.stop()


async def test_the_istio_adapter_caps_the_attack_event_and_the_feed_goes_on(
    istio: Adapter, tmp_path: Path
) -> None:
    coordinator = CoordinatorUnderTest(coordinator_settings(tmp_path / "coordinator", [istio]))
    await coordinator.start()
    try:
        await coordinator.wait_serving("istio")
        watcher = Watcher(coordinator.stub, cpb.WatchEventsRequest(mesh="istio")).start()
        options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        async with grpc.aio.insecure_channel(istio.address, options=options) as channel:
            stub = apb_grpc.MeshAdapterServiceStub(channel)
            # 5 MB: more than one operation record may hold, refused before anything runs.
            attack = install_request("attack-5mb")
            attack.username = FIVE_MB
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ApplyOperation(attack, timeout=30)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert len(refused.value.details()) < 400
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await stub.GetOperation(apb.GetOperationRequest(operation_id="attack-5mb"))
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            # 1 MB: recorded, unless request bounds refuse it at the door; its event is cut.
            attack = install_request("attack")
            attack.username = "u" * (1024 * 1024)
            try:
                await stub.ApplyOperation(attack, timeout=30)
                accepted = True
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
                accepted = False
        await coordinator.apply("istio", install_request("after-attack"))
        try:
            await watcher.wait_for(done("after-attack"), within=60)
            if accepted:
                [event] = [
                    r.event
                    for r in watcher.received
                    if r.event.operation_id == "attack" and "accepted" in r.event.summary
                ]
                assert event.details.startswith("requested by uuuu")
                assert "… [truncated " in event.details
                assert event.ByteSize() <= MAX_EVENT_BYTES
        finally:
            await watcher.stop()
        listing = await coordinator.stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=5)
        [replica] = listing.adapters[0].replicas
        assert (replica.event_feed_error, replica.skipped_events) == ("", 0)
        replay = await istio.replay()
        received = [(r.event.event_stream_id, r.event.sequence) for r in watcher.received]
        assert received == [(e.event_stream_id, e.sequence) for e in replay][: len(received)]
    finally:
        await coordinator.stop()
