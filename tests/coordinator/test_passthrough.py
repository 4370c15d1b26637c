"""MeshAdapterService called on the coordinator with ``x-meshplane-mesh``: passed through."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import grpc.aio
import pytest

from coordinator.server.passthrough import MESH_METADATA_KEY
from coordinator.server.settings import StaticAdapter
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from tests.coordinator.routing_harness import code_of, coordinator, fakes, make_settings, static
from tests.kit.toy_adapter import TERMINAL, Script, ScriptedExecutor, toy_adapter

ISTIO = ((MESH_METADATA_KEY, "istio"),)


async def test_unary_calls_pass_through_with_metadata_and_deadline(tmp_path: Path) -> None:
    async with (
        fakes(("istio", "a"), ("linkerd", "l")) as (istio, linkerd),
        coordinator(make_settings(tmp_path, adapters=static(istio, linkerd))) as client,
    ):
        await client.wait_serving(istio.address, linkerd.address)
        info = await client.adapter_stub.GetInfo(
            apb.GetInfoRequest(),
            metadata=(*ISTIO, ("x-request-id", "r-1")),
            timeout=5,
        )
        assert info.mesh == "istio" and info.adapter_version == "1.0.0+a"
        other = await client.adapter_stub.GetInfo(
            apb.GetInfoRequest(), metadata=((MESH_METADATA_KEY, "linkerd"),)
        )
        assert other.mesh == "linkerd"

        forwarded = [r for r in istio.fake.received if r.metadata.get("x-request-id") == "r-1"]
        assert len(forwarded) == 1
        assert MESH_METADATA_KEY not in forwarded[0].metadata

        istio.fake.delay = 5.0
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await client.adapter_stub.ListMeshVersions(
                apb.ListMeshVersionsRequest(), metadata=ISTIO, timeout=0.3
            )
        assert code_of(late.value) == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_missing_or_unknown_mesh_is_rejected(tmp_path: Path) -> None:
    async with (
        fakes(("istio", "a")) as (istio,),
        coordinator(make_settings(tmp_path, adapters=static(istio))) as client,
    ):
        await client.wait_serving(istio.address)
        # Tagged so the check below ignores the health and registration calls that race with it.
        tag = ("x-request-id", "rejected-by-the-coordinator")
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await client.adapter_stub.GetInfo(apb.GetInfoRequest(), metadata=(tag,))
        assert code_of(missing.value) == grpc.StatusCode.INVALID_ARGUMENT
        assert MESH_METADATA_KEY in missing.value.details()

        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await client.adapter_stub.GetInfo(
                apb.GetInfoRequest(), metadata=((MESH_METADATA_KEY, "kuma"), tag)
            )
        assert code_of(unknown.value) == grpc.StatusCode.NOT_FOUND
        assert "istio" in unknown.value.details()
        passed = [r for r in istio.fake.received if r.metadata.get(tag[0]) == tag[1]]
        assert passed == []  # neither reached an adapter
        # The tag does travel when the call is passed through, so the check above can fail.
        await client.adapter_stub.GetInfo(apb.GetInfoRequest(), metadata=(*ISTIO, tag))
        passed = [r for r in istio.fake.received if r.metadata.get(tag[0]) == tag[1]]
        assert [r.method for r in passed] == ["GetInfo"]


async def test_adapter_errors_come_back_unchanged(tmp_path: Path) -> None:
    async with (
        fakes(("istio", "a")) as (istio,),
        coordinator(make_settings(tmp_path, adapters=static(istio))) as client,
    ):
        await client.wait_serving(istio.address)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await client.adapter_stub.GetOperation(
                apb.GetOperationRequest(operation_id="missing"), metadata=ISTIO
            )
        assert code_of(error.value) == grpc.StatusCode.NOT_FOUND
        assert error.value.details() == "unknown missing"


async def test_stream_events_passes_through(tmp_path: Path) -> None:
    async with (
        fakes(("istio", "a")) as (istio,),
        coordinator(make_settings(tmp_path, adapters=static(istio))) as client,
    ):
        await client.wait_serving(istio.address)
        istio.fake.events = 4
        call = client.adapter_stub.StreamEvents(
            apb.StreamEventsRequest(after_sequence=1), metadata=ISTIO
        )
        sequences = []
        async with asyncio.timeout(5):
            async for response in call:
                sequences.append(response.event.sequence)
                if len(sequences) == 3:
                    break
        call.cancel()
        assert sequences == [2, 3, 4]
        # (the event hub follows the same stream from 0; ours asked from 1)
        assert 1 in [r.after_sequence for r in istio.fake.calls("StreamEvents")]


async def test_operations_follow_the_replica_that_accepted_them(tmp_path: Path) -> None:
    executor = ScriptedExecutor(scripts={"*": Script(events=2)})
    async with toy_adapter(executor=executor) as first, toy_adapter() as second:
        adapters = (
            StaticAdapter(mesh="toy", address=first.adapter.address),
            StaticAdapter(mesh="toy", address=second.adapter.address),
        )
        async with coordinator(make_settings(tmp_path, adapters=adapters)) as client:
            await client.wait_serving(first.adapter.address, second.adapter.address)
            toy = ((MESH_METADATA_KEY, "toy"),)
            # Through the coordinator service, so the coordinator records which replica has it.
            accepted = []
            for _ in range(2):
                answer = await client.stub.ApplyOperation(
                    cpb.ApplyOperationRequest(
                        mesh="toy", request=apb.ApplyOperationRequest(operation="install")
                    )
                )
                accepted.append(answer)
            assert {a.operation.adapter_address for a in accepted} == {
                first.adapter.address,
                second.adapter.address,
            }
            for answer in accepted:
                async with asyncio.timeout(10):
                    while True:
                        got = await client.adapter_stub.GetOperation(
                            apb.GetOperationRequest(operation_id=answer.operation_id),
                            metadata=toy,
                        )  # never NOT_FOUND: it goes to the replica that has the operation
                        if got.operation.state in TERMINAL:
                            break
                        await asyncio.sleep(0.02)
                assert got.operation.state == apb.OPERATION_STATE_SUCCEEDED


async def test_apply_with_an_id_is_retried_elsewhere_and_without_one_is_not(
    tmp_path: Path,
) -> None:
    async with (
        fakes(("istio", "flaky"), ("istio", "good")) as (flaky, good),
        coordinator(make_settings(tmp_path, adapters=static(flaky, good))) as client,
    ):
        await client.wait_serving(flaky.address, good.address)
        flaky.fake.unavailable_applies = 1000
        for index in range(4):
            answer = await client.adapter_stub.ApplyOperation(
                apb.ApplyOperationRequest(operation="install", operation_id=f"pass-{index}"),
                metadata=ISTIO,
            )
            assert answer.operation_id == f"pass-{index}"
        assert [r.operation_id for r in good.fake.calls("ApplyOperation")] == [
            f"pass-{i}" for i in range(4)
        ]
        refused = {r.operation_id for r in flaky.fake.calls("ApplyOperation")}
        assert refused and refused <= {f"pass-{i}" for i in range(4)}

        outcomes = []
        for _ in range(2):  # round-robin: one of these goes to the flaky replica first
            try:
                await client.adapter_stub.ApplyOperation(
                    apb.ApplyOperationRequest(operation="install"), metadata=ISTIO
                )
                outcomes.append("ok")
            except grpc.aio.AioRpcError as exc:
                outcomes.append(exc.code().name)
        assert sorted(outcomes) == ["UNAVAILABLE", "ok"]
