"""A Meshery server and the coordinator share one adapter: Meshery calls the adapter directly
(`meshes.MeshService`), and the coordinator, following the adapter's native event stream, records
Meshery's operation like any other (history, GetOperation, WatchEvents): one runner, one journal,
one event log behind both contracts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import grpc.aio
import pytest

from kubesim.harness import RunningSim, running_kubesim
from kubesim.server import SimConfig
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from meshplane.meshery import meshops_pb2 as meshes
from meshplane.meshery import meshops_pb2_grpc as meshes_grpc
from tests.e2e.coordinator_harness import (
    Adapter,
    CoordinatorUnderTest,
    Watcher,
    coordinator_settings,
    finished,
)
from tests.e2e.test_coordinator_e2e import istio_adapter
from tests.plugins.static_http import StaticHttpServer

ServerFactory = Callable[[Path], StaticHttpServer]


@pytest.fixture
def sim() -> Iterator[RunningSim]:
    with running_kubesim(SimConfig(ready_delay=0.05, bookmark_seconds=0.2)) as running:
        yield running


@pytest.fixture
async def adapter(
    sim: RunningSim, tmp_path: Path, static_http_server: ServerFactory
) -> AsyncIterator[Adapter]:
    started = istio_adapter(sim, tmp_path, static_http_server)
    await started.start()
    yield started
    await started.stop()


@pytest.mark.timeout(120)
async def test_the_coordinator_records_what_meshery_did_on_its_adapter(
    adapter: Adapter, tmp_path: Path
) -> None:
    coordinator = CoordinatorUnderTest(coordinator_settings(tmp_path / "coord", [adapter]))
    await coordinator.start()
    try:
        await coordinator.wait_serving("istio")
        operation_id = str(uuid.uuid4())
        watcher = Watcher(coordinator.stub, cpb.WatchEventsRequest(operation_id=operation_id))
        watcher.start()
        try:
            async with grpc.aio.insecure_channel(adapter.address) as channel:
                reply = await meshes_grpc.MeshServiceStub(channel).ApplyOperation(
                    meshes.ApplyRuleRequest(
                        opName="install",
                        operation_id=operation_id,
                        version="1.1.0",
                        username="meshery-admin",
                    ),
                    timeout=10,
                )
            assert (reply.operation_id, reply.error) == (operation_id, "")
            await watcher.wait_for(finished(operation_id, apb.OPERATION_STATE_SUCCEEDED), 60)
        finally:
            await watcher.stop()
        assert {r.adapter_address for r in watcher.received} == {adapter.address}
        assert watcher.received[0].event.summary == "install accepted, attempt 1"

        record = await coordinator.stub.GetOperation(
            cpb.GetOperationRequest(operation_id=operation_id), timeout=5
        )
        operation = record.operation.operation
        assert (operation.operation, operation.mesh_version, operation.username) == (
            "install",
            "1.1.0",
            "meshery-admin",
        )
        assert operation.state == apb.OPERATION_STATE_SUCCEEDED
        history = await coordinator.stub.ListOperationHistory(
            cpb.ListOperationHistoryRequest(mesh="istio"), timeout=5
        )
        assert [r.operation.operation_id for r in history.operations] == [operation_id]
    finally:
        await coordinator.stop()
