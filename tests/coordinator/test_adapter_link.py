"""The coordinator-adapter link token: genuine adapters get the token and the traffic; a rogue
process (static, discovered or registered) that cannot prove it holds the token is refused,
marked unhealthy with the reason, and never receives the token or a request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters.kit.grpc.coordinator_guard import CoordinatorGuard
from coordinator.server.adapter_link import AdapterLink, LinkRefused
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.adapter.v1 import adapter_pb2_grpc as apb_grpc
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from serving.link_tokens import CHALLENGE_HEADER
from serving.tls import dial
from tests.coordinator.routing_harness import (
    FakeAdapter,
    code_of,
    coordinator,
    make_settings,
    start_fake,
    static,
)

TOKEN = "link-token-0123456789abcdef"


def _install() -> cpb.ApplyOperationRequest:
    return cpb.ApplyOperationRequest(
        mesh="istio", request=apb.ApplyOperationRequest(operation="install")
    )


def _refused_for_the_link(replica: cpb.AdapterReplica | None) -> bool:
    """NOT_SERVING, the link refusal named (another error may show first while it connects)."""
    if replica is None or replica.state != cpb.REPLICA_STATE_NOT_SERVING:
        return False
    return any(why in replica.last_error for why in ("did not prove", "answered without asking"))


def _only_challenged(fake: FakeAdapter) -> None:
    """The fake got nothing but link challenges: no request, never the token."""
    for received in fake.received:
        assert received.method == "GetInfo" and CHALLENGE_HEADER in received.metadata, received
        assert "authorization" not in received.metadata


async def test_a_genuine_adapter_gets_the_token_on_every_call(tmp_path: Path) -> None:
    genuine = await start_fake("istio", "g", interceptors=(CoordinatorGuard(TOKEN),))
    settings = make_settings(tmp_path, adapters=static(genuine), adapter_token=TOKEN)
    try:
        async with coordinator(settings) as client:
            await client.wait_serving(genuine.address)
            answer = await client.stub.ApplyOperation(_install(), timeout=5)
            assert answer.operation.mesh == "istio"
            applied = [r for r in genuine.fake.received if r.method == "ApplyOperation"]
            assert [r.metadata["authorization"] for r in applied] == [f"Bearer {TOKEN}"]
            assert all(
                r.metadata.get("authorization") == f"Bearer {TOKEN}" for r in genuine.fake.received
            )
    finally:
        await genuine.server.stop(grace_seconds=0)


@pytest.mark.parametrize("rogue_token", [None, "another-token-0123456789"])
async def test_a_rogue_static_replica_is_refused_and_never_called(
    tmp_path: Path, rogue_token: str | None
) -> None:
    interceptors = () if rogue_token is None else (CoordinatorGuard(rogue_token),)
    rogue = await start_fake("istio", "rogue", interceptors=interceptors)
    settings = make_settings(tmp_path, adapters=static(rogue), adapter_token=TOKEN)
    try:
        async with coordinator(settings) as client:
            replica = await client.wait_replica(rogue.address, _refused_for_the_link)
            assert replica is not None and replica.state == cpb.REPLICA_STATE_NOT_SERVING
            expected = "wrong proof" if rogue_token is not None else "without asking"
            assert expected in replica.last_error
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await client.stub.ApplyOperation(_install(), timeout=5)
            assert code_of(refused.value) == grpc.StatusCode.UNAVAILABLE
            await asyncio.sleep(0.3)  # the event hub and health follower had time to try
            _only_challenged(rogue.fake)
            if rogue_token is not None:
                assert rogue.fake.received == []  # its own guard refused the challenge
    finally:
        await rogue.server.stop(grace_seconds=0)


async def test_registering_a_rogue_is_refused(tmp_path: Path) -> None:
    rogue = await start_fake("istio", "rogue")
    try:
        async with coordinator(make_settings(tmp_path, adapter_token=TOKEN)) as client:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await client.stub.RegisterAdapter(
                    cpb.RegisterAdapterRequest(address=rogue.address, mesh="istio"), timeout=5
                )
            assert code_of(refused.value) == grpc.StatusCode.FAILED_PRECONDITION
            assert "--coordinator-token-file" in refused.value.details()
            listed = await client.stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=5)
            assert list(listed.adapters) == []
            _only_challenged(rogue.fake)
            assert len(rogue.fake.received) == 1
    finally:
        await rogue.server.stop(grace_seconds=0)


async def test_registering_a_genuine_adapter_works(tmp_path: Path) -> None:
    genuine = await start_fake("istio", "g", interceptors=(CoordinatorGuard(TOKEN),))
    try:
        async with coordinator(make_settings(tmp_path, adapter_token=TOKEN)) as client:
            answer = await client.stub.RegisterAdapter(
                cpb.RegisterAdapterRequest(address=genuine.address, mesh="istio"), timeout=5
            )
            assert answer.adapter.replicas[0].adapter_version == "1.0.0+g"
            await client.wait_serving(genuine.address)
            await client.stub.ApplyOperation(_install(), timeout=5)
            assert genuine.fake.calls("ApplyOperation")
    finally:
        await genuine.server.stop(grace_seconds=0)


async def test_a_replica_replaced_by_a_rogue_loses_the_traffic(tmp_path: Path) -> None:
    genuine = await start_fake("istio", "g", interceptors=(CoordinatorGuard(TOKEN),))
    address = genuine.address
    port = genuine.server.port
    settings = make_settings(tmp_path, adapters=static(genuine), adapter_token=TOKEN)
    async with coordinator(settings) as client:
        await client.wait_serving(address)
        await genuine.server.stop(grace_seconds=0)
        rogue = await start_fake("istio", "rogue", port=port)
        try:
            replica = await client.wait_replica(address, _refused_for_the_link)
            assert replica is not None and replica.state == cpb.REPLICA_STATE_NOT_SERVING
            with pytest.raises(grpc.aio.AioRpcError):
                await client.stub.ApplyOperation(_install(), timeout=5)
            _only_challenged(rogue.fake)
        finally:
            await rogue.server.stop(grace_seconds=0)


async def test_an_unproven_channel_sends_nothing_but_health_and_the_challenge() -> None:
    rogue = await start_fake("istio", "rogue")
    link = AdapterLink(TOKEN)
    channel = dial(rogue.address, tls=None, interceptors=link.interceptors(rogue.address))
    stub = apb_grpc.MeshAdapterServiceStub(channel)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await stub.ApplyOperation(apb.ApplyOperationRequest(operation="install"), timeout=5)
        assert code_of(unary.value) == grpc.StatusCode.UNAVAILABLE
        assert "has not proven" in unary.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as streaming:
            await stub.StreamEvents(apb.StreamEventsRequest()).read()
        assert code_of(streaming.value) == grpc.StatusCode.UNAVAILABLE
        health = health_pb2_grpc.HealthStub(channel)
        await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        with pytest.raises(LinkRefused, match="without asking"):
            await link.verify(channel, rogue.address, 5)
        assert not link.proven(rogue.address)
        _only_challenged(rogue.fake)
        assert len(rogue.fake.received) == 1
    finally:
        await channel.close()
        await rogue.server.stop(grace_seconds=0)


async def test_a_proven_channel_carries_only_the_link_token() -> None:
    genuine = await start_fake("istio", "g", interceptors=(CoordinatorGuard(TOKEN),))
    link = AdapterLink(TOKEN)
    channel = dial(genuine.address, tls=None, interceptors=link.interceptors(genuine.address))
    try:
        await link.verify(channel, genuine.address, 5)
        assert link.proven(genuine.address)
        stub = apb_grpc.MeshAdapterServiceStub(channel)
        await stub.GetInfo(
            apb.GetInfoRequest(), timeout=5, metadata=(("authorization", "Bearer a-caller"),)
        )
        (received,) = genuine.fake.received
        assert received.metadata["authorization"] == f"Bearer {TOKEN}"
        link.forget(genuine.address)
        with pytest.raises(grpc.aio.AioRpcError) as unproven:
            await stub.GetInfo(apb.GetInfoRequest(), timeout=5)
        assert code_of(unproven.value) == grpc.StatusCode.UNAVAILABLE
    finally:
        await channel.close()
        await genuine.server.stop(grace_seconds=0)


async def test_a_proof_holds_only_on_the_connection_it_was_given_on() -> None:
    """The replica is replaced and a call is made before anyone noticed (no health follower
    here to call `forget`): the channel, no longer READY on that connection, sends nothing."""
    genuine = await start_fake("istio", "g", interceptors=(CoordinatorGuard(TOKEN),))
    address, port = genuine.address, genuine.server.port
    link = AdapterLink(TOKEN)
    channel = dial(address, tls=None, interceptors=link.interceptors(address))
    stub = apb_grpc.MeshAdapterServiceStub(channel)
    rogue = None
    try:
        await link.verify(channel, address, 5)
        await stub.GetInfo(apb.GetInfoRequest(), timeout=5)
        assert channel.get_state() == grpc.ChannelConnectivity.READY
        await genuine.server.stop(grace_seconds=0)
        async with asyncio.timeout(10):
            await channel.wait_for_state_change(grpc.ChannelConnectivity.READY)
        rogue = await start_fake("istio", "rogue", port=port)
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await stub.GetInfo(apb.GetInfoRequest(), timeout=5)
        assert code_of(unary.value) == grpc.StatusCode.UNAVAILABLE
        assert "has not proven" in unary.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as streaming:
            await stub.StreamEvents(apb.StreamEventsRequest(), timeout=5).read()
        assert code_of(streaming.value) == grpc.StatusCode.UNAVAILABLE
        assert not link.proven(address)
        assert rogue.fake.received == []
        # Proving itself again on the new connection is what brings the token back.
        with pytest.raises(LinkRefused, match="without asking"):
            await link.verify(channel, address, 5)
        _only_challenged(rogue.fake)
    finally:
        await channel.close()
        if rogue is not None:
            await rogue.server.stop(grace_seconds=0)
