"""Routing: unknown meshes, unhealthy replicas, spreading, failover, deadlines and retries."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import grpc
import grpc.aio
import pytest

from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from tests.coordinator.routing_harness import (
    Client,
    RunningFake,
    code_of,
    coordinator,
    fakes,
    make_settings,
    static,
)


def _apply(operation: str = "install", operation_id: str = "") -> cpb.ApplyOperationRequest:
    return cpb.ApplyOperationRequest(
        mesh="istio",
        request=apb.ApplyOperationRequest(operation=operation, operation_id=operation_id),
    )


def _count(replicas: list[RunningFake], method: str = "ApplyOperation") -> dict[str, int]:
    return {r.fake.name: len(r.fake.calls(method)) for r in replicas}


async def test_unknown_mesh_is_not_found_and_lists_known_meshes(tmp_path: Path) -> None:
    async with (
        fakes(("istio", "a"), ("linkerd", "b")) as replicas,
        coordinator(make_settings(tmp_path, adapters=static(*replicas))) as client,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await client.stub.ApplyOperation(
                cpb.ApplyOperationRequest(mesh="consul", request=apb.ApplyOperationRequest())
            )
        assert code_of(error.value) == grpc.StatusCode.NOT_FOUND
        assert "consul" in error.value.details()
        assert "istio, linkerd" in error.value.details()


async def test_no_healthy_replica_is_unavailable_with_each_reason(tmp_path: Path) -> None:
    async with (
        fakes(("istio", "a"), ("istio", "b")) as replicas,
        coordinator(make_settings(tmp_path, adapters=static(*replicas))) as client,
    ):
        await client.wait_serving(*(r.address for r in replicas))
        for replica in replicas:
            await replica.set_serving(False)
        for replica in replicas:
            await client.wait_replica(
                replica.address,
                lambda r: r is not None and r.state == cpb.REPLICA_STATE_NOT_SERVING,
            )
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await client.stub.ApplyOperation(_apply())
        assert code_of(error.value) == grpc.StatusCode.UNAVAILABLE
        details = error.value.details()
        assert "istio adapter" in details
        for replica in replicas:
            assert replica.address in details
        assert details.count("NOT_SERVING") >= 2  # each replica's own last error
        assert _count(replicas) == {"a": 0, "b": 0}


async def test_calls_spread_across_healthy_replicas(tmp_path: Path) -> None:
    async with (
        fakes(("istio", "a"), ("istio", "b")) as replicas,
        coordinator(make_settings(tmp_path, adapters=static(*replicas))) as client,
    ):
        await client.wait_serving(*(r.address for r in replicas))
        for _ in range(10):
            await client.stub.ApplyOperation(_apply())
        assert _count(replicas) == {"a": 5, "b": 5}


async def test_traffic_moves_off_a_stopped_replica(tmp_path: Path) -> None:
    async with (
        fakes(("istio", "a"), ("istio", "b")) as replicas,
        coordinator(make_settings(tmp_path, adapters=static(*replicas))) as client,
    ):
        first, second = replicas
        await client.wait_serving(first.address, second.address)
        await first.server.stop(grace_seconds=0)  # health drains to NOT_SERVING, then it is gone
        await client.wait_replica(
            first.address, lambda r: r is not None and r.state == cpb.REPLICA_STATE_NOT_SERVING
        )
        before = _count(replicas)
        for _ in range(6):
            answer = await client.stub.ApplyOperation(_apply())
            assert answer.operation.adapter_address == second.address
        after = _count(replicas)
        assert after["a"] == before["a"]
        assert after["b"] == before["b"] + 6


async def test_callers_deadline_reaches_the_adapter(tmp_path: Path) -> None:
    async with (
        fakes(("istio", "slow")) as (slow,),
        coordinator(make_settings(tmp_path, adapters=static(slow))) as client,
    ):
        await client.wait_serving(slow.address)
        slow.fake.delay = 5.0
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await client.stub.ListMeshVersions(
                cpb.ListMeshVersionsRequest(mesh="istio"), timeout=0.3
            )
        elapsed = time.monotonic() - started
        assert code_of(error.value) == grpc.StatusCode.DEADLINE_EXCEEDED
        assert elapsed < 2.0
        # Without a caller deadline the coordinator's own default applies.
        slow.fake.delay = 0.0
        answer = await client.stub.ListMeshVersions(cpb.ListMeshVersionsRequest(mesh="istio"))
        assert answer.default_version == "1.2.3"


async def test_default_deadline_bounds_calls_without_one(tmp_path: Path) -> None:
    async with fakes(("istio", "slow")) as (slow,):
        settings = make_settings(tmp_path, adapters=static(slow), call_timeout_seconds=0.3)
        async with coordinator(settings) as client:
            await client.wait_serving(slow.address)
            slow.fake.delay = 5.0
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await client.stub.GetMeshStatus(cpb.GetMeshStatusRequest(mesh="istio"))
            assert code_of(error.value) == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - started < 2.0


async def _wait_both(client: Client, replicas: list[RunningFake]) -> None:
    await client.wait_serving(*(r.address for r in replicas))


async def test_apply_retries_on_the_other_replica_with_the_same_operation_id(
    tmp_path: Path,
) -> None:
    async with (
        fakes(("istio", "flaky"), ("istio", "good")) as replicas,
        coordinator(make_settings(tmp_path, adapters=static(*replicas))) as client,
    ):
        flaky, good = replicas
        await _wait_both(client, replicas)
        flaky.fake.unavailable_applies = 1000
        answers = [await client.stub.ApplyOperation(_apply()) for _ in range(4)]

        refused = [r.operation_id for r in flaky.fake.calls("ApplyOperation")]
        accepted = [r.operation_id for r in good.fake.calls("ApplyOperation")]
        assert refused, "round-robin sends some first attempts to the flaky replica"
        assert set(refused) <= set(accepted)  # each refused attempt was retried, same id
        assert Counter(accepted) == Counter({a.operation_id: 1 for a in answers})
        for answer in answers:
            uuid.UUID(answer.operation_id, version=4)  # assigned by the coordinator
            assert answer.operation.adapter_address == good.address
            assert answer.operation.operation.operation_id == answer.operation_id


async def test_client_operation_id_is_kept(tmp_path: Path) -> None:
    async with (
        fakes(("istio", "a")) as (replica,),
        coordinator(make_settings(tmp_path, adapters=static(replica))) as client,
    ):
        await client.wait_serving(replica.address)
        answer = await client.stub.ApplyOperation(_apply(operation_id="mine-1"))
        assert answer.operation_id == "mine-1"
        assert [r.operation_id for r in replica.fake.calls("ApplyOperation")] == ["mine-1"]


async def test_adapter_errors_are_not_retried(tmp_path: Path) -> None:
    async with (
        fakes(("istio", "a"), ("istio", "b")) as replicas,
        coordinator(make_settings(tmp_path, adapters=static(*replicas))) as client,
    ):
        await _wait_both(client, replicas)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await client.stub.ApplyOperation(_apply(operation="bad"))
        assert code_of(error.value) == grpc.StatusCode.INVALID_ARGUMENT
        assert "no such parameter" in error.value.details()
        assert sum(_count(replicas).values()) == 1


async def test_every_replica_refusing_ends_unavailable(tmp_path: Path) -> None:
    async with fakes(("istio", "a"), ("istio", "b")) as replicas:
        settings = make_settings(tmp_path, adapters=static(*replicas), retry_attempts=3)
        async with coordinator(settings) as client:
            await _wait_both(client, replicas)
            for replica in replicas:
                replica.fake.unavailable_applies = 1000
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await client.stub.ApplyOperation(_apply())
            assert code_of(error.value) == grpc.StatusCode.UNAVAILABLE
            assert "overloaded" in error.value.details()
            assert sum(_count(replicas).values()) == 3  # bounded attempts
            ids = {r.operation_id for x in replicas for r in x.fake.calls("ApplyOperation")}
            assert len(ids) == 1
