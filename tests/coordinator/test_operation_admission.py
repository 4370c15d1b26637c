"""ApplyOperation through the coordinator (service and pass-through): the coordinator's own
refusals and the operation_id rule come before forwarding, and no error hides a created operation.

Before: the pass-through skipped the reuse check (another mesh's history row was overwritten),
and a request the coordinator answered RESOURCE_EXHAUSTED had been created on the adapter.
"""

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
from tests.kit.toy_adapter import toy_adapter

ISTIO = ((MESH_METADATA_KEY, "istio"),)
LINKERD = ((MESH_METADATA_KEY, "linkerd"),)
FIVE_MB = "u" * (5 * 1024 * 1024)


def install(operation_id: str, **fields: object) -> apb.ApplyOperationRequest:
    return apb.ApplyOperationRequest(operation_id=operation_id, operation="install", **fields)  # type: ignore[arg-type]


async def test_the_passthrough_refuses_another_meshs_operation_id(tmp_path: Path) -> None:
    async with (
        fakes(("istio", "a"), ("linkerd", "b")) as (istio, linkerd),
        coordinator(make_settings(tmp_path, adapters=static(istio, linkerd))) as client,
    ):
        await client.wait_serving(istio.address, linkerd.address)
        await client.stub.ApplyOperation(
            cpb.ApplyOperationRequest(mesh="istio", request=install("shared"))
        )

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.adapter_stub.ApplyOperation(install("shared"), metadata=LINKERD)
        assert code_of(refused.value) == grpc.StatusCode.FAILED_PRECONDITION
        details = refused.value.details()
        assert "'shared' is already used by istio operation 'install'" in details
        assert "mesh was 'istio', this request has 'linkerd'" in details
        assert linkerd.fake.calls("ApplyOperation") == []
        stored = await client.coordinator.store.get_operation("shared")
        assert stored is not None and (stored.mesh, stored.adapter) == ("istio", istio.address)

        # Through the pass-through first: recorded there, so the service refuses it elsewhere.
        await client.adapter_stub.ApplyOperation(install("via-pass"), metadata=ISTIO)
        with pytest.raises(grpc.aio.AioRpcError) as elsewhere:
            await client.stub.ApplyOperation(
                cpb.ApplyOperationRequest(mesh="linkerd", request=install("via-pass"))
            )
        assert code_of(elsewhere.value) == grpc.StatusCode.FAILED_PRECONDITION
        recorded = await client.coordinator.store.get_operation("via-pass")
        assert recorded is not None and recorded.adapter == istio.address

        # The same request again is idempotent; another custom body is another request.
        await client.adapter_stub.ApplyOperation(install("via-pass"), metadata=ISTIO)
        with pytest.raises(grpc.aio.AioRpcError) as other_body:
            await client.adapter_stub.ApplyOperation(
                install("via-pass", custom_body="kind: ConfigMap"), metadata=ISTIO
            )
        assert code_of(other_body.value) == grpc.StatusCode.FAILED_PRECONDITION
        assert "custom_body" in other_body.value.details()
        assert len(istio.fake.calls("ApplyOperation")) == 3


async def test_two_meshes_racing_for_one_id_run_it_once(tmp_path: Path) -> None:
    async with (
        fakes(("istio", "a"), ("linkerd", "b")) as (istio, linkerd),
        coordinator(make_settings(tmp_path, adapters=static(istio, linkerd))) as client,
    ):
        await client.wait_serving(istio.address, linkerd.address)
        outcomes = await asyncio.gather(
            *(
                client.stub.ApplyOperation(
                    cpb.ApplyOperationRequest(mesh=mesh, request=install(f"race-{n}"))
                )
                for n in range(10)
                for mesh in ("istio", "linkerd")
            ),
            return_exceptions=True,
        )
        refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        assert len(refused) == 10
        assert {code_of(o) for o in refused} == {grpc.StatusCode.FAILED_PRECONDITION}
        forwarded = istio.fake.calls("ApplyOperation") + linkerd.fake.calls("ApplyOperation")
        assert sorted(r.operation_id for r in forwarded) == sorted(f"race-{n}" for n in range(10))


@pytest.mark.parametrize("path", ["service", "passthrough"])
async def test_an_answer_too_large_to_read_is_reconciled_not_reported_failed(
    tmp_path: Path, path: str
) -> None:
    async with (
        fakes(("istio", "a")) as (istio,),
        coordinator(make_settings(tmp_path, adapters=static(istio))) as client,
    ):
        await client.wait_serving(istio.address)
        istio.fake.oversized_answers = True
        if path == "service":
            answer = await client.stub.ApplyOperation(
                cpb.ApplyOperationRequest(mesh="istio", request=install("lost-answer"))
            )
            operation = answer.operation.operation
        else:
            operation = (
                await client.adapter_stub.ApplyOperation(install("lost-answer"), metadata=ISTIO)
            ).operation
        assert "lost-answer" in istio.fake.operations  # the adapter created it ...
        assert operation.operation_id == "lost-answer"  # ... and the caller hears so
        assert operation.state == apb.OPERATION_STATE_PENDING
        stored = await client.coordinator.store.get_operation("lost-answer")
        assert stored is not None and stored.adapter == istio.address


async def test_an_adapter_refusal_releases_the_id(tmp_path: Path) -> None:
    async with (
        fakes(("istio", "a")) as (istio,),
        coordinator(make_settings(tmp_path, adapters=static(istio))) as client,
    ):
        await client.wait_serving(istio.address)
        bad = apb.ApplyOperationRequest(operation_id="retry-me", operation="bad")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.stub.ApplyOperation(cpb.ApplyOperationRequest(mesh="istio", request=bad))
        assert code_of(refused.value) == grpc.StatusCode.INVALID_ARGUMENT
        assert await client.coordinator.store.get_operation("retry-me") is None
        await client.stub.ApplyOperation(
            cpb.ApplyOperationRequest(mesh="istio", request=install("retry-me"))
        )


async def test_a_5_mb_username_is_refused_before_the_adapter_sees_it(tmp_path: Path) -> None:
    async with toy_adapter() as toy:
        adapters = (StaticAdapter(mesh="toy", address=toy.adapter.address),)
        async with coordinator(make_settings(tmp_path, adapters=adapters)) as client:
            await client.wait_serving(toy.adapter.address)
            attempts = [
                client.stub.ApplyOperation(
                    cpb.ApplyOperationRequest(
                        mesh="toy", request=install("huge-1", username=FIVE_MB)
                    ),
                    timeout=30,
                ),
                client.adapter_stub.ApplyOperation(
                    install("huge-2", username=FIVE_MB),
                    metadata=((MESH_METADATA_KEY, "toy"),),
                    timeout=30,
                ),
            ]
            for operation_id, attempt in zip(("huge-1", "huge-2"), attempts, strict=True):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await attempt
                # Whatever the coordinator answers, nothing was created behind it.
                assert code_of(refused.value) != grpc.StatusCode.OK
                with pytest.raises(grpc.aio.AioRpcError) as missing:
                    await toy.stub.GetOperation(apb.GetOperationRequest(operation_id=operation_id))
                assert code_of(missing.value) == grpc.StatusCode.NOT_FOUND
                assert await client.coordinator.store.get_operation(operation_id) is None
                assert len(refused.value.details()) < 300
