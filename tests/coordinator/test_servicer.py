"""CoordinatorService against the real adapter kit (the toy mesh with a scripted executor)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import grpc
import grpc.aio
import pytest
from google.protobuf import json_format

from adapters.kit.model.server_patterns import parse_server_patterns
from coordinator.server import messages
from coordinator.server.registry import Registry
from coordinator.server.routing import Router
from coordinator.server.servicer import CoordinatorServicer
from coordinator.server.settings import CoordinatorSettings, StaticAdapter
from coordinator.store import EventRecord, OperationRecord, StoredEvent, open_store
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from meshplane.coordinator.v1 import coordinator_pb2_grpc as cpb_grpc
from serving import GrpcServer, ServerConfig
from serving.tls import dial
from tests.coordinator.identities import CALLERS, channel_as, write_token_file
from tests.coordinator.routing_harness import (
    Client,
    code_of,
    coordinator,
    fakes,
    make_settings,
    static,
)
from tests.kit.toy_adapter import TERMINAL, Harness, Script, ScriptedExecutor, toy_adapter

SERVICE = "meshplane.coordinator.v1.CoordinatorService"


def test_servicer_implements_exactly_the_service_methods() -> None:
    descriptor = cpb.DESCRIPTOR.services_by_name["CoordinatorService"]
    declared = {method.name for method in descriptor.methods}
    generated = cpb_grpc.CoordinatorServiceServicer
    implemented = {
        name
        for name in dir(CoordinatorServicer)
        if not name.startswith("_")
        and callable(getattr(CoordinatorServicer, name))
        and getattr(CoordinatorServicer, name) is not getattr(generated, name, None)
    }
    assert implemented == declared


_KUBECONFIG = """
apiVersion: v1
kind: Config
current-context: east
clusters: [{name: east, cluster: {server: "https://127.0.0.1:6443"}}]
contexts: [{name: east, context: {cluster: east, user: ada}}]
users: [{name: ada, user: {token: secret-token-east}}]
"""


def _toy_settings(tmp_path: Path, toy: Harness) -> CoordinatorSettings:
    return make_settings(
        tmp_path, adapters=(StaticAdapter(mesh="toy", address=toy.adapter.address),)
    )


async def _wait_state(client: Client, operation_id: str, *states: int) -> cpb.OperationRecord:
    async with asyncio.timeout(10):
        while True:
            got = await client.stub.GetOperation(cpb.GetOperationRequest(operation_id=operation_id))
            if got.operation.operation.state in states:
                record: cpb.OperationRecord = got.operation
                return record
            await asyncio.sleep(0.02)


async def test_apply_records_the_operation_and_get_refreshes_it(tmp_path: Path) -> None:
    accepting = toy_adapter(
        allow_request_kubeconfigs=True,
        allowed_cluster_servers=parse_server_patterns("127.0.0.1:6443"),
    )
    async with accepting as toy, coordinator(_toy_settings(tmp_path, toy)) as client:
        await client.wait_serving(toy.adapter.address)
        answer = await client.stub.ApplyOperation(
            cpb.ApplyOperationRequest(
                mesh="toy",
                request=apb.ApplyOperationRequest(
                    operation="install",
                    username="ada",
                    parameters={"profile": "demo"},
                    clusters=[apb.Cluster(name="east", kubeconfig=_KUBECONFIG)],
                ),
            )
        )
        operation_id = answer.operation_id
        assert answer.operation.mesh == "toy"
        assert answer.operation.adapter_address == toy.adapter.address
        assert answer.operation.operation.operation_id == operation_id
        assert answer.operation.operation.parameters["profile"] == "demo"

        stored = await client.coordinator.store.get_operation(operation_id)
        assert stored is not None and stored.username == "ada"
        assert "secret-token" not in repr(stored.request)  # kubeconfigs never reach the store

        final = await _wait_state(client, operation_id, *TERMINAL)
        assert final.operation.state == apb.OPERATION_STATE_SUCCEEDED
        assert final.operation.cluster_results[0].cluster == "east"
        assert final.operation.cluster_results[0].objects_applied == 3
        assert final.operation.end_time.seconds > 0
        refreshed = await client.coordinator.store.get_operation(operation_id)
        assert refreshed is not None and refreshed.state == "succeeded"


async def test_get_returns_the_stored_record_when_the_replica_is_gone(tmp_path: Path) -> None:
    async with (
        toy_adapter(stop=False) as toy,
        coordinator(_toy_settings(tmp_path, toy)) as client,
    ):
        await client.wait_serving(toy.adapter.address)
        answer = await client.stub.ApplyOperation(
            cpb.ApplyOperationRequest(
                mesh="toy", request=apb.ApplyOperationRequest(operation="install")
            )
        )
        await _wait_state(client, answer.operation_id, *TERMINAL)
        await toy.adapter.stop()
        got = await client.stub.GetOperation(
            cpb.GetOperationRequest(operation_id=answer.operation_id), timeout=5
        )
        assert got.operation.operation.state == apb.OPERATION_STATE_SUCCEEDED
        assert got.operation.adapter_address == toy.adapter.address

        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await client.stub.GetOperation(cpb.GetOperationRequest(operation_id="nope"))
        assert code_of(unknown.value) == grpc.StatusCode.NOT_FOUND


async def test_cancel_is_forwarded_to_the_running_replica(tmp_path: Path) -> None:
    gate = asyncio.Event()
    executor = ScriptedExecutor(scripts={"*": Script(gate=gate)})
    async with (
        toy_adapter(executor=executor) as toy,
        coordinator(_toy_settings(tmp_path, toy)) as client,
    ):
        await client.wait_serving(toy.adapter.address)
        answer = await client.stub.ApplyOperation(
            cpb.ApplyOperationRequest(
                mesh="toy", request=apb.ApplyOperationRequest(operation="install")
            )
        )
        await executor.wait_started(answer.operation_id)
        await client.stub.CancelOperation(
            cpb.CancelOperationRequest(operation_id=answer.operation_id)
        )
        final = await _wait_state(client, answer.operation_id, apb.OPERATION_STATE_CANCELLED)
        assert final.operation.state == apb.OPERATION_STATE_CANCELLED
        assert executor.executions[0].cancelled


async def test_versions_and_status_are_forwarded(tmp_path: Path) -> None:
    async with toy_adapter() as toy, coordinator(_toy_settings(tmp_path, toy)) as client:
        await client.wait_serving(toy.adapter.address)
        versions = await client.stub.ListMeshVersions(cpb.ListMeshVersionsRequest(mesh="toy"))
        assert [v.version for v in versions.versions][:1] == ["1.30.3"]
        assert versions.default_version == "1.30.3"
        status = await client.stub.GetMeshStatus(
            cpb.GetMeshStatusRequest(
                mesh="toy", request=apb.GetMeshStatusRequest(namespace="toy-system")
            )
        )
        assert status.mesh == "toy"
        assert status.status.installed and status.status.version == "1.30.3"
        assert status.status.namespace == "toy-system"
        catalogue = await client.stub.ListOperations(cpb.ListOperationsRequest(mesh="toy"))
        assert {o.id for o in catalogue.catalogues[0].operations} == {
            "install",
            "sample",
            "policy",
            "custom",
        }
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await client.stub.ListMeshVersions(cpb.ListMeshVersionsRequest())
        assert code_of(missing.value) == grpc.StatusCode.INVALID_ARGUMENT


async def test_history_pages_and_filters(tmp_path: Path) -> None:
    async with toy_adapter() as toy, coordinator(_toy_settings(tmp_path, toy)) as client:
        await client.wait_serving(toy.adapter.address)
        operator = channel_as(client.coordinator.address, CALLERS["operator"])
        for index in range(5):
            # ada (admin) installs and deploys samples; otto (operator) deploys samples.
            as_otto = index >= 3
            stub = cpb_grpc.CoordinatorServiceStub(operator) if as_otto else client.stub
            await stub.ApplyOperation(
                cpb.ApplyOperationRequest(
                    mesh="toy",
                    request=apb.ApplyOperationRequest(
                        operation="install" if index == 1 else "sample",
                        operation_id=f"op-{index}",
                    ),
                )
            )
        await operator.close()
        seen: list[str] = []
        token = ""
        while True:
            page = await client.stub.ListOperationHistory(
                cpb.ListOperationHistoryRequest(page_size=2, page_token=token)
            )
            assert len(page.operations) <= 2
            seen += [r.operation.operation_id for r in page.operations]
            token = page.next_page_token
            if not token:
                break
        assert sorted(seen) == [f"op-{i}" for i in range(5)]
        assert len(seen) == 5
        by_user = await client.stub.ListOperationHistory(
            cpb.ListOperationHistoryRequest(username="otto")
        )
        assert {r.operation.operation_id for r in by_user.operations} == {"op-3", "op-4"}
        installs = await client.stub.ListOperationHistory(
            cpb.ListOperationHistoryRequest(operation="install", mesh="toy")
        )
        assert {r.operation.operation_id for r in installs.operations} == {"op-1"}
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await client.stub.ListOperationHistory(
                cpb.ListOperationHistoryRequest(page_token="not a token")
            )
        assert code_of(bad.value) == grpc.StatusCode.INVALID_ARGUMENT


async def test_watch_events_through_the_coordinator(tmp_path: Path) -> None:
    executor = ScriptedExecutor(scripts={"*": Script(events=2)})
    async with (
        toy_adapter(executor=executor) as toy,
        coordinator(_toy_settings(tmp_path, toy)) as client,
    ):
        if client.coordinator.hub is None:
            pytest.skip("the event hub is not installed")
        await client.wait_serving(toy.adapter.address)
        answer = await client.stub.ApplyOperation(
            cpb.ApplyOperationRequest(
                mesh="toy", request=apb.ApplyOperationRequest(operation="install")
            )
        )
        received: list[cpb.WatchEventsResponse] = []
        call = client.stub.WatchEvents(
            cpb.WatchEventsRequest(mesh="toy", operation_id=answer.operation_id)
        )
        async with asyncio.timeout(10):
            async for response in call:
                received.append(response)
                if response.event.operation_state in TERMINAL:
                    break
        call.cancel()
        cursors = [r.cursor for r in received]
        assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
        assert all(r.mesh == "toy" for r in received)
        assert all(r.adapter_address == toy.adapter.address for r in received)
        assert all(r.event.operation_id == answer.operation_id for r in received)
        assert any("step 2" in r.event.summary for r in received)
        # ListAdapters shows how far the coordinator has stored this replica's events.
        highest = max(r.event.sequence for r in received)
        replica = await client.wait_replica(
            toy.adapter.address, lambda r: r is not None and r.last_event_sequence >= highest
        )
        assert replica is not None
        assert replica.event_stream_id == received[0].event.event_stream_id


class _Events:
    """An event source with fixed history: what WatchEvents makes of the hub's records."""

    def __init__(self, events: list[StoredEvent]) -> None:
        self.events = events
        self.asked: list[dict[str, object]] = []

    async def _replay(self, after_cursor: int) -> AsyncIterator[StoredEvent]:
        for stored in self.events:
            if stored.cursor > after_cursor:
                yield stored

    def watch(
        self,
        *,
        mesh: str | None,
        operation_id: str | None,
        min_severity: str | None,
        after_cursor: int,
    ) -> AsyncIterator[StoredEvent]:
        self.asked.append(
            {"mesh": mesh, "op": operation_id, "severity": min_severity, "after": after_cursor}
        )
        return self._replay(after_cursor)


async def test_watch_events_converts_stored_events(tmp_path: Path) -> None:
    event = apb.Event(
        sequence=7,
        mesh="istio",
        operation_id="op-1",
        severity=apb.EVENT_SEVERITY_WARNING,
        summary="slow rollout",
        event_stream_id="s-1",
    )
    stored = StoredEvent(
        cursor=42,
        event=EventRecord(
            source="istio/s-1",
            sequence=7,
            mesh="istio",
            operation_id="op-1",
            severity="warning",
            timestamp=datetime.now(UTC),
            payload=json_format.MessageToDict(event, preserving_proto_field_name=True),
        ),
    )
    events = _Events([stored])
    store = open_store(str(tmp_path / "c.db"))
    await store.migrate()
    # WatchEvents refuses a cursor beyond the store's newest; give it cursors up to 3.
    await store.append_events([replace(stored.event, sequence=n) for n in (1, 2, 3)])
    registry = Registry(lambda address: dial(address, tls=None))
    servicer = CoordinatorServicer(
        registry=registry, router=Router(registry), store=store, events=events
    )
    server = GrpcServer(ServerConfig(host="127.0.0.1", port=0, grace_seconds=0))
    server.add_service(cpb_grpc.add_CoordinatorServiceServicer_to_server, servicer, SERVICE)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = cpb_grpc.CoordinatorServiceStub(channel)
            responses = [
                r
                async for r in stub.WatchEvents(
                    cpb.WatchEventsRequest(
                        mesh="ISTIO ", min_severity=apb.EVENT_SEVERITY_WARNING, after_cursor=3
                    )
                )
            ]
        assert events.asked == [{"mesh": "istio", "op": None, "severity": "warning", "after": 3}]
        assert len(responses) == 1
        assert responses[0].cursor == 42 and responses[0].mesh == "istio"
        assert responses[0].event == event
        assert responses[0].adapter_address == ""  # no such replica is registered
    finally:
        await server.stop(grace_seconds=0)
        await registry.close()
        await store.close()


def test_records_round_trip_through_messages() -> None:
    operation = apb.Operation(
        operation_id="op-9",
        operation="install",
        mesh="istio",
        mesh_version="1.30.3",
        namespace="istio-system",
        parameters={"profile": "demo"},
        username="ada",
        state=apb.OPERATION_STATE_FAILED,
        cluster_results=[
            apb.ClusterResult(
                cluster="east",
                state=apb.OPERATION_STATE_FAILED,
                error=apb.ErrorDetail(code="WORKLOAD_NOT_READY", message="istiod not ready"),
            )
        ],
        error=apb.ErrorDetail(code="WORKLOAD_NOT_READY", message="istiod not ready"),
        clusters=["east"],
        attempt=2,
    )
    operation.create_time.FromDatetime(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    operation.end_time.FromDatetime(datetime(2026, 1, 2, 3, 9, 5, tzinfo=UTC))
    record = messages.record_from_operation(operation, mesh="istio", adapter_address="a:1")
    assert isinstance(record, OperationRecord)
    assert record.state == "failed" and record.error == {
        "code": "WORKLOAD_NOT_READY",
        "message": "istiod not ready",
    }
    assert messages.operation_from_record(record) == operation
    assert messages.record_to_pb(record).adapter_address == "a:1"


async def test_coordinator_command_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    async with fakes(("istio", "cli")) as (adapter,):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys; from meshplane_cli.main import main; sys.exit(main())",
            "coordinator",
            "--port=0",
            f"--data-dir={tmp_path}",
            f"--token-auth-file={write_token_file(tmp_path / 'auth')}",
            "--log-level=warning",
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "MESHPLANE_ADAPTERS": f"istio={adapter.address}"},
        )
        try:
            assert process.stdout is not None
            line = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
            assert line["adapters"] == [f"istio={adapter.address}"]
            assert (tmp_path / "coordinator.db").exists()
            async with channel_as(line["grpc"]) as channel:
                stub = cpb_grpc.CoordinatorServiceStub(channel)
                async with asyncio.timeout(20):
                    while True:
                        listed = await stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=5)
                        states = [r.state for a in listed.adapters for r in a.replicas]
                        if states == [cpb.REPLICA_STATE_SERVING]:
                            break
                        await asyncio.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 30) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_a_client_chosen_id_is_not_reused_across_meshes_or_requests(tmp_path: Path) -> None:
    async with (
        fakes(("istio", "a"), ("linkerd", "b")) as (istio, linkerd),
        coordinator(
            make_settings(
                tmp_path,
                adapters=(
                    StaticAdapter(mesh="istio", address=istio.address),
                    StaticAdapter(mesh="linkerd", address=linkerd.address),
                ),
            )
        ) as client,
    ):
        await client.wait_serving(istio.address, linkerd.address)
        first = cpb.ApplyOperationRequest(
            mesh="istio",
            request=apb.ApplyOperationRequest(operation_id="shared-1", operation="install"),
        )
        answer = await client.stub.ApplyOperation(first)
        again = await client.stub.ApplyOperation(first)  # the same request: idempotent
        assert again.operation_id == answer.operation_id == "shared-1"

        with pytest.raises(grpc.aio.AioRpcError) as other_mesh:
            await client.stub.ApplyOperation(
                cpb.ApplyOperationRequest(
                    mesh="linkerd",
                    request=apb.ApplyOperationRequest(operation_id="shared-1", operation="install"),
                )
            )
        assert code_of(other_mesh.value) == grpc.StatusCode.FAILED_PRECONDITION
        details = other_mesh.value.details()
        assert "'shared-1'" in details and "istio" in details and "'install'" in details
        assert "choose another operation_id" in details
        assert linkerd.fake.calls("ApplyOperation") == []  # the second adapter never ran it

        with pytest.raises(grpc.aio.AioRpcError) as other_request:
            await client.stub.ApplyOperation(
                cpb.ApplyOperationRequest(
                    mesh="istio",
                    request=apb.ApplyOperationRequest(
                        operation_id="shared-1", operation="install", delete=True
                    ),
                )
            )
        assert code_of(other_request.value) == grpc.StatusCode.FAILED_PRECONDITION
        assert "delete" in other_request.value.details()
        assert len(istio.fake.calls("ApplyOperation")) == 2

        stored = await client.coordinator.store.get_operation("shared-1")
        assert stored is not None and stored.mesh == "istio"
        assert stored.adapter == istio.address


async def test_watch_from_a_cursor_beyond_the_store_is_out_of_range(tmp_path: Path) -> None:
    async with (
        fakes(("istio", "a")) as (istio,),
        coordinator(make_settings(tmp_path, adapters=static(istio))) as client,
    ):
        if client.coordinator.hub is None:
            pytest.skip("the event hub is not installed")
        await client.wait_serving(istio.address)
        newest = await client.coordinator.store.latest_cursor()
        call = client.stub.WatchEvents(cpb.WatchEventsRequest(after_cursor=newest + 5))
        with pytest.raises(grpc.aio.AioRpcError) as beyond:
            async with asyncio.timeout(5):
                async for _ in call:
                    pass
        assert code_of(beyond.value) == grpc.StatusCode.OUT_OF_RANGE
        details = beyond.value.details()
        assert f"cursor {newest + 5} is beyond the newest event {newest}" in details
        assert "resume with 0" in details


async def test_a_dry_run_is_never_sent_to_an_adapter_that_does_not_honour_one(
    tmp_path: Path,
) -> None:
    """An adapter built before ApplyOperationRequest.dry_run would ignore it and apply: without
    the "dry-run" capability the coordinator refuses, through its service and its pass-through,
    and the adapter never sees the request."""
    async with fakes(("toy", "old")) as (old,):
        settings = make_settings(tmp_path, adapters=static(old))
        async with coordinator(settings) as client:
            await client.wait_serving(old.address)
            request = apb.ApplyOperationRequest(operation="install", dry_run=True)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await client.stub.ApplyOperation(
                    cpb.ApplyOperationRequest(mesh="toy", request=request), timeout=10
                )
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "'dry-run' capability" in (refused.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as passed:
                await client.adapter_stub.ApplyOperation(
                    request, metadata=(("x-meshplane-mesh", "toy"),), timeout=10
                )
            assert passed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert old.fake.calls("ApplyOperation") == []
            assert old.fake.operations == {}
            history = await client.stub.ListOperationHistory(cpb.ListOperationHistoryRequest())
            assert list(history.operations) == []
